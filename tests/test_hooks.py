"""The pre-generation hook: its checks as functions, and as cookiecutter runs them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .helpers import TEMPLATE, choices, defaults, tool


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


REGIONS = ["us-east-1", "eu-west-2", "ap-southeast-3", "us-gov-west-1", "cn-north-1"]
# Shaped like a region, but no such region: refused where botocore can tell.
UNKNOWN_REGIONS = ["eu-middle-9", "us-east-7", "moon-south-1"]


@pytest.mark.parametrize("region", [*REGIONS, "eu-isoe-west-1", "eusc-de-east-1"])
def test_good_regions(region: str) -> None:
    assert pre.check_aws_region(region) is None


def test_botocore_knows_the_regions() -> None:
    """botocore is a dev requirement, so CI checks against its region list."""
    regions = pre.known_regions()
    assert regions is not None
    assert set(REGIONS) <= regions
    assert not set(UNKNOWN_REGIONS) & regions


@pytest.mark.parametrize("region", UNKNOWN_REGIONS)
def test_a_region_botocore_does_not_know_is_refused(region: str) -> None:
    message = pre.check_aws_region(region)
    assert message is not None
    assert message.startswith(f"aws_region {region!r} is not a region botocore knows")


@pytest.mark.parametrize("region", UNKNOWN_REGIONS)
def test_without_botocore_the_shape_is_checked(
    monkeypatch: pytest.MonkeyPatch, region: str
) -> None:
    monkeypatch.setattr(pre, "known_regions", lambda: None)
    assert pre.check_aws_region(region) is None
    assert pre.check_aws_region("US-EAST-1") is not None
    assert pre.check_aws_region("us_east_1") is not None


def test_known_regions_is_none_without_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "botocore.loaders", None)  # import fails
    assert pre.known_regions() is None


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


def prompt(answers: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """cookiecutter as a user runs it, answering its prompts with ``answers`` lines."""
    cli = tool("cookiecutter")
    assert cli, "cookiecutter is a dev requirement"
    config = tmp_path / "cookiecutterrc.yaml"
    config.write_text(f"replay_dir: {tmp_path / 'replay'}\n")
    return subprocess.run(
        [cli, str(TEMPLATE), "-o", str(tmp_path / "out"), "--config-file", str(config)],
        input=answers,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("answers", "field", "next_prompt"),
    [
        ("  \n", "project_name", "[2/"),
        ("My Model\nMy Model\n", "project_slug", "[3/"),
        ("My Model\nmy-model\nclass\n", "package_name", "[4/"),
        ("My Model\n" + "\n" * 7 + "eu-middle-9\n", "aws_region", "[10/"),
    ],
    ids=["project_name", "project_slug", "package_name", "aws_region"],
)
def test_a_bad_answer_stops_at_its_prompt_with_the_message_alone(
    tmp_path: Path, answers: str, field: str, next_prompt: str
) -> None:
    stopped = prompt(answers, tmp_path)
    assert stopped.returncode == 1
    assert stopped.stderr.startswith(f"ERROR: {field} "), stderr_of(stopped)
    assert "Traceback" not in stopped.stdout + stopped.stderr
    assert next_prompt not in stopped.stdout  # no prompt after the bad answer
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def stderr_of(result: subprocess.CompletedProcess[str]) -> str:
    return f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
