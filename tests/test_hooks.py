"""The pre-generation hook: its checks as functions, and as cookiecutter runs them."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .helpers import TEMPLATE, choices, defaults


def load_hook(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, TEMPLATE / "hooks" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pre = load_hook("pre_gen_project")


def answers(**changes: Any) -> dict[str, Any]:
    base = {
        "project_name": "Iris Classifier",
        "project_slug": "iris-classifier",
        "package_name": "iris_classifier",
        "description": "d",
        "author": "a",
        "aws_region": "us-east-1",
        **defaults(),
    }
    return {**base, **changes}


def test_the_defaults_pass() -> None:
    assert pre.problems(answers()) == []


def test_the_hook_knows_every_choice_the_prompts_offer() -> None:
    offered = choices()
    for field, allowed in pre.CHOICES.items():
        assert set(offered[field]) == set(allowed), field


@pytest.mark.parametrize(
    "slug",
    [
        "Iris",
        "iris classifier",
        "iris_classifier",
        "-iris",
        "iris-",
        "iris--x",
        "1iris",
        "",
        "a" * 39,
    ],
)
def test_bad_slugs(slug: str) -> None:
    (message,) = pre.problems(answers(project_slug=slug))
    assert message.startswith("project_slug")


@pytest.mark.parametrize("slug", ["iris", "iris-classifier", "x1-2", "a" * 38])
def test_good_slugs(slug: str) -> None:
    assert pre.check_project_slug(slug) is None


@pytest.mark.parametrize(
    "package",
    ["Iris", "1iris", "iris-classifier", "class", "json", "numpy", "torch", "tests", ""],
)
def test_bad_package_names(package: str) -> None:
    (message,) = pre.problems(answers(package_name=package))
    assert message.startswith("package_name")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("aws_region", "moon-base-1"),
        ("aws_region", "US-EAST-1"),
        ("python_version", "2.7"),
        ("server", "tornado"),
        ("framework", "caffe"),
        ("include_github_ci", "yes"),
        ("project_name", "  "),
        ("project_name", "two\nlines"),
        ("description", "two\nlines"),
        ("author", "a\rb"),
    ],
)
def test_bad_answers_name_their_field(field: str, value: Any) -> None:
    (message,) = pre.problems(answers(**{field: value}))
    assert message.startswith(field)


@pytest.mark.parametrize(
    "region", ["us-east-1", "eu-west-2", "ap-southeast-3", "us-gov-west-1", "cn-north-1"]
)
def test_good_regions(region: str) -> None:
    assert pre.check_aws_region(region) is None


def test_every_problem_is_reported_at_once() -> None:
    found = pre.problems(answers(project_slug="Bad Slug", package_name="1x", aws_region="x"))
    assert [m.split()[0] for m in found] == ["project_slug", "package_name", "aws_region"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"project_slug": "Bad Slug!"}, "project_slug"),
        ({"package_name": "import"}, "package_name"),
        ({"package_name": "os"}, "package_name"),
        ({"aws_region": "mars-1"}, "aws_region"),
        ({"project_slug": "my model"}, "project_slug"),
    ],
)
def test_cookiecutter_refuses_bad_answers(
    cookies, capfd, extra: dict[str, str], field: str
) -> None:
    result = cookies.bake(extra_context=extra)
    assert result.exit_code != 0
    assert result.project_path is None or not result.project_path.exists()
    err = capfd.readouterr().err
    assert f"ERROR: {field}" in err


def test_a_name_slugify_makes_nothing_of_gets_a_fallback_slug(cookies) -> None:
    result = cookies.bake(extra_context={"project_name": "🚀 ✨"})
    assert result.exit_code == 0, result.exception
    assert result.project_path.name == "sagemaker-model"
    assert (result.project_path / "src" / "sagemaker_model" / "__main__.py").is_file()


@pytest.mark.parametrize(
    "text",
    [
        "Quotes \"double\" and 'single'",
        "Back\\slashes \\n \\\\ and a trailing \\",
        "Unicode: café, naïve, 模型, emoji 🚀",
        "Triple quotes ''' and \"\"\" and TOML = [brackets]",
    ],
)
def test_awkward_free_text_breaks_nothing(cookies, text: str) -> None:
    result = cookies.bake(
        extra_context={"project_name": "Iris " + text[:5], "description": text, "author": text}
    )
    assert result.exit_code == 0, result.exception
    project = result.project_path
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == text
    assert pyproject["project"]["authors"] == [{"name": text}]
    assert text in (project / "README.md").read_text()


post = load_hook("post_gen_project")
PROJECT = TEMPLATE / "{{cookiecutter.project_slug}}"


def test_the_optional_folders_are_those_holding_only_optional_files() -> None:
    """The post-generation hook removes only these (when empty): the template's folders
    whose every file has a Jinja condition in its name, deepest first."""

    def optional(path: Path) -> bool:
        return "{%" in path.name if path.is_file() else all(map(optional, path.iterdir()))

    folders = [p for p in PROJECT.rglob("*") if p.is_dir() and optional(p)]
    expected = sorted(folders, key=lambda p: (-len(p.parts), p.as_posix()))
    assert list(post.OPTIONAL_FOLDERS) == [p.relative_to(PROJECT).as_posix() for p in expected]


def test_the_scripts_given_run_bits_are_the_templates_own() -> None:
    scripts = sorted(p.relative_to(PROJECT).as_posix() for p in (PROJECT / "scripts").iterdir())
    assert sorted(post.SCRIPTS) == scripts
