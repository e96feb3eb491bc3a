"""What the template's tests share: the option matrix, bakes, interpreters, caches."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parents[1]
CONFIG: dict[str, Any] = json.loads((TEMPLATE / "cookiecutter.json").read_text())
CACHE = Path(os.environ.get("SM_BYOC_CACHE", Path.home() / ".cache" / "sm-byoc"))
# In CI nothing may be skipped for want of a tool: a missing tool is a failure.
STRICT = bool(os.environ.get("CI") or os.environ.get("SM_BYOC_STRICT"))


def choices() -> dict[str, list[Any]]:
    """Every prompt with a fixed set of answers (lists and booleans), default first."""
    found: dict[str, list[Any]] = {}
    for name, value in CONFIG.items():
        if name.startswith("_"):
            continue
        if isinstance(value, list):
            found[name] = list(value)
        elif isinstance(value, bool):
            found[name] = [value, not value]
    return found


def defaults() -> dict[str, Any]:
    return {name: values[0] for name, values in choices().items()}


def python_versions() -> list[str]:
    """The Python versions the prompts offer, oldest first ("3.9" before "3.10")."""
    return sorted(choices()["python_version"], key=lambda v: tuple(map(int, v.split("."))))


# Options whose values change the same files, so each pair of values is baked too.
INTERACTING = [("server", "framework"), ("server", "include_github_ci")]


def option_matrix() -> list[dict[str, Any]]:
    """Contexts to bake: the defaults, each value of each option alone, the interacting pairs.

    Derived from cookiecutter.json, so a new option or value is baked without a test edit.
    """
    options = choices()
    contexts: list[dict[str, Any]] = [{}]
    for name, values in options.items():
        contexts.extend({name: value} for value in values[1:])
    for first, second in INTERACTING:
        for a, b in itertools.product(options[first], options[second]):
            contexts.append({first: a, second: b})
    unique: list[dict[str, Any]] = []
    for context in contexts:
        reduced = {k: v for k, v in context.items() if v != options[k][0]}
        if reduced not in unique:
            unique.append(reduced)
    return unique


def context_id(context: Mapping[str, Any]) -> str:
    return "-".join(f"{k}={v}" for k, v in context.items()) or "defaults"


def full_context(extra: Mapping[str, Any]) -> dict[str, Any]:
    context = {**defaults(), **extra}
    context.setdefault("project_slug", "iris-classifier")
    context.setdefault("package_name", context["project_slug"].replace("-", "_"))
    return context


def expected_files(context: Mapping[str, Any]) -> set[str]:
    """The exact file set a bake with ``context`` must produce."""
    pkg = f"src/{context['package_name']}"
    files = {
        ".dockerignore",
        ".gitattributes",
        ".gitignore",
        "Dockerfile",
        "Makefile",
        "README.md",
        "data/iris.csv",
        "data/sample-request.csv",
        "hyperparameters.json",
        "openapi.json",
        "pyproject.toml",
        "scripts/benchmark.py",
        "scripts/sagemaker.py",
        "scripts/soak.py",
        *(
            f"{pkg}/{module}.py"
            for module in (
                "__init__",
                "__main__",
                "access_log",
                "app",
                "channels",
                "checkpoints",
                "cluster",
                "codec",
                "docs",
                "environment",
                "hyperparameters",
                "inference",
                "job",
                "model",
                "packaging",
                "readiness",
                "serve",
                "training",
            )
        ),
        *(
            f"tests/{module}.py"
            for module in (
                "__init__",
                "conftest",
                "support",
                "test_app",
                "test_benchmark_script",
                "test_channels",
                "test_checkpoints",
                "test_cli",
                "test_cluster",
                "test_codec",
                "test_environment",
                "test_hyperparameters",
                "test_model",
                "test_packaging",
                "test_resume",
                "test_robustness",
                "test_sagemaker_script",
                "test_soak_script",
                "test_server",
                "test_training",
            )
        ),
    }
    if context["server"] != "fastapi-uvicorn":
        files.add(f"{pkg}/gunicorn_server.py")
    if context["include_github_ci"]:
        files.add(".github/workflows/ci.yml")
    if context["framework"] == "pytorch":
        files.add("wheels/README.md")
    if context["framework"] in ("pytorch", "xgboost", "lightgbm"):
        files.add(f"{pkg}/distributed.py")
    return files


def project_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


JINJA_RESIDUE = re.compile(r"(?<!\$)\{\{|\{%|%\}|\{#|#\}")


def jinja_residue(root: Path) -> list[str]:
    """``file:line`` of every leftover Jinja marker (GitHub's ``${{ }}`` is not one)."""
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if JINJA_RESIDUE.search(line):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def run(
    args: list[str], cwd: Path | None = None, timeout: float = 900, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def tool(name: str) -> str | None:
    """A command-line tool, from this interpreter's environment first, then PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def find_python(version: str) -> str | None:
    """An interpreter for ``version`` ("3.12"): on PATH, or installed by pyenv."""
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(
        (str(p) for p in pyenv_root.glob(f"versions/{version}.*/bin/python{version}")),
        reverse=True,
    )
    for candidate in candidates:
        if candidate and run([candidate, "-c", "import venv"], timeout=60).returncode == 0:
            return candidate
    return None


TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def local_wheels(name: str, tag: str) -> list[Path]:
    """Wheels of ``name`` for CPython ``tag`` ("cp311") in this machine's pip find-links."""
    folders = os.environ.get("PIP_FIND_LINKS", "/opt/wheels").split()
    return sorted(
        wheel for folder in folders for wheel in Path(folder).glob(f"{name}-*-{tag}-{tag}-*.whl")
    )


# PyPI's Linux torch is a CUDA build: 15 nvidia-* packages, 5.3 GB installed, about 3
# minutes to install on a fresh machine (measured for Python 3.10 and 3.13; the nvidia
# wheels lie on the test machines, torch itself comes from PyPI). The last resort: it runs
# the tests on the CPU all the same.
@functools.cache
def torch_source(version: str) -> list[str]:
    """pip's arguments for a torch that can run the tests on Python ``version`` ("3.11").

    A CPU wheel lying on this machine, else PyTorch's CPU index if it answers, else PyPI's
    CUDA build.
    """
    wheels = local_wheels("torch", "cp" + version.replace(".", ""))
    if wheels:
        return [str(wheels[-1])]
    try:
        with urllib.request.urlopen(f"{TORCH_CPU_INDEX}/torch/", timeout=10):
            return ["--index-url", TORCH_CPU_INDEX, "torch"]
    except OSError:
        return ["torch"]


def install_cpu_torch(venv: Path) -> None:
    """Torch before the project: PyPI's Linux wheel would pull gigabytes of CUDA.

    From ``torch_source``: a CPU wheel lying on this machine if there is one.
    """
    version = run([str(venv / "bin/python"), "-c", "import sys; print(*sys.version_info[:2])"])
    source = torch_source(version.stdout.strip().replace(" ", "."))
    installed = run([str(venv / "bin/python"), "-m", "pip", "install", "-q", *source])
    assert installed.returncode == 0, installed.stderr[-4000:]


@contextmanager
def project_venv(project: Path, python: str) -> Iterator[Path]:
    """A virtualenv with ``project`` installed, held for the caller alone until it is done.

    The dependencies are installed once per cache key (interpreter and pyproject.toml); the
    project itself is installed again (editable, without dependencies) for every bake. Bakes
    with the same key (two stacks of one web framework) share the venv in turn, never at once.
    """
    pyproject = (project / "pyproject.toml").read_text()
    name_line = re.compile(r"^name = .*$", re.MULTILINE)
    key = hashlib.sha256(f"{python}\n{name_line.sub('', pyproject)}".encode()).hexdigest()[:16]
    venv = CACHE / "venvs" / key
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = venv / ".ready"
        if not ready.exists():
            shutil.rmtree(venv, ignore_errors=True)
            created = run([python, "-m", "venv", str(venv)])
            assert created.returncode == 0, created.stderr
            if re.search(r'^\s*"torch[>=<~ ]', pyproject, re.MULTILINE):
                install_cpu_torch(venv)
            install = ["-e", ".[dev]"]
        else:
            install = ["--no-deps", "-e", "."]
        installed = run(
            [str(venv / "bin/python"), "-m", "pip", "install", "-q", *install], cwd=project
        )
        assert installed.returncode == 0, installed.stderr[-4000:]
        ready.write_text("ok\n")
        yield venv
