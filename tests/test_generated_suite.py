"""Each server stack's generated project passes its own test suite, in its own virtualenv.

The suite trains on the sample data, packages and unpacks model.tar.gz, starts the real
server process and checks /ping, predictions, bad input and SIGTERM. Nothing may be skipped.
Only the app and the server process differ between stacks: the first stack of each
framework runs the whole suite, the other stacks the app's and the server's tests (which
still train the model they serve), plus the bad-input and bad-client tests with two
frameworks.

What differs between Pythons is which releases of the libraries pip finds (XGBoost 3.2 on
3.10 and 3.11, 3.4 on 3.12 and later): every framework runs on the oldest and the newest
Python the prompts offer, the whole suite at one end and, at the other, its other stacks
plus the model, training and resume tests. Two virtualenvs per framework, as with one Python.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from .helpers import (
    STRICT,
    choices,
    defaults,
    find_python,
    full_context,
    local_wheels,
    project_venv,
    python_versions,
    run,
)

pytestmark = pytest.mark.slow

NGINX_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])

PYTHONS = python_versions()
OLDEST, NEWEST = PYTHONS[0], PYTHONS[-1]
# Where each framework runs its whole suite; its other stacks run at the other end. Half at
# each end, so both ends see the whole suite with several libraries.
FULL_SUITE_AT = {
    "scikit-learn": NEWEST,
    "xgboost": NEWEST,
    "lightgbm": OLDEST,
    "tensorflow": OLDEST,
    "custom": OLDEST,
}
# PyTorch runs its whole suite (and its other stacks) where this machine has a CPU wheel of
# torch, and the model tests at both ends, with a torch from helpers.torch_source (PyPI's
# CUDA build, run on the CPU, where there is no CPU wheel).
TORCH_WHEEL_PYTHONS = [v for v in PYTHONS if local_wheels("torch", "cp" + v.replace(".", ""))]
FULL_SUITE_AT["pytorch"] = (TORCH_WHEEL_PYTHONS or [NEWEST])[-1]

# What differs between stacks: the web app and the server process in front of it. Every
# framework runs them on every stack.
STACK_TESTS = ("tests/test_app.py", "tests/test_server.py")
# How a stack stands bad input and bad clients depends on the stack, hardly on the model:
# the other stacks run it with one ML library and with none (the first stack runs it with
# every framework, in the whole suite). So do the server tests marked ``stack`` (the
# stack's own behaviour: signals, limits, logs, a predict replaced by a stand-in); the other
# frameworks run the rest of the server tests there (loading, serving, workers replaced).
ROBUSTNESS_TESTS = ("tests/test_robustness.py",)
ROBUSTNESS_FRAMEWORKS = ("scikit-learn", "custom")
MODEL_SIDE = "not stack"
# What differs between Pythons for a framework: its library's training, checkpoints, resume.
MODEL_TESTS = ("tests/test_model.py", "tests/test_training.py", "tests/test_resume.py")
# The fewest tests each group of files holds, whatever the framework (the whole suite: 150).
LEAST_PASSED = ((STACK_TESTS, 60), (ROBUSTNESS_TESTS, 60), (MODEL_TESTS, 20))


def other_end(python: str) -> str:
    """The Python a framework whose whole suite runs on ``python`` runs its other stacks on."""
    return OLDEST if python == NEWEST else NEWEST if python == OLDEST else python


def suites() -> list[dict[str, Any]]:
    """Every run: framework, server, python_version and the test files (empty: all)."""
    first, *others = choices()["server"]
    found = []
    for framework in choices()["framework"]:
        full = FULL_SUITE_AT[framework]
        found.append({"framework": framework, "server": first, "python_version": full})
        for number, server in enumerate(others):
            tests = [*STACK_TESTS]
            marks = {}
            if framework in ROBUSTNESS_FRAMEWORKS:
                tests += ROBUSTNESS_TESTS
            else:
                marks = {"marks": MODEL_SIDE}
            if number == 0 and other_end(full) != full:
                tests += MODEL_TESTS  # In the venv the other stacks share.
            found.append(
                {
                    "framework": framework,
                    "server": server,
                    "python_version": other_end(full),
                    "tests": tests,
                    **marks,
                }
            )
        for end in (OLDEST, NEWEST):
            if end not in (full, other_end(full)):
                found.append(
                    {
                        "framework": framework,
                        "server": first,
                        "python_version": end,
                        "tests": [*MODEL_TESTS],
                    }
                )
    # The default Python (what --no-input gives) and any other one no framework runs on: the
    # default framework's model tests.
    for python in PYTHONS:
        if all(suite["python_version"] != python for suite in found):
            default = defaults()
            found.append(
                {
                    "framework": default["framework"],
                    "server": first,
                    "python_version": python,
                    "tests": [*MODEL_TESTS],
                }
            )
    return found


SUITES = suites()


def suite_id(suite: dict[str, Any]) -> str:
    tests = (
        "all"
        if "tests" not in suite
        else "+".join(Path(t).stem.removeprefix("test_") for t in suite["tests"])
    )
    marks = f"-{suite['marks'].replace(' ', '-')}" if "marks" in suite else ""
    return f"{suite['framework']}-{suite['server']}-py{suite['python_version']}-{tests}{marks}"


def test_robustness_runs_with_frameworks_that_exist() -> None:
    assert set(ROBUSTNESS_FRAMEWORKS) <= set(choices()["framework"])


def test_every_framework_runs_on_the_oldest_and_the_newest_python() -> None:
    assert set(FULL_SUITE_AT) == set(choices()["framework"])
    for framework in choices()["framework"]:
        runs = [s for s in SUITES if s["framework"] == framework]
        assert sum("tests" not in s for s in runs) == 1  # The whole suite, once.
        for end in (OLDEST, NEWEST):
            here = {t for s in runs if s["python_version"] == end for t in s.get("tests", ["*"])}
            assert "*" in here or set(MODEL_TESTS) <= here, (framework, end)
    assert {s["python_version"] for s in SUITES} == set(PYTHONS)


def test_the_ends_come_from_cookiecutter_json() -> None:
    numbers = [tuple(map(int, v.split("."))) for v in choices()["python_version"]]
    assert tuple(map(int, OLDEST.split("."))) == min(numbers)
    assert tuple(map(int, NEWEST.split("."))) == max(numbers)


def summary_counts(output: str) -> dict[str, int]:
    """{"passed": 120, "failed": 0, ...} from pytest's last line."""
    last = output.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last)}


