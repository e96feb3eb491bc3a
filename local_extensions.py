"""Jinja filters for the template (cookiecutter loads this through ``_extensions``)."""

from __future__ import annotations

import json

from jinja2.ext import Extension


def toml_string(value: object) -> str:
    """``value`` as a TOML basic string: quotes, backslashes, control characters escaped.

    Jinja's ``tojson`` writes characters outside the BMP as JSON surrogate pairs
    (``\\ud83d\\ude80``), which TOML rejects; this keeps them as they are.
    """
    text = json.dumps(str(value), ensure_ascii=False)
    return text.replace("\x7f", "\\u007f")


class TomlExtension(Extension):
    def __init__(self, environment):  # type: ignore[no-untyped-def]
        super().__init__(environment)
        environment.filters["toml_string"] = toml_string
