"""Each server stack's generated project passes its own test suite, in its own virtualenv.

The suite trains on the sample data, packages and unpacks model.tar.gz, starts the real
server process and checks /ping, predictions, bad input and SIGTERM. Nothing may be skipped.
Only the app and the server process differ between stacks: the first stack of each
framework runs the whole suite, the other stacks the app's and the server's tests (which
still train the model they serve), plus the bad-input and bad-client tests with two
frameworks.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from .helpers import STRICT, choices, find_python, full_context, project_venv, run

pytestmark = pytest.mark.slow

NGINX_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])

# Each framework runs on one Python (so the two stacks' venvs share their downloads), and
# the frameworks together cover every Python the prompts offer. PyTorch runs where this
# machine has a CPU wheel of torch.
FRAMEWORK_PYTHON = {
    "scikit-learn": "3.12",
    "xgboost": "3.13",
    "lightgbm": "3.10",
    "pytorch": "3.11",
    "tensorflow": "3.12",
    "custom": "3.13",
}
# What differs between stacks: the web app and the server process in front of it. Every
# framework runs them on every stack.
STACK_TESTS = ("tests/test_app.py", "tests/test_server.py")
# How a stack stands bad input and bad clients depends on the stack, hardly on the model:
# the other stacks run it with one ML library and with none (the first stack runs it with
# every framework, in the whole suite).
ROBUSTNESS_TESTS = "tests/test_robustness.py"
ROBUSTNESS_FRAMEWORKS = ("scikit-learn", "custom")
SUITES = [
    {"framework": framework, "server": server, "python_version": FRAMEWORK_PYTHON[framework]}
    for framework in choices()["framework"]
    for server in choices()["server"]
]


def test_robustness_runs_with_frameworks_that_exist() -> None:
    assert set(ROBUSTNESS_FRAMEWORKS) <= set(choices()["framework"])


def test_every_framework_has_a_python() -> None:
    assert set(FRAMEWORK_PYTHON) == set(choices()["framework"])
    assert set(FRAMEWORK_PYTHON.values()) == set(choices()["python_version"])


def summary_counts(output: str) -> dict[str, int]:
    """{"passed": 120, "failed": 0, ...} from pytest's last line."""
    last = output.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last)}


@pytest.mark.parametrize(
    "extra", SUITES, ids=lambda e: f"{e['framework']}-{e['server']}-py{e['python_version']}"
)
def test_generated_project_suite_passes(cookies, extra: dict[str, str]) -> None:
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
    whole = extra["server"] == choices()["server"][0]
    robustness = extra["framework"] in ROBUSTNESS_FRAMEWORKS
    selected = [] if whole else [*STACK_TESTS, *([ROBUSTNESS_TESTS] if robustness else [])]
    with project_venv(project, python) as venv:
        suite = [str(venv / "bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        tested = run([*suite, "-rfEs", *selected], cwd=project, timeout=900)
    output = tested.stdout + tested.stderr
    assert tested.returncode == 0, output[-6000:]
    counts = summary_counts(tested.stdout)
    least = 150 if whole else 120 if robustness else 60
    assert counts.get("passed", 0) >= least, output[-2000:]
    assert set(counts) <= {"passed", "warning", "warnings"}, output[-3000:]  # no skip, no xfail
