import json
from dataclasses import dataclass, field, fields
from typing import Literal

import pytest

from {{ cookiecutter.package_name }} import docs, hyperparameters, model
from {{ cookiecutter.package_name }}.hyperparameters import (
    HyperparameterError,
    describe,
    hyperparameter,
    load,
    parse_value,
)

from .support import PROJECT


@dataclass(frozen=True)
class Example:
    rate: float = 0.1
    rounds: int = 10
    depth: int | None = None
    optimizer: str = "adam"
    tag: str = "v1"
    shuffle: bool = True
    layers: list[int] = field(default_factory=lambda: [8])
    mode: Literal["fast", "exact"] = "fast"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Plain strings, as the console and CLI send them.
        (
            {"rate": "0.5", "rounds": "20", "optimizer": "sgd"},
            {"rate": 0.5, "rounds": 20, "optimizer": "sgd"},
        ),
        # Python str() of the values, from a plain SDK Estimator.
        (
            {"depth": "None", "shuffle": "False", "layers": "[16, 8]"},
            {"depth": None, "shuffle": False, "layers": [16, 8]},
        ),
        # JSON-encoded again, from an SDK job with source_dir.
        (
            {"optimizer": '"sgd"', "rounds": "100", "depth": "3", "shuffle": "true"},
            {"optimizer": "sgd", "rounds": 100, "depth": 3, "shuffle": True},
        ),
        # A digit string declared as a string stays a string; 1e2 is a whole number.
        ({"tag": "100", "rounds": "1e2"}, {"tag": "100", "rounds": 100}),
        ({"layers": "4,2", "mode": "exact"}, {"layers": [4, 2], "mode": "exact"}),
        # Typed values from a hand-written local file.
        ({"rate": 1, "rounds": 7, "shuffle": False}, {"rate": 1.0, "rounds": 7, "shuffle": False}),
    ],
)
def test_every_dialect_is_read_as_the_declared_type(raw: dict, expected: dict) -> None:
    loaded = load(Example, raw)
    for name, value in expected.items():
        got = getattr(loaded, name)
        assert got == value
        assert type(got) is type(value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"rounds": "ten"}, "'rounds': expected an integer, got 'ten'"),
        ({"rounds": "2.5"}, "'rounds': expected an integer"),
        ({"rate": "fast"}, "'rate': expected a number"),
        ({"shuffle": "maybe"}, "'shuffle': expected true or false"),
        ({"depth": "deep"}, "'depth': expected int or NoneType"),
        ({"layers": "[1, 'x']"}, r"'layers\[1\]': expected an integer"),
        ({"mode": "slow"}, "'mode': expected one of 'fast', 'exact'"),
    ],
)
def test_bad_values_name_the_hyperparameter(raw: dict, message: str) -> None:
    with pytest.raises(HyperparameterError, match=message):
        load(Example, raw)


def test_unknown_names_fail_with_the_known_ones() -> None:
    with pytest.raises(
        HyperparameterError, match="unknown hyperparameter 'epochs'; known: depth, "
    ):
        load(Example, {"epochs": "3"})


def test_names_sagemaker_adds_are_ignored() -> None:
    loaded = load(
        Example,
        {
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": '"s3://bucket/src.tar.gz"',
            "_tuning_objective_metric": "validation:accuracy",
            "rounds": "3",
        },
    )
    assert loaded.rounds == 3


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("0.1", 0.1),
        ('"adam"', "adam"),
        ("adam", "adam"),
        ("None", None),
        ("null", None),
        ("True", True),
        ("[1, 2]", [1, 2]),
        ("('a', 'b')", ("a", "b")),
    ],
)
def test_parse_value(raw: str, value: object) -> None:
    assert parse_value(raw) == value


def test_the_projects_hyperparameters_file_fits_the_model() -> None:
    raw = json.loads((PROJECT / "hyperparameters.json").read_text())
    assert all(isinstance(value, str) for value in raw.values()), "SageMaker sends strings"
    assert isinstance(hyperparameters.load(model.Hyperparameters, raw), model.Hyperparameters)


