"""The generated image in a real Docker engine: build, ``train``, ``serve``, SIGTERM.

Needs a running engine (``.ci/docker-engine.sh`` starts one) and a stand-in for the
``python:X-slim`` base image, which no registry here can serve (``.ci/standin-image.sh``
builds one from Debian with debootstrap and caches it).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .helpers import STRICT, TEMPLATE, choices, context_id, full_context, local_wheels, run

# One worker builds the images and runs every container test (pytest -n 2 --dist loadgroup).
pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("docker")]

# Debian suite -> the Python it ships; a project of python_version X builds on the first
# stand-in whose Python is at least X.
STANDINS = {"bookworm": "3.11", "trixie": "3.13"}
EXPECTED = ["setosa", "setosa", "versicolor", "versicolor", "virginica", "virginica"]
# Every framework with the default stack, and the stack that differs most in the image.
VARIANTS = [{"framework": framework} for framework in choices()["framework"]] + [
    {"server": "nginx-gunicorn-flask"}
]


@pytest.fixture(scope="session")
def engine() -> None:
    if shutil.which("docker") and run(["docker", "info"], timeout=60).returncode == 0:
        return
    message = "no Docker engine answers (start one with .ci/docker-engine.sh)"
    if STRICT:
        pytest.fail(message)
    pytest.skip(message)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def standin(python_version: str) -> str:
    """A local stand-in for python:X-slim (built once, cached) with Python >= X."""
    suite, python = next(
        (suite, python)
        for suite, python in STANDINS.items()
        if version_tuple(python) >= version_tuple(python_version)
    )
    tag = f"sm-byoc-python:{python}-slim"
    built = run(["bash", str(TEMPLATE / ".ci" / "standin-image.sh"), suite, tag], timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return tag


# Frameworks whose test build needs a particular Python (the wheels on this machine).
BUILD_PYTHON: dict[str | None, dict[str, str]] = {"pytorch": {"python_version": "3.11"}}


def build_args(context: dict, project: Path) -> list[str]:
    """Extra `make build` variables a framework needs to build without its usual index.

    PyTorch's CPU index is out of reach here: the CPU wheel lying on this machine goes into
    the project's wheels/ folder, pinned exactly so that PyPI's CUDA build cannot win.
    """
    if context["framework"] != "pytorch":
        return []
    tag = "cp" + context["python_version"].replace(".", "")
    wheels = [wheel for wheel in local_wheels("torch", tag) if "+cpu-" in wheel.name]
    if not wheels:
        if STRICT:
            pytest.fail(f"no CPU torch wheel for {tag} on this machine")
        pytest.skip(f"no CPU torch wheel for {tag} on this machine")
    shutil.copy(wheels[-1], project / "wheels")
    version = wheels[-1].name.split("-")[1]
    return ["TORCH_INDEX_URL=https://pypi.org/simple", f"TORCH_REQUIREMENT=torch=={version}"]


class Image:
    def __init__(self, tag: str, project: Path, context: dict[str, str]) -> None:
        self.tag = tag
        self.project = project
        self.project_context = context
        self.package = context["package_name"]

    def run(self, *args: str, timeout: float = 300) -> tuple[int, str, str]:
        done = run(["docker", "run", "--rm", *args], timeout=timeout)
        return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="session")
def build_image(cookies_session, engine: None) -> Iterator[Callable[[dict[str, str]], Image]]:
    """Bake and build each variant once per session, whatever order the tests run in
    (pytest-xdist interleaves them with other modules, which would end a module fixture)."""
    built: dict[str, Image] = {}

    def build(variant: dict[str, str]) -> Image:
        key = context_id(variant)
        if key not in built:
            built[key] = _build(cookies_session, variant)
        return built[key]

    yield build
    for image in built.values():
        run(["docker", "rmi", "-f", image.tag])


def _build(cookies_session, variant: dict[str, str]) -> Image:
    extra = {**variant, **BUILD_PYTHON.get(variant.get("framework"), {})}
    context = full_context(extra)
    result = cookies_session.bake(extra_context=context)
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    name = f"sm-byoc-test/{context['framework']}-{context['server']}"
    tag = uuid.uuid4().hex[:8]
    # The generated Makefile's own build command, with the stand-in base.
    built = run(
        [
            "make", "build", f"BASE_IMAGE={standin(context['python_version'])}",
            f"IMAGE={name}", f"TAG={tag}", *build_args(context, project),
        ],
        cwd=project,
        timeout=1200,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    return Image(f"{name}:{tag}", project, context)


@pytest.fixture(params=VARIANTS, ids=context_id)
def image(request: pytest.FixtureRequest, build_image: Callable[[dict[str, str]], Image]) -> Image:
    return build_image(request.param)


def project_hyperparameters(image: Image) -> dict[str, str]:
    return json.loads((image.project / "hyperparameters.json").read_text())


def layout(base: Path, project: Path, hyperparameters: dict[str, str]) -> Path:
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (base / "input" / "data" / "training").mkdir(parents=True)
    shutil.copy(project / "data" / "iris.csv", base / "input" / "data" / "training")
    return base


def http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Container:
    def __init__(self, image: Image, model_dir: Path, port: int, container_port: int = 8080):
        self.name = f"sm-byoc-{uuid.uuid4().hex[:10]}"
        env = [] if container_port == 8080 else ["-e", f"SAGEMAKER_BIND_TO_PORT={container_port}"]
        started = run(
            [
                "docker", "run", "-d", "--name", self.name,
                "-p", f"127.0.0.1:{port}:{container_port}",
                "-v", f"{model_dir}:/opt/ml/model:ro",
                *env, image.tag, "serve",
            ]
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        self.url = f"http://127.0.0.1:{port}"

    def wait_healthy(self, seconds: float = 90) -> float:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            try:
                if http(self.url + "/ping")[0] == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"/ping not 200 within {seconds} s:\n{self.logs()}")

    def logs(self) -> str:
        done = run(["docker", "logs", self.name])
        return (done.stdout + done.stderr)[-4000:]

    def stop(self) -> tuple[int, float]:
        started = time.monotonic()
        stopped = run(["docker", "stop", "-t", "30", self.name], timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        seconds = time.monotonic() - started
        code = run(["docker", "inspect", "-f", "{{.State.ExitCode}}", self.name]).stdout.strip()
        return int(code), seconds

    def remove(self) -> None:
        run(["docker", "rm", "-f", self.name])


def test_image_is_configured_for_sagemaker(image: Image) -> None:
    inspected = json.loads(run(["docker", "inspect", image.tag]).stdout)[0]["Config"]
    assert inspected["Entrypoint"] == ["python", "-m", image.package]
    assert inspected["Cmd"] == ["serve"]
    assert "8080/tcp" in inspected["ExposedPorts"]
    assert (
        inspected["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    )
    assert "PYTHONUNBUFFERED=1" in inspected["Env"]


def test_anything_but_train_or_serve_exits_2(image: Image) -> None:
    code, _, err = image.run(image.tag, "bogus")
    assert code == 2
    assert f"usage: python -m {image.package} train|serve" in err


def test_train_package_serve_predict_stop(image: Image, tmp_path: Path) -> None:
    job = layout(tmp_path / "job", image.project, project_hyperparameters(image))
    code, out, err = image.run("-v", f"{job}:/opt/ml", image.tag, "train")
    assert code == 0, err[-3000:]
    assert "validation:accuracy=" in out
    assert not (job / "output" / "failure").exists()
    assert (job / "model" / "metadata.json").is_file()

    # model.tar.gz as SageMaker makes it, then extracted as SageMaker does for an endpoint.
    code, _, err = image.run(
        "-v", f"{job}:/opt/ml", "-v", f"{tmp_path}:/work", "--entrypoint", "python", image.tag,
        "-m", f"{image.package}.packaging", "create", "/opt/ml/model", "/work/model.tar.gz",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = image.run(
        "-v", f"{tmp_path}:/work", "--entrypoint", "python", image.tag,
        "-m", f"{image.package}.packaging", "extract", "/work/model.tar.gz",
        "/work/endpoint/model",
    )  # fmt: skip
    assert code == 0, err

    container = Container(image, tmp_path / "endpoint" / "model", free_port())
    try:
        container.wait_healthy()
        request = (image.project / "data" / "sample-request.csv").read_bytes()
        status, body = http(container.url + "/invocations", request, {"Content-Type": "text/csv"})
        assert status == 200, body
        assert body.decode().splitlines() == EXPECTED
        status, body = http(
            container.url + "/invocations",
            json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode(),
            {"Content-Type": "application/json", "Accept": "application/json"},
        )
        assert (status, json.loads(body)) == (200, {"predictions": ["setosa"]})
        assert (
            http(container.url + "/invocations", b"1,2\n", {"Content-Type": "text/csv"})[0] == 400
        )
        assert http(container.url + "/invocations", b"x", {"Content-Type": "image/png"})[0] == 415
        code, seconds = container.stop()
        assert code == 0, container.logs()
        assert seconds < 10, f"SIGTERM took {seconds:.1f} s"
    finally:
        container.remove()


def test_serve_honours_sagemaker_bind_to_port(image: Image, tmp_path: Path) -> None:
    job = layout(tmp_path / "job", image.project, project_hyperparameters(image))
    code, _, err = image.run("-v", f"{job}:/opt/ml", image.tag, "train")
    assert code == 0, err
    container = Container(image, job / "model", free_port(), container_port=9123)
    try:
        container.wait_healthy()
    finally:
        container.remove()


def test_a_failed_job_writes_the_failure_file(image: Image, tmp_path: Path) -> None:
    job = layout(tmp_path / "job", image.project, {"no_such_thing": "1"})
    code, _, _ = image.run("-v", f"{job}:/opt/ml", image.tag, "train")
    assert code != 0
    reason = (job / "output" / "failure").read_text().splitlines()[0]
    assert reason.startswith("HyperparameterError: unknown hyperparameter 'no_such_thing'; known:")


# Long enough that a stop lands mid-way (many checkpoints), short enough to finish after it.
RESUMABLE = {
    "scikit-learn": {"n_estimators": "600", "checkpoint_every": "10"},
    "xgboost": {"num_round": "1000", "eta": "0.01", "checkpoint_every": "20"},
    "lightgbm": {"num_iterations": "1000", "learning_rate": "0.01", "checkpoint_every": "20"},
    "pytorch": {"epochs": "600", "checkpoint_every": "10"},
    "tensorflow": {"epochs": "150", "checkpoint_every": "5"},
    "custom": {"epochs": "5000", "checkpoint_every": "100"},
}


def test_a_stopped_job_resumes_from_its_checkpoint(image: Image, tmp_path: Path) -> None:
    framework = image.project_context["framework"]
    job = layout(tmp_path / "job", image.project, RESUMABLE[framework])
    checkpoints = job / "checkpoints"
    name = f"sm-byoc-{uuid.uuid4().hex[:10]}"
    started = run(
        ["docker", "run", "-d", "--name", name, "-v", f"{job}:/opt/ml", image.tag, "train"]
    )
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 120
        while not any(checkpoints.glob("step-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(checkpoints.glob("step-*")), run(["docker", "logs", name]).stderr[-4000:]
        assert run(["docker", "kill", "-s", "TERM", name]).returncode == 0
        code = run(["docker", "wait", name], timeout=150).stdout.strip()
        logs = run(["docker", "logs", name]).stderr
    finally:
        run(["docker", "rm", "-f", name])
    assert code not in ("0", ""), logs[-4000:]
    reason = (job / "output" / "failure").read_text().splitlines()[0]
    assert reason.startswith("TrainingStopped: stopped by signal SIGTERM after step"), logs
    stopped_at = int(reason.split("after step ")[1].split(";")[0])
    assert not (job / "model" / "metadata.json").exists()

    (job / "output" / "failure").unlink()
    code, _, err = image.run("-v", f"{job}:/opt/ml", image.tag, "train")
    assert code == 0, err[-4000:]
    assert f"resuming from the checkpoint for step {stopped_at}" in err
    assert (job / "model" / "metadata.json").exists()
    assert not (job / "output" / "failure").exists()
