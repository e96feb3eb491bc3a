"""The README's model tables, made from the declarations in ``model.py``.

``python -m <package> docs README.md`` (``make docs``) rewrites the text between each pair
of ``<!-- name:begin -->`` / ``<!-- name:end -->`` markers; a test fails when the README is
out of date with ``model.Hyperparameters`` or ``model.METRICS``.
"""

from __future__ import annotations

import re

from .hyperparameters import describe
from .job import metric_regex


def hyperparameter_table() -> str:
    from .model import Hyperparameters

    return describe(Hyperparameters)


def metric_table() -> str:
    from .training import all_metrics

    lines = ["| Metric | Description | MetricDefinitions regex |", "|---|---|---|"]
    for name, help_text in all_metrics().items():
        regex = metric_regex(name).replace("|", "\\|")  # A table cell: | escaped.
        lines.append(f"| `{name}` | {help_text} | `{regex}` |")
    return "\n".join(lines) + "\n"


SECTIONS = {"hyperparameters": hyperparameter_table, "metrics": metric_table}


def update(text: str) -> str:
    """``text`` with every marked section made anew."""
    for name, make in SECTIONS.items():
        pattern = re.compile(
            rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", flags=re.DOTALL
        )
        if not pattern.search(text):
            raise ValueError(f"no <!-- {name}:begin --> ... <!-- {name}:end --> section")
        text = pattern.sub(lambda found, make=make: found[1] + make() + found[2], text)
    return text
