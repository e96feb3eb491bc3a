"""Helpers for the tests: a SageMaker-shaped directory, free ports, HTTP without extra deps,
and the real server process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package_name }}.checkpoints import Checkpoints
from {{ cookiecutter.package_name }}.environment import Paths

PROJECT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = PROJECT / "data" / "iris.csv"
SAMPLE_REQUEST = PROJECT / "data" / "sample-request.csv"
N_FEATURES = len(SAMPLE_REQUEST.read_text().splitlines()[0].split(","))
# The sample as the model sees it: the first column, and the features.
SAMPLE_LABELS = np.loadtxt(SAMPLE_DATA, delimiter=",", usecols=0, dtype=str)
SAMPLE_FEATURES = np.loadtxt(SAMPLE_DATA, delimiter=",", usecols=range(1, N_FEATURES + 1))


# In CI (CI, or SM_BYOC_STRICT as the template's own tests set it) nothing may be skipped for
# want of a tool: a missing tool fails the test instead.
STRICT = bool(os.environ.get("CI") or os.environ.get("SM_BYOC_STRICT"))


def require_tool(name: str) -> str:
    """The path of the command ``name``; the test is skipped without it (failed if STRICT)."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed"
        if STRICT:
            pytest.fail(message)
        pytest.skip(message)
    return found


def layout(base: Path, hyperparameters: dict[str, str] | None = None) -> Paths:
    """A directory laid out like /opt/ml for a training job on the sample data."""
    paths = Paths(base)
    paths.input_config.mkdir(parents=True)
    paths.hyperparameters.write_text(json.dumps(hyperparameters or {}))
    paths.channel("training").mkdir(parents=True)
    shutil.copy(SAMPLE_DATA, paths.channel("training"))
    return paths


