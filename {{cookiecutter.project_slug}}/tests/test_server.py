"""End to end: train -> model.tar.gz -> extract -> ``python -m <package> serve`` -> predict.

The real server process, on a free port, exactly as the container starts it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package_name }} import model, packaging
from {{ cookiecutter.package_name }}.environment import Paths

from .support import SAMPLE_REQUEST, free_port, http

STARTUP_SECONDS = 60


class Server:
    def __init__(self, base: Path, port: int, **env: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.started = time.monotonic()
        self.log = base.parent / f"server-{port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "{{ cookiecutter.package_name }}", "serve"],
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

    def loads(self) -> int:
        return self.log.read_text().count("model loaded from")

    def wait_until_healthy(self, workers: int = 1) -> None:
        """/ping 200, and every worker's copy of the model loaded."""
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


@pytest.fixture(scope="module")
def serving_dir(trained: Paths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model as SageMaker hands it to an endpoint: model.tar.gz extracted into model/."""
    root = tmp_path_factory.mktemp("endpoint")
    archive = root / "model.tar.gz"
    packaging.create(trained.model, archive)
    packaging.extract(archive, root / "opt_ml" / "model")
    return root / "opt_ml"


@pytest.fixture(scope="module")
def server(serving_dir: Path) -> Iterator[Server]:
    server = Server(serving_dir, free_port())
    try:
        server.wait_until_healthy(workers=2)
        yield server
    finally:
        code, seconds = server.stop()
        assert code == 0
        assert seconds < 10


def test_every_worker_loads_the_model_once_and_says_so(server: Server) -> None:
    time.sleep(0.5)
    assert server.loads() == 2, server.log.read_text()  # two workers, one load each


def test_ping(server: Server) -> None:
    assert http("GET", server.url + "/ping")[::2] == (200, b"")


def test_predictions_match_the_model(server: Server, serving_dir: Path) -> None:
    rows = np.loadtxt(SAMPLE_REQUEST, delimiter=",", ndmin=2)
    expected = [str(label) for label in model.predict(model.load(serving_dir / "model"), rows)]
    status, _, body = http(
        "POST",
        server.url + "/invocations",
        SAMPLE_REQUEST.read_bytes(),
        {"Content-Type": "text/csv"},
    )
    assert status == 200, body
    assert body.decode().splitlines() == expected
    status, headers, body = http(
        "POST",
        server.url + "/invocations",
        json.dumps({"instances": rows.tolist()}).encode(),
        {"Content-Type": "application/json", "Accept": "application/json"},
    )
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["predictions"] == expected


def test_bad_input_is_4xx_and_the_server_survives(server: Server) -> None:
    cases = [
        (b"not,numbers\n1,2", {"Content-Type": "text/csv"}, 400),
        (b"1,2,3,4", {"Content-Type": "application/octet-stream"}, 415),
        (b"1,2,3,4", {"Content-Type": "text/csv", "Accept": "image/png"}, 406),
        (b"{", {"Content-Type": "application/json"}, 400),
        (b"1,2\n", {"Content-Type": "text/csv"}, 400),
    ]
    for body, headers, status in cases:
        assert http("POST", server.url + "/invocations", body, headers)[0] == status, body
    assert server.ping() == 200


def test_bodies_over_6_mb_are_413(server: Server) -> None:
    row = b"5.1,3.5,1.4,0.2\n"
    body = row * (6 * 1024 * 1024 // len(row) + 1)
    try:
        status = http("POST", server.url + "/invocations", body, {"Content-Type": "text/csv"})[0]
    except (ConnectionError, urllib.error.URLError):
        status = 413  # The server may answer 413 and close before the whole body is sent.
    assert status == 413
    assert server.ping() == 200


def test_a_large_batch_is_one_request(server: Server) -> None:
    rows = b"5.1,3.5,1.4,0.2\n" * 50_000  # about 0.8 MB
    status, _, body = http("POST", server.url + "/invocations", rows, {"Content-Type": "text/csv"})
    assert status == 200
    assert body.decode().splitlines() == ["setosa"] * 50_000


def test_sigterm_lets_an_in_flight_request_finish(serving_dir: Path) -> None:
    server = Server(serving_dir, free_port(), SAGEMAKER_MODEL_SERVER_WORKERS="1")
    server.wait_until_healthy()
    body = b"6.3,3.3,6.0,2.5\n" * 1000
    head = (
        "POST /invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        # Half the request, then SIGTERM, then the rest: the request is in flight throughout.
        sock.sendall(head + body[: len(body) // 2])
        time.sleep(0.5)
        answer: list[tuple[int, float]] = []
        stopping = threading.Thread(target=lambda: answer.append(server.stop()))
        stopping.start()
        time.sleep(0.5)
        sock.sendall(body[len(body) // 2 :])
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    stopping.join(timeout=40)
    response = b"".join(chunks)
    status_line, _, payload = response.partition(b"\r\n\r\n")
    assert status_line.startswith(b"HTTP/1.1 200"), response[:200]
    assert payload.count(b"virginica") == 1000
    assert answer, "the server did not stop"
    assert answer[0][0] == 0


def test_port_is_bound_at_once_and_ping_is_503_without_a_model(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    server = Server(tmp_path, free_port())
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while (status := server.ping()) is None and time.monotonic() < deadline:
            assert server.process.poll() is None
            time.sleep(0.05)
        assert status == 503
        time.sleep(1.0)
        assert server.ping() == 503  # a failed load stays unhealthy
    finally:
        code, _ = server.stop()
    assert code == 0