def test_the_model_defaults_load_from_an_empty_file() -> None:
    assert hyperparameters.load(model.Hyperparameters, {}) == model.Hyperparameters()


@dataclass(frozen=True)
class Bounded:
    rate: float = hyperparameter(0.1, "Step size.", gt=0, le=1)
    layers: list[int] = hyperparameter([8, 8], "Units per layer.", ge=1)
    depth: int | None = hyperparameter(None, "Deepest level; null: no limit.", ge=1)
    mode: Literal["fast", "exact"] = hyperparameter("fast", "How | to run.")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"rate": "0"}, "hyperparameter 'rate' must be > 0, got '0'"),
        ({"rate": "1.5"}, "hyperparameter 'rate' must be <= 1, got '1.5'"),
        ({"rate": "NaN"}, "hyperparameter 'rate' must be a number, not NaN, got 'NaN'"),
        ({"layers": "[8, 0]"}, r"hyperparameter 'layers' must be >= 1, got '\[8, 0\]'"),
        ({"depth": "0"}, "hyperparameter 'depth' must be >= 1, got '0'"),
    ],
)
def test_values_out_of_bounds_name_the_hyperparameter(raw: dict, message: str) -> None:
    with pytest.raises(HyperparameterError, match=f"^{message}$"):
        load(Bounded, raw)


def test_values_within_bounds_load() -> None:
    loaded = load(Bounded, {"rate": "1", "layers": "[1]", "depth": "None"})
    assert (loaded.rate, loaded.layers, loaded.depth) == (1.0, [1], None)


def test_list_defaults_are_not_shared() -> None:
    first, second = Bounded(), Bounded()
    first.layers.append(3)
    assert second.layers == [8, 8]


def test_describe_is_a_markdown_table_of_the_declaration() -> None:
    assert describe(Bounded) == (
        "| Hyperparameter | Type | Default | Bounds | Description |\n"
        "|---|---|---|---|---|\n"
        "| `rate` | float | `0.1` | > 0, <= 1 | Step size. |\n"
        "| `layers` | list[int] | `[8, 8]` | >= 1 | Units per layer. |\n"
        "| `depth` | int \\| None | `null` | >= 1 | Deepest level; null: no limit. |\n"
        '| `mode` | one of `fast`, `exact` | `"fast"` |  | How \\| to run. |\n'
    )


def test_every_model_hyperparameter_is_declared_with_help() -> None:
    for declared in fields(model.Hyperparameters):
        assert declared.metadata.get("help"), f"{declared.name} has no help"
    for name in ("validation_fraction", "seed"):  # The runner reads these two.
        assert name in {declared.name for declared in fields(model.Hyperparameters)}


def test_the_readme_tables_are_made_from_model_py() -> None:
    readme = (PROJECT / "README.md").read_text()
    assert docs.update(readme) == readme, "README.md is out of date: run `make docs`"
    assert describe(model.Hyperparameters) in readme
    for name in model.METRICS:
        assert f"| `{name}` |" in readme


def test_a_value_nested_beyond_any_parser_is_a_hyperparameter_error() -> None:
    """JSON nested 100,000 deep: RecursionError from the parsers, never out of the job."""
    name = next(f.name for f in fields(model.Hyperparameters) if f.type in (int, "int"))
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(HyperparameterError) as raised:
        load(model.Hyperparameters, {name: deep})
    assert str(raised.value).startswith(f"hyperparameter {name!r}: expected an integer, got '[[[")


def test_a_huge_value_is_cut_in_the_message() -> None:
    name = next(f.name for f in fields(model.Hyperparameters) if f.type in (int, "int"))
    huge = "x" * 10_000_000
    with pytest.raises(HyperparameterError) as raised:
        load(model.Hyperparameters, {name: huge})
    message = str(raised.value)
    assert len(message) < 400
    assert message.endswith("... (10,000,002 characters)")
    with pytest.raises(HyperparameterError) as raised:
        load(model.Hyperparameters, {huge: "1"})
    assert len(str(raised.value)) < 400 + len(
        ", ".join(f.name for f in fields(model.Hyperparameters))
    )