def recorded_checkpoints(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The step of every checkpoint written from now on."""
    written: list[int] = []
    save = Checkpoints.save

    def recording(self: Checkpoints, step: int, write: Callable[[Path], None]) -> Path:
        written.append(step)
        return save(self, step, write)

    monkeypatch.setattr(Checkpoints, "save", recording)
    return written


def start_hosts(
    base: Path,
    hyperparameters: dict[str, str],
    hosts: int = 2,
    addresses: dict[str, str] | None = None,
    stdout: int | None = subprocess.PIPE,
) -> list[tuple[Paths, subprocess.Popen[str]]]:
    """One training job on ``hosts`` machines, each a process with its own /opt/ml.

    The host names map to the loopback address (``LOCAL_HOST_ADDRESSES``), as SageMaker's
    DNS maps them to instances, unless ``addresses`` says otherwise; the interface is ``lo``.
    One address for all: LightGBM finds its rank among the machines by its own addresses,
    and 127.0.0.1 is the one loopback address an interface lists. Returns each host's paths
    and running process (stderr piped; stdout too unless ``stdout`` says otherwise),
    ``algo-1`` first.
    """
    names = [f"algo-{i}" for i in range(1, hosts + 1)]
    if addresses is None:
        addresses = dict.fromkeys(names, "127.0.0.1")
    port = free_port_range(hosts + 2)  # A rendezvous port, and what frameworks add to it.
    started = []
    for name in names:
        paths = layout(base / name, hyperparameters)
        paths.resource_config.write_text(
            json.dumps({"current_host": name, "hosts": names, "network_interface_name": "lo"})
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SAGEMAKER_BASE_DIR": str(paths.base),
            "LOCAL_HOST_ADDRESSES": json.dumps(addresses),
            "MASTER_PORT": str(port),
        }
        command = [sys.executable, "-m", "{{ cookiecutter.package_name }}", "train"]
        process = subprocess.Popen(
            command, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True
        )
        started.append((paths, process))
    return started


def run_hosts(
    base: Path,
    hyperparameters: dict[str, str],
    hosts: int = 2,
    timeout: float = 300,
    addresses: dict[str, str] | None = None,
) -> list[tuple[Paths, subprocess.CompletedProcess[str]]]:
    """``start_hosts``, then each host's paths and finished process, ``algo-1`` first."""
    started = start_hosts(base, hyperparameters, hosts, addresses)
    finished = []
    for paths, process in started:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for _, other in started:
                other.kill()
            raise
        finished.append(
            (paths, subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
        )
    return finished


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive ports that are all free now."""
    while True:
        first = free_port()
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return first


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) for one request; HTTP errors are answers, not exceptions.

    Header names are lowercased.
    """
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, lower(error.headers.items()), error.read()


def npy(array: np.ndarray) -> bytes:
    """``array`` as an ``application/x-npy`` body (no pickles)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


STARTUP_SECONDS = 60
# What each worker logs once it accepts requests (with its model, loaded or failed).
WORKER_ACCEPTING = re.compile(r"\[(\d+)\] \S+: worker accepting requests")


class Server:
    def __init__(self, base: Path, port: int, *, wrapper: Sequence[str] = (), **env: str) -> None:
        """``python -m ... serve`` on ``port``, serving ``base``; run through the command
        ``wrapper`` (which ends by executing its arguments) if one is given."""
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.started = time.monotonic()
        self.log = base.parent / f"server-{port}.log"
        # Appending: nginx opens /dev/stderr for its own log lines, which then land at the
        # end of the file whatever the other processes' shared offset says.
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*wrapper, sys.executable, "-m", "{{ cookiecutter.package_name }}", "serve"],
                env={
                    **os.environ,
                    "SAGEMAKER_BASE_DIR": str(base),
                    "SAGEMAKER_BIND_TO_PORT": str(port),
                    "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
                    **env,
                },
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def ping(self) -> int | None:
        try:
            return http("GET", self.url + "/ping")[0]
        except OSError:
            return None

    def post_csv(self, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """``POST /invocations`` with a CSV body: ``body``, else the sample request."""
        if body is None:
            body = SAMPLE_REQUEST.read_bytes()
        return http("POST", self.url + "/invocations", body, {"Content-Type": "text/csv"})

    def loads(self) -> int:
        return len(self.worker_pids())

    def worker_pids(self) -> list[int]:
        """The workers, in the order they started accepting requests."""
        return [int(pid) for pid in WORKER_ACCEPTING.findall(self.log.read_text())]

    def request_lines(self) -> list[dict]:
        """The request log: every line of the server's output that is a JSON object."""
        lines = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not condition():
            assert self.process.poll() is None, f"the server exited:\n{self.log.read_text()}"
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{what} did not happen in {STARTUP_SECONDS} s:\n{self.log.read_text()}"
                )
            time.sleep(0.05)

    def wait_until_healthy(self, workers: int = 1) -> None:
        """/ping 200, and every worker accepting requests."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited:\n{self.log.read_text()}"
            if self.ping() == 200 and self.loads() >= workers:
                return
            time.sleep(0.1)
        pytest.fail(f"/ping was not 200 within {STARTUP_SECONDS} s:\n{self.log.read_text()}")

    def stop(self) -> tuple[int, float]:
        """SIGTERM, as SageMaker sends it; the exit code and how long the stop took."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail("the server ignored SIGTERM for 30 s")
        return code, time.monotonic() - started


@contextlib.contextmanager
def healthy_server(serving_dir: Path, **env: str) -> Iterator[Server]:
    """``python -m ... serve`` with two workers on a free port, once every worker has loaded
    the model; then SIGTERM, which must stop it with exit code 0 before SageMaker's SIGKILL
    (30 s after SIGTERM; the server gives in-flight requests 25 s)."""
    server = Server(serving_dir, free_port(), **env)
    try:
        server.wait_until_healthy(workers=2)
        yield server
    finally:
        code, seconds = server.stop()
        assert code == 0
        assert seconds < 25