@pytest.mark.parametrize("suite", SUITES, ids=suite_id)
def test_generated_project_suite_passes(cookies, suite: dict[str, Any]) -> None:
    extra = {k: v for k, v in suite.items() if k not in ("tests", "marks")}
    python = find_python(extra["python_version"])
    if python is None:
        message = f"no Python {extra['python_version']} interpreter on this machine"
        if STRICT:
            pytest.fail(message)
        pytest.skip(message)
    if extra["server"] == "nginx-gunicorn-flask" and not shutil.which("nginx", path=NGINX_PATH):
        if STRICT:
            pytest.fail("nginx is not installed")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    result = cookies.bake(extra_context=full_context(extra))
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    selected = suite.get("tests", [])
    marks = ["-m", suite["marks"]] if "marks" in suite else []
    whole = not selected
    with project_venv(project, python) as venv:
        pytest_command = [str(venv / "bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        tested = run([*pytest_command, "-rfEs", *marks, *selected], cwd=project, timeout=900)
    output = tested.stdout + tested.stderr
    assert tested.returncode == 0, output[-6000:]
    counts = summary_counts(tested.stdout)
    least = 150 if whole else sum(n for group, n in LEAST_PASSED if set(group) <= set(selected))
    assert counts.get("passed", 0) >= least, output[-2000:]
    expected = {"passed", "warning", "warnings", *(["deselected"] if marks else [])}
    assert set(counts) <= expected, output[-3000:]  # no skip, no xfail
    if marks:  # The marker still selects something: it exists, and tests carry it.
        assert counts.get("deselected", 0) >= 10, output[-2000:]
