"""Jinja filters for the template (cookiecutter loads this through ``_extensions``)."""

from __future__ import annotations

import importlib.util
import json
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

from jinja2.ext import Extension


def toml_string(value: object) -> str:
    """``value`` as a TOML basic string: quotes, backslashes, control characters escaped.

    Jinja's ``tojson`` writes characters outside the BMP as JSON surrogate pairs
    (``\\ud83d\\ude80``), which TOML rejects; this keeps them as they are.
    """
    text = json.dumps(str(value), ensure_ascii=False)
    return text.replace("\x7f", "\\u007f")


@cache
def answer_checks() -> ModuleType:
    """The pre-generation hook's checks (the hook is valid Python as it stands)."""
    path = Path(__file__).resolve().parent / "hooks" / "pre_gen_project.py"
    spec = importlib.util.spec_from_file_location("sm_byoc_answer_checks", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checked(value: object, field: str) -> str:
    """Stop at once, with the message alone, on a bad answer to ``field``; else ``""``.

    cookiecutter renders each ``__`` variable of cookiecutter.json as soon as the answers
    before it are in, so ``"__FIELD_checked": "{{ cookiecutter.FIELD | checked('FIELD') }}"``
    right after a prompt reports its bad answer before the next prompt. (The pre-generation
    hook checks everything again, for replays; its failure comes with cookiecutter's
    traceback.)
    """
    message = answer_checks().check_answer(field, value)
    if message:
        print(f"ERROR: {message}", file=sys.stderr)
        raise SystemExit(1)
    return ""


class TomlExtension(Extension):
    def __init__(self, environment):  # type: ignore[no-untyped-def]
        super().__init__(environment)
        environment.filters["toml_string"] = toml_string


class AnswerChecks(Extension):
    def __init__(self, environment):  # type: ignore[no-untyped-def]
        super().__init__(environment)
        environment.filters["checked"] = checked
