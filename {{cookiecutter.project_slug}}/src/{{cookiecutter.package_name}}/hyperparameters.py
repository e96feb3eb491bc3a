"""Typed hyperparameters from SageMaker's ``hyperparameters.json``.

SageMaker hands every value over as a string, in one of three dialects seen in the wild:
plain strings (``"0.1"``, ``"adam"``), Python's ``str()`` of the value when a plain SDK
``Estimator`` sent it (``"None"``, ``"True"``, ``"[1, 2]"``), and JSON encoded once more when
the SDK job has a ``source_dir`` (``"\\"adam\\""``). Each value is read tolerantly (JSON first,
then the Python spellings, else the raw string) and then coerced to the type declared on the
model's ``Hyperparameters`` dataclass, with an error that names the hyperparameter.

That dataclass is the one declaration of the hyperparameters: each field gets its default,
its help and its bounds from ``hyperparameter(...)``. ``load`` checks a job's values against
it, and ``describe`` turns it into the table of the project's README (``make docs``).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import math
import operator
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from .environment import shown

T = TypeVar("T")

# Names SageMaker and its SDK add on their own: never the model's business.
IGNORED_PREFIXES = ("sagemaker_", "_tuning_objective_metric")


class HyperparameterError(ValueError):
    """A hyperparameter that is unknown or cannot be read as its declared type."""


LIMITS = (("ge", ">=", operator.ge), ("gt", ">", operator.gt))
LIMITS += (("le", "<=", operator.le), ("lt", "<", operator.lt))


@dataclasses.dataclass(frozen=True)
class Bounds:
    """Limits on a number (or on each number of a list); ``None`` is no limit."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def violated_by(self, value: Any) -> str | None:
        """What ``value`` breaks, as "must be >= 1", or ``None``."""
        if isinstance(value, list | tuple):
            return next(filter(None, map(self.violated_by, value)), None)
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        if math.isnan(value):
            return "must be a number, not NaN"
        for name, sign, holds in LIMITS:
            limit = getattr(self, name)
            if limit is not None and not holds(value, limit):
                return f"must be {sign} {limit:g}"
        return None

    def __str__(self) -> str:
        return ", ".join(
            f"{sign} {getattr(self, name):g}"
            for name, sign, _ in LIMITS
            if getattr(self, name) is not None
        )


def hyperparameter(
    default: Any,
    help: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A ``Hyperparameters`` field: its default, one line of help, and bounds on its value.

    ``epochs: int = hyperparameter(50, "Passes over the training data.", ge=1)``
    """
    metadata = {"help": help, "bounds": Bounds(ge=ge, gt=gt, le=le, lt=lt)}
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def parse_value(raw: Any) -> Any:
    """The value behind one string of ``hyperparameters.json``, in any of its dialects."""
    if not isinstance(raw, str):
        return raw  # Already typed (a hand-written local file).
    text = raw.strip()
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested 10,000 deep and more
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return raw


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _coerce(name: str, value: Any, raw: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(name, value, raw, option)
            except HyperparameterError as exc:
                errors.append(str(exc))
        raise HyperparameterError(
            f"hyperparameter {name!r}: expected {' or '.join(map(_describe, options))},"
            f" got {shown(raw)}"
        )
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        for candidate in (value, raw):
            if candidate in allowed:
                return candidate
        raise HyperparameterError(
            f"hyperparameter {name!r}: expected one of {', '.join(map(repr, allowed))},"
            f" got {shown(raw)}"
        )
    if origin in (list, tuple):
        (item_type, *_) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [parse_value(part) for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            raise HyperparameterError(
                f"hyperparameter {name!r}: expected a list, got {shown(raw)}"
            )
        items = [_coerce(f"{name}[{i}]", item, item, item_type) for i, item in enumerate(value)]
        return origin(items)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"true", "yes", "on", "1"}:
            return True
        if isinstance(value, str) and value.strip().lower() in {"false", "no", "off", "0"}:
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise HyperparameterError(
            f"hyperparameter {name!r}: expected true or false, got {shown(raw)}"
        )
    if isinstance(value, str) and tp in (int, float) and value.strip() != raw:
        value = parse_value(value)  # A number JSON-encoded as a string: '"7"'.
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise HyperparameterError(
            f"hyperparameter {name!r}: expected an integer, got {shown(raw)}"
        )
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise HyperparameterError(f"hyperparameter {name!r}: expected a number, got {shown(raw)}")
    if tp is str:
        # "100" declared as a string stays "100"; '"adam"' (JSON again) becomes "adam".
        return value if isinstance(value, str) else str(raw)
    raise TypeError(f"hyperparameter {name!r}: unsupported declared type {tp!r}")


def load(cls: type[T], raw: Mapping[str, Any]) -> T:
    """An instance of the dataclass ``cls`` from the raw ``hyperparameters.json`` mapping."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    known = sorted(fields)
    values: dict[str, Any] = {}
    for name, raw_value in raw.items():
        if name.startswith(IGNORED_PREFIXES):
            continue
        if name not in fields:
            raise HyperparameterError(
                f"unknown hyperparameter {shown(name)}; known: {', '.join(known) or '(none)'}"
            )
        values[name] = _coerce(name, parse_value(raw_value), raw_value, hints[name])
    try:
        instance = cls(**values)
    except HyperparameterError:
        raise
    except (TypeError, ValueError) as exc:
        raise HyperparameterError(str(exc)) from exc
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        bounds = field.metadata.get("bounds")
        value = getattr(instance, field.name)
        problem = bounds.violated_by(value) if bounds else None
        if problem:
            raise HyperparameterError(
                f"hyperparameter {field.name!r} {problem}, got {shown(raw.get(field.name, value))}"
            )
    return instance


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(f"`{value}`" for value in typing.get_args(tp))
    text = getattr(tp, "__name__", None) if not typing.get_args(tp) else None
    return text or str(tp).replace("typing.", "").replace("NoneType", "None")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def describe(cls: type) -> str:
    """The hyperparameters as a Markdown table: name, type, default, bounds, help."""
    hints = typing.get_type_hints(cls)
    lines = [
        "| Hyperparameter | Type | Default | Bounds | Description |",
        "|---|---|---|---|---|",
    ]
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
        cells = (
            f"`{field.name}`",
            _type_name(hints[field.name]),
            f"`{json.dumps(default)}`",
            str(field.metadata.get("bounds", "")),
            field.metadata.get("help", ""),
        )
        lines.append("| " + " | ".join(map(_cell, cells)) + " |")
    return "\n".join(lines) + "\n"
