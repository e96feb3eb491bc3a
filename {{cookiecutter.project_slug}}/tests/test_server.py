"""End to end: train -> model.tar.gz -> extract -> ``python -m <package> serve`` -> predict.

The real server process, on a free port, exactly as the container starts it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
{%- if cookiecutter.server == "nginx-gunicorn-flask" %}
import resource
{%- endif %}
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package_name }} import codec, model, readiness
from {{ cookiecutter.package_name }}.environment import Paths{% if cookiecutter.framework == "pytorch" %}, cpu_count{% endif %}
{%- if cookiecutter.__web == "flask" %}
from {{ cookiecutter.package_name }}.gunicorn_server import HEADERS_TOO_LARGE, MAX_HEADERS
{%- endif %}
from {{ cookiecutter.package_name }}.inference import no_such_path, too_large, wrong_method

from .support import (
    PROJECT,
{%- if cookiecutter.framework in ["scikit-learn", "custom", "pytorch"] %}
    SAMPLE_FEATURES,
{%- endif %}
    SAMPLE_REQUEST,
    STARTUP_SECONDS,
    STRICT,
    Server,
    free_port,
    healthy_server,
    http,
    require_tool,
)


def test_the_model_loads_once_and_every_worker_says_it_accepts(server: Server) -> None:
    """Once in the master, before the fork, where the framework allows it (the workers
    share that copy); else once in each worker."""
    time.sleep(0.5)
    log = server.log.read_text()
    assert server.loads() == 2, log  # two workers
    loaded = re.findall(r"\[(\d+)\] \S+: model loaded from", log)
    if readiness.FORK_AFTER_LOAD:
        assert len(loaded) == 1, log  # by gunicorn's or the launcher's master
        assert int(loaded[0]) not in server.worker_pids(), log
    else:
        assert sorted(map(int, loaded)) == sorted(server.worker_pids()), log


def test_ping(server: Server) -> None:
    assert http("GET", server.url + "/ping")[::2] == (200, b"")


def test_predictions_match_the_model(server: Server, serving_dir: Path) -> None:
    rows = np.loadtxt(SAMPLE_REQUEST, delimiter=",", ndmin=2)
    expected = [str(label) for label in model.predict(model.load(serving_dir / "model"), rows)]
    status, _, body = server.post_csv()
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


{% if cookiecutter.framework in ["scikit-learn", "custom", "pytorch"] -%}
# A process that loads the model, freezes it (as the server's master does), forks children
# that each predict on the features of argv[2] and send back what they got; then prints it.
FORKED_PREDICTIONS = """
import json, os, sys
from pathlib import Path

import numpy as np

from {{ cookiecutter.package_name }} import readiness
from {{ cookiecutter.package_name }}.inference import ModelService

service = ModelService(Path(sys.argv[1]))
service.load()
assert service.ready, service.failure
readiness.freeze_for_fork()
features = np.load(sys.argv[2])
children = []
for _ in range(2):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        answer = {"predictions": [str(label) for label in service.predict(features)]}
{%- if cookiecutter.framework == "pytorch" %}
        import torch

        answer["threads"] = torch.get_num_threads()
        answer["sum"] = float(torch.ones(4_000_000).add(1).sum())  # ATen's intra-op pool
{%- endif %}
        os.write(write, json.dumps(answer).encode())
        os._exit(0)
    os.close(write)
    children.append((pid, read))
answers = []
for pid, read in children:
    with os.fdopen(read) as pipe:
        answers.append(json.loads(pipe.read()))
    os.waitpid(pid, 0)
print(json.dumps(answers))
"""


def test_a_model_loaded_before_a_fork_predicts_the_same_in_the_forked_workers(
    serving_dir: Path, tmp_path: Path
) -> None:
    """What makes the server load the model once, in its master (``FORK_AFTER_LOAD``): the
    children forked after the load predict what an unforked process does, and do not hang
    (a thread pool the load had started would not exist in them)."""
    assert readiness.FORK_AFTER_LOAD
    features = tmp_path / "features.npy"
    np.save(features, SAMPLE_FEATURES)
    # One worker: the model gets every CPU, its threads more than one where there are two.
    env = {**os.environ, "SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
    command = [sys.executable, "-c", FORKED_PREDICTIONS, str(serving_dir / "model"), str(features)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    unforked = model.predict(model.load(serving_dir / "model"), SAMPLE_FEATURES)
    expected = [str(label) for label in unforked]
    assert [answer["predictions"] for answer in answers] == [expected, expected]
{%- if cookiecutter.framework == "pytorch" %}
    assert all(answer["sum"] == 8_000_000 for answer in answers)
    if cpu_count() > 1:
        assert all(answer["threads"] > 1 for answer in answers), answers
{%- endif %}


{% endif -%}
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


def codec_reason(body: bytes, content_type: str | None) -> str:
    with pytest.raises(codec.CodecError) as refused:
        codec.decode(body, content_type)
    return str(refused.value)


def raw_request(server: Server, head: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the answer to a request of ``head`` alone (no body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head.encode())
        response = HTTPResponse(sock)
        response.begin()
        try:
            headers = {name.lower(): value for name, value in response.getheaders()}
            return response.status, headers, response.read()
        finally:
            response.close()


SIX_MB = 6 * 1024 * 1024
CSV = {"Content-Type": "text/csv"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # curl --data-binary's default
RAGGED = b"1,2,3,4\n1,2,3\n"
BINARY = b"\x1c\x1d\x1e" * 8  # valid UTF-8, and whitespace to str.strip()
ERRORS = [
    # (method, path, body, headers, status, reason): the reason in the server's own words
    ("POST", "/invocations", RAGGED, CSV, 400, codec_reason(RAGGED, "text/csv")),
    ("POST", "/invocations", b"5.1,,1.4,0.2\n", CSV, 400, "row 1, column 2: '' is not a number"),
    ("POST", "/invocations", BINARY, CSV, 400, codec_reason(BINARY, "text/csv")),
    ("POST", "/invocations", b"1,2,3,4", FORM, 415, codec_reason(b"", FORM["Content-Type"])),
    ("POST", "/invocations", b"1,2,3,4", {**CSV, "Accept": "image/png"}, 406, None),
    ("GET", "/nowhere", None, {}, 404, no_such_path("/nowhere")),
    ("GET", "/invocations", None, {}, 405, wrong_method("GET", "/invocations")),
]


@pytest.mark.stack
@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "reason"), ERRORS)
def test_every_error_is_one_line_of_text_with_its_reason_which_the_log_keeps(
    server: Server,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    reason: str | None,
) -> None:
    """The same answer on every stack: the status, text/plain, the reason in one line (in
    rows and columns from 1, naming what the server would take instead); and the request's
    log line holds the reason, since CloudWatch is all a user of an endpoint has."""
    answer_status, answer_headers, answer = http(method, server.url + path, body, headers)
    assert answer_status == status, answer
    assert answer_headers["content-type"] == "text/plain; charset=utf-8"
    if status == 415:
        assert all(kind in reason for kind in codec.DECODERS)
    if status == 406:
        reason = answer.decode().rstrip("\n")
        assert all(kind in reason for kind in codec.ENCODERS)
    assert answer == f"{reason}\n".encode()
    server.wait_for(
        lambda: any(line.get("error") == reason for line in server.request_lines()),
        f"a log line with the reason {reason!r}",
    )
    line = [line for line in server.request_lines() if line.get("error") == reason][-1]
    assert (line["method"], line["path"], line["status"]) == (method, path, status)


@pytest.mark.stack
def test_a_body_over_the_limit_is_the_same_413_on_every_stack(server: Server) -> None:
    head = (
        "POST /invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n"
        f"Content-Length: {SIX_MB + 1}\r\n\r\n"
    )
    status, headers, body = raw_request(server, head)
    assert (status, headers["content-type"]) == (413, "text/plain; charset=utf-8")
    assert body == f"{too_large(SIX_MB)}\n".encode()
    server.wait_for(
        lambda: any(line["status"] == 413 for line in server.request_lines()), "a 413 log line"
    )
    line = [line for line in server.request_lines() if line["status"] == 413][-1]
    assert (line["method"], line["path"]) == ("POST", "/invocations")
    assert line["error"] == too_large(SIX_MB)
    assert server.ping() == 200
{%- if cookiecutter.server == "nginx-gunicorn-flask" %}


@pytest.mark.stack
@pytest.mark.parametrize(
    ("head", "status"),
    [
        ("NONSENSE\r\n\r\n", 400),  # no method, path and version
        ("GET /execution-parameters HTTP/1.1\r\nX-Big: " + "a" * 40_000 + "\r\n\r\n", 431),
        ("GET /ping HTTP/1.1\r\n" + ("X-Many: " + "a" * 8000 + "\r\n") * 5 + "\r\n", 431),
        ("GET /" + "a" * 40_000 + " HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        # nginx's own answers to these are 505 and 501: the client's fault all the same.
        ("GET /ping HTTP/2.0\r\nHost: x\r\n\r\n", 400),
        ("POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ],
    ids=[
        "bad-request-line",
        "header-too-large",
        "headers-too-large",
        "uri-too-long",
        "http-version",
        "transfer-encoding",
    ],
)
def test_nginx_refusals_look_like_the_apps_and_are_logged_with_a_reason(
    server: Server, head: str, status: int
) -> None:
    """nginx answers these itself, before gunicorn sees them: in the app's shape all the
    same, and with a JSON log line of their own (the app never hears of them)."""
    before = len(server.request_lines())
    answer_status, headers, body = raw_request(server, head)
    assert answer_status == status
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert body.endswith(b"\n")
    assert body.count(b"\n") == 1
    server.wait_for(lambda: len(server.request_lines()) > before, "nginx's log line")
    line = server.request_lines()[before]
    assert (line["status"], line["level"], line["error"]) == (status, "INFO", body.decode()[:-1])
    assert line["time"].endswith("Z")
    assert server.ping() == 200


@pytest.mark.stack
def test_a_slow_starting_gunicorn_is_503_without_a_critical_log_line(
    serving_dir: Path, tmp_path: Path
) -> None:
    """Until gunicorn has its socket, nginx answers 503: an expected state while the server
    starts, which must not put a [crit] line (a failed connect()) in the log."""
    (tmp_path / "sitecustomize.py").write_text(
        "import time\n"
        "from pathlib import Path\n\n"
        "if b'unix:' in Path('/proc/self/cmdline').read_bytes():  # gunicorn's process\n"
        "    time.sleep(3)\n"
    )
    server = Server(serving_dir, free_port(), PYTHONPATH=str(tmp_path))
    try:
        statuses = []
        deadline = time.monotonic() + STARTUP_SECONDS
        while (status := server.ping()) != 200 and time.monotonic() < deadline:
            assert server.process.poll() is None, server.log.read_text()
            if status is not None:
                statuses.append(status)
            time.sleep(0.05)
        assert status == 200, server.log.read_text()
        assert statuses.count(503) >= 10, statuses  # gunicorn took 3 s to start
        assert set(statuses) == {503}
        assert "[crit]" not in server.log.read_text(), server.log.read_text()
    finally:
        assert server.stop()[0] == 0


def launched_nginx(run_dirs: Path) -> set[int]:
    """The nginx processes whose configuration is under ``run_dirs``, and their workers."""
    masters, parents = set(), {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes()
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue  # gone
        if b"nginx" in command and str(run_dirs).encode() in command:
            masters.add(int(proc.name))
    return masters | {pid for pid, parent in parents.items() if parent in masters}


@pytest.mark.stack
def test_gunicorn_failing_at_start_stops_nginx_and_the_launcher(
    serving_dir: Path, tmp_path: Path
) -> None:
    """gunicorn dies while nginx is starting: the launcher stops nginx (masters and workers)
    and exits non-zero within seconds, saying why, rather than leave nginx answering 503.

    nginx acts on no signal that comes before it is ready; here it is slow to start (an
    nginx first on PATH that ignores the signal for its first second, then is the real one).
    """
    (tmp_path / "sitecustomize.py").write_text(
        "from pathlib import Path\n\n"
        "if b'unix:' in Path('/proc/self/cmdline').read_bytes():  # gunicorn's process\n"
        "    raise SystemExit('gunicorn cannot start')\n"
    )
    slow = tmp_path / "bin" / "nginx"
    slow.parent.mkdir()
    slow.write_text(f"#!/bin/sh\ntrap '' QUIT\nsleep 1\nexec {require_tool('nginx')} \"$@\"\n")
    slow.chmod(0o755)
    run_dirs = tmp_path / "tmp"
    run_dirs.mkdir()
    server = Server(
        serving_dir,
        free_port(),
        PATH=f"{slow.parent}:{os.environ['PATH']}",
        PYTHONPATH=str(tmp_path),
        TMPDIR=str(run_dirs),
    )
    try:
        code = server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        code = None
    left = launched_nginx(run_dirs)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    log = server.log.read_text()
    assert code is not None, f"the launcher kept running:\n{log}"
    assert code != 0, log
    assert "gunicorn exited with code 1" in log, log
    assert left == set(), log


KEPT_ALIVE = 2000


@pytest.mark.stack
def test_thousands_of_keep_alive_connections_are_all_served(server: Server) -> None:
    """Each of 2,000 open keep-alive connections gets its answer, and a second one on the
    same connection: nginx is sized for what the instance can hold, not 1,024 connections a
    worker (one worker may be handed most of them)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < KEPT_ALIVE + 100:
        pytest.skip(f"this process may open {hard} files, fewer than {KEPT_ALIVE} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    request = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    connections: list[socket.socket] = []
    try:
        for _ in range(KEPT_ALIVE):
            connections.append(socket.create_connection(("127.0.0.1", server.port), timeout=30))
        for _ in range(2):
            for sock in connections:
                sock.sendall(request)
            answered = 0
            for sock in connections:
                response = HTTPResponse(sock)
                try:
                    response.begin()
                    response.read()
                except OSError:
                    continue
                answered += response.status == 200
            assert answered == KEPT_ALIVE, server.log.read_text()[-3000:]
    finally:
        for sock in connections:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert "worker_connections are not enough" not in server.log.read_text()
{%- endif %}
{%- if cookiecutter.__web == "flask" %}


@pytest.mark.stack
@pytest.mark.parametrize(
    ("head", "status", "reason"),
    [
        (
            "GET /ping HTTP/1.1\r\nHost: x\r\n"
            + "".join(f"X-Header-{i}: {i}\r\n" for i in range(MAX_HEADERS))
            + "\r\n",
            431,
            HEADERS_TOO_LARGE,
        ),
        (
            "POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
            None,
        ),
    ],
    ids=["too-many-headers", "transfer-encoding"],
)
def test_requests_gunicorn_refuses_are_answered_and_logged_as_the_apps(
    server: Server, head: str, status: int, reason: str | None
) -> None:
    """gunicorn refuses these before the app sees them (more than MAX_HEADERS headers: 431;
    a Transfer-Encoding it cannot read: 400, not its 501): in the app's shape all the same,
    and with the app's JSON log line, reason included."""
    answer_status, headers, body = raw_request(server, head)
    assert (answer_status, headers["content-type"]) == (status, "text/plain; charset=utf-8")
    assert body.endswith(b"\n")
    assert body.count(b"\n") == 1
    if reason is not None:
        assert body == f"{reason}\n".encode()
    reason = body.decode()[:-1]
    server.wait_for(
        lambda: any(line.get("error") == reason for line in server.request_lines()),
        f"a log line with the reason {reason!r}",
    )
    line = [line for line in server.request_lines() if line.get("error") == reason][-1]
    assert (line["status"], line["level"]) == (status, "INFO")
    assert server.ping() == 200
{%- endif %}


@pytest.mark.stack
def test_bodies_over_6_mb_are_413(server: Server) -> None:
    row = b"5.1,3.5,1.4,0.2\n"
    body = row * (6 * 1024 * 1024 // len(row) + 1)
    try:
        status = server.post_csv(body)[0]
    except (ConnectionError, urllib.error.URLError):
        status = 413  # The server may answer 413 and close before the whole body is sent.
    assert status == 413
    assert server.ping() == 200


def test_a_large_batch_is_one_request(server: Server) -> None:
    rows = b"5.1,3.5,1.4,0.2\n" * 50_000  # about 0.8 MB
    status, _, body = server.post_csv(rows)
    assert status == 200
    assert body.decode().splitlines() == ["setosa"] * 50_000


def test_ping_answers_within_2_s_under_full_load(server: Server) -> None:
    """SageMaker allows /ping 2 s, busy or not, before it counts the instance unhealthy.

    Twelve clients keep every worker busy with 1.6 MB batches meanwhile: more requests in
    flight than the flask stacks' prediction threads, so /ping must not queue behind them.
    """
    batch = b"6.3,3.3,6.0,2.5\n" * 100_000
    stop = threading.Event()
    statuses: list[int] = []

    def client() -> None:
        while not stop.is_set():
            answer = server.post_csv(batch)
            statuses.append(answer[0])

    clients = [threading.Thread(target=client) for _ in range(12)]
    for thread in clients:
        thread.start()
    pings: list[tuple[int | None, float]] = []
    try:
        time.sleep(1.0)  # every client has a request in flight
        for _ in range(10):
            begun = time.monotonic()
            pings.append((server.ping(), time.monotonic() - begun))
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=60)
    assert statuses, "no prediction finished"
    assert set(statuses) == {200}
    assert {status for status, _ in pings} == {200}, pings
    assert max(seconds for _, seconds in pings) < 2.0, pings

{%- if cookiecutter.__web == "fastapi" %}


CONCURRENT_CLIENTS = 32
REQUESTS_PER_CLIENT = 10
# Python switches threads every 5 ms; every 10 us, thread races that are rare become frequent.
SWITCH_OFTEN = "import sys\n\nsys.setswitchinterval(1e-5)\n"


def test_concurrent_predictions_log_no_line_over_and_over(
    serving_dir: Path, tmp_path: Path
) -> None:
    """32 clients at once on two workers: each request is its one JSON line, and no other
    line is logged again and again. Several predictions at once in one worker made
    scikit-learn's Parallel log a UserWarning about 35 times per request: each saves, empties
    and restores the process-wide warning filters (``warnings.catch_warnings`` is not
    thread-safe), and once two had crossed the worker had none left. A worker runs one
    prediction at a time; threads switching every 10 us here make any crossing certain."""
    (tmp_path / "sitecustomize.py").write_text(SWITCH_OFTEN)
    with healthy_server(serving_dir, PYTHONPATH=str(tmp_path)) as server:
        before = len(server.log.read_text().splitlines())
        statuses: list[int] = []

        def client() -> None:
            for _ in range(REQUESTS_PER_CLIENT):
                statuses.append(server.post_csv()[0])

        clients = [threading.Thread(target=client) for _ in range(CONCURRENT_CLIENTS)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=120)
        # A worker writes a request's line once the answer has gone: wait for the last ones.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = server.log.read_text().splitlines()[before:]
            if len([line for line in lines if line.startswith("{")]) >= len(statuses):
                break
            time.sleep(0.1)
    assert statuses == [200] * REQUESTS_PER_CLIENT * CONCURRENT_CLIENTS
    assert len([line for line in lines if line.startswith("{")]) == len(statuses)
    others = [line for line in lines if not line.startswith("{")]
    repeated = sorted({line for line in others if others.count(line) > 1})
    assert not repeated, repeated
    assert len(others) < len(statuses), others
{%- endif %}


@pytest.mark.stack
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


@pytest.mark.stack
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


@pytest.mark.stack
def test_a_port_in_use_is_named_with_how_to_pick_another(tmp_path: Path) -> None:
    with socket.socket() as holder:  # another server, on the loopback address only
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        process = subprocess.Popen(
            [sys.executable, "-m", "{{ cookiecutter.package_name }}", "serve"],
            env={
                **os.environ,
                "SAGEMAKER_BASE_DIR": str(tmp_path),
                "SAGEMAKER_BIND_TO_PORT": str(port),
            },
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            stop_group(process)
            pytest.fail(f"the server did not exit within 10 s with port {port} taken")
    assert process.returncode != 0
    assert f"port {port}" in stderr
    assert "PORT=" in stderr
    assert "Traceback" not in stderr, stderr


def stop_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL ``process`` and everything it started (its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


@pytest.mark.stack
def test_each_request_is_one_json_line_in_the_server_log(server: Server) -> None:
    """The app's request log, and nothing else: no access log from the server(s) in front."""
    row = b"5.1,3.5,1.4,0.2\n"
    sizes = [3, 5, 7]  # rows per request: the requests' bytes_in tell their lines apart
    for size in sizes:
        status = server.post_csv(row * size)
        assert status[0] == 200
    assert http("POST", server.url + "/invocations", row, {"Content-Type": "x/y"})[0] == 415
    assert server.ping() == 200

    def mine() -> list[dict]:
        return [
            line
            for line in server.request_lines()
            if line["bytes_in"] in {len(row) * size for size in sizes}
            or line["content_type"] == "x/y"
        ]

    server.wait_for(lambda: len(mine()) >= 4, "four request log lines")
    lines = mine()
    # Each worker writes its line after its answer is sent, so two workers' lines can land
    # in the log in either order: one line per request, whatever the order.
    assert sorted((line["bytes_in"], line["status"]) for line in lines) == sorted(
        [(len(row) * 3, 200), (len(row) * 5, 200), (len(row) * 7, 200), (len(row), 415)]
    )
    for line in lines:
        assert line["method"] == "POST"
        assert line["path"] == "/invocations"
        assert line["level"] == "INFO"
        assert line["latency_ms"] >= 0
        assert line["time"].endswith("Z")
    three_rows = next(line for line in lines if line["bytes_in"] == len(row) * 3)
    assert three_rows["bytes_out"] == len(b"setosa\n") * 3
    # Health checks are logged at DEBUG; a refused /ping (a 4xx, with its reason) is not one.
    health_checks = [
        line for line in server.request_lines() if line["path"] == "/ping" and line["status"] < 400
    ]
    assert not health_checks
    access_log_line = re.compile(r'"POST /invocations HTTP/1\.1" \d{3}')  # uvicorn, gunicorn
    assert not access_log_line.search(server.log.read_text())  # no other access log


@pytest.mark.stack
def test_ping_is_logged_at_debug_level(serving_dir: Path) -> None:
    server = Server(
        serving_dir,
        free_port(),
        SAGEMAKER_MODEL_SERVER_WORKERS="1",
        SAGEMAKER_CONTAINER_LOG_LEVEL="DEBUG",
    )
    try:
        server.wait_until_healthy()
        server.wait_for(
            lambda: any(line["status"] == 200 for line in server.request_lines()), "a /ping line"
        )
        pings = [line for line in server.request_lines() if line["status"] == 200]
        assert {(line["path"], line["level"]) for line in pings} == {("/ping", "DEBUG")}
    finally:
        assert server.stop()[0] == 0


@pytest.mark.parametrize("frozen_first", [False, True], ids=["killed", "frozen-then-killed"])
def test_a_killed_worker_is_replaced(serving_dir: Path, frozen_first: bool) -> None:
    """Also when the worker is frozen first (SIGSTOP) before it dies: the supervisor must see
    the death at once (uvicorn's own supervisor, whose health check was then waiting for the
    frozen worker's answer, saw it only at the check's timeout, beyond wait_for's 60 s)."""
    server = Server(serving_dir, free_port())
    try:
        server.wait_until_healthy(workers=2)
        first, second = server.worker_pids()
        if frozen_first:
            os.kill(first, signal.SIGSTOP)
            time.sleep(2)
        os.kill(first, signal.SIGKILL)
        assert server.ping() == 200  # the other worker answers meanwhile
        server.wait_for(lambda: len(server.worker_pids()) == 3, "a new worker")
        replacement = server.worker_pids()[2]
        assert replacement not in (first, second)
        assert not running(first)
        assert_every_worker_answers(server)
    finally:
        assert server.stop()[0] == 0


def running(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def assert_every_worker_answers(server: Server) -> None:
    for _ in range(10):  # enough requests to reach both workers
        assert server.ping() == 200
        status, _, body = server.post_csv()
        assert status == 200, body


# The first feature of a row that sets off a test's odd predict (wrapped_predict).
ODD_ROW = b"-1,3.3,6.0,2.5\n"


def wrapped_predict(imports: str, action: str) -> str:
    """A ``sitecustomize`` module (every process of a test server imports it first, from
    PYTHONPATH) that makes the model's predict run ``action`` first for the ``ODD_ROW``.

    It wraps the predict once the model is loaded, so that no process imports the ML library
    before the server would (TensorFlow's, imported in a master, would not survive the fork).
    """
    return f"""
{imports}

from {{ cookiecutter.package_name }} import inference

_load = inference.ModelService._load


def _load_then_wrap(self):
    _load(self)
    if self._predict is not None:
        _predict = self._predict

        def predict(loaded, features):
            if features[0, 0] == -1:
                {action}
            return _predict(loaded, features)

        self._predict = predict


inference.ModelService._load = _load_then_wrap
"""


def slow_load(seconds: float, spread: float) -> str:
    """A ``sitecustomize`` module that makes each load of the model take ``seconds`` more,
    and up to ``spread`` more at random (so that workers loading side by side would be ready
    one after the other)."""
    return f"""
import random
import time

from {{ cookiecutter.package_name }} import inference

_load = inference.ModelService._load


def _slow_load(self):
    time.sleep({seconds} + {spread} * random.random())
    _load(self)


inference.ModelService._load = _slow_load
"""


# Pings in a row that must all be 200 once one was; the pause between two of them.
PINGS_IN_A_ROW = 200
PING_PAUSE_SECONDS = 0.01


def assert_ping_stays_200(server: Server, pings: int = PINGS_IN_A_ROW) -> None:
    statuses = []
    for _ in range(pings):
        statuses.append(server.ping())
        time.sleep(PING_PAUSE_SECONDS)
    assert statuses == [200] * pings, (
        f"{statuses.count(200)} of {pings} pings were 200: {statuses}\n{server.log.read_text()}"
    )


def slow_loading_server(
    serving_dir: Path, tmp_path: Path, workers: int, seconds: float, spread: float
) -> Server:
    """The server with ``workers`` workers, each load of the model slowed (``slow_load``)."""
    (tmp_path / "sitecustomize.py").write_text(slow_load(seconds, spread))
    return Server(
        serving_dir,
        free_port(),
        PYTHONPATH=str(tmp_path),
        SAGEMAKER_MODEL_SERVER_WORKERS=str(workers),
    )


@pytest.mark.parametrize("workers", [2, 4])
def test_ping_stays_200_once_it_is_with_a_model_slow_to_load(
    serving_dir: Path, tmp_path: Path, workers: int
) -> None:
    """Readiness is the whole server's: until every worker has its model /ping is 503 "model
    is loading"; after its first 200 it never says 503 again (every worker answers)."""
    server = slow_loading_server(serving_dir, tmp_path, workers, 1.0, 2.0)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        before = []
        while (status := server.ping()) != 200 and time.monotonic() < deadline:
            assert server.process.poll() is None, server.log.read_text()
            before.append(status)
            time.sleep(PING_PAUSE_SECONDS)
        assert status == 200, server.log.read_text()
        assert 503 in before  # it took a while
        assert set(before) <= {None, 503}, before
        assert_ping_stays_200(server)
        assert len(server.worker_pids()) == workers, server.log.read_text()
    finally:
        assert server.stop()[0] == 0


@pytest.mark.parametrize("workers", [2, 4])
def test_a_killed_workers_replacement_keeps_ping_200(
    serving_dir: Path, tmp_path: Path, workers: int
) -> None:
    """A worker killed (SIGKILL) with a model slow to load: a request sent right after the
    kill is answered 200, and /ping stays 200 while the replacement starts and after."""
    server = slow_loading_server(serving_dir, tmp_path, workers, 2.0, 0.0)
    try:
        server.wait_until_healthy(workers=workers)
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        assert server.ping() == 200
        status, _, body = server.post_csv()
        assert status == 200, body
        # From the kill until the replacement says it accepts requests, then 200 pings more.
        statuses = []
        deadline = time.monotonic() + STARTUP_SECONDS
        while len(server.worker_pids()) < workers + 1 and time.monotonic() < deadline:
            statuses.append(server.ping())
            time.sleep(PING_PAUSE_SECONDS)
        assert set(statuses) <= {200}, f"{statuses}\n{server.log.read_text()}"
        server.wait_for(lambda: len(server.worker_pids()) == workers + 1, "a new worker")
        assert not running(victim)
        assert_ping_stays_200(server)
        assert_every_worker_answers(server)
    finally:
        assert server.stop()[0] == 0


@pytest.mark.stack
def test_a_stuck_prediction_is_a_504_and_its_worker_is_replaced(
    serving_dir: Path, tmp_path: Path
) -> None:
    """A predict that never returns: its request gets a 504 at the timeout; once it has run
    for STUCK_AFTER_TIMEOUTS timeouts its worker ends (the watchdog) and the server starts a
    fresh one, so stuck threads never pile up behind a /ping that says 200."""
    (tmp_path / "sitecustomize.py").write_text(wrapped_predict("import time", "time.sleep(3600)"))
    env = {"PYTHONPATH": str(tmp_path), "SAGEMAKER_MODEL_SERVER_TIMEOUT": "1"}
    with healthy_server(serving_dir, **env) as server:
        workers = server.worker_pids()
        started = time.monotonic()
        status, _, body = server.post_csv(ODD_ROW)
        assert status == 504, body
        assert 1 <= time.monotonic() - started < 1 + 5
        assert server.ping() == 200  # the stuck thread does not hold up the worker
        server.wait_for(lambda: len(server.worker_pids()) == 3, "a new worker")
        assert "a prediction has been running for" in server.log.read_text()
        assert [pid for pid in workers if running(pid)] != workers  # the stuck one ended
        assert_every_worker_answers(server)


GIL_HOLD_SECONDS = 6
# libc's sleep() through PyDLL, which keeps the GIL.
GIL_HOLDING_PREDICT = wrapped_predict(
    "import ctypes", f"ctypes.PyDLL(None).sleep({GIL_HOLD_SECONDS})"
)


@pytest.mark.stack
def test_a_prediction_holding_the_gil_gets_its_answer(serving_dir: Path, tmp_path: Path) -> None:
    """A predict that stays in native code without releasing the GIL freezes every thread of
    its worker, health checks included, for as long as it runs. Within the request timeout it
    must still be answered (uvicorn's supervisor, left to its defaults, kills a worker that
    misses its health check for 5 s), and no worker is replaced."""
    (tmp_path / "sitecustomize.py").write_text(GIL_HOLDING_PREDICT)
    with healthy_server(serving_dir, PYTHONPATH=str(tmp_path)) as server:
        workers = server.worker_pids()
        started = time.monotonic()
        status, _, body = server.post_csv(ODD_ROW)
        assert status == 200, body
        assert time.monotonic() - started >= GIL_HOLD_SECONDS  # it did hold the GIL
        assert http("GET", server.url + "/ping")[0] == 200
        assert server.worker_pids() == workers, server.log.read_text()


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found = [pid]
    for candidate in found:
        found.extend(child for child, parent in parents.items() if parent == candidate)
    return found


def socket_fds(pid: int) -> list[int]:
    fds = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith("socket:"):
                fds.append(int(fd.name))
        except OSError:
            continue  # closed meanwhile
    return fds


def server_side_nodelay(server_pid: int, client: socket.socket) -> int | None:
    """TCP_NODELAY of the server's end of ``client``'s connection, read from the server.

    ``pidfd_getfd`` (Linux 5.6) copies each socket of the server's processes into this one;
    the copy whose peer is ``client`` is the accepted connection. None if not found.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for pid in descendants(server_pid):
        try:
            pidfd = os.pidfd_open(pid)
            fds = socket_fds(pid)
        except OSError:
            continue  # gone meanwhile
        try:
            for fd in fds:
                copy = libc.syscall(438, pidfd, fd, 0)  # SYS_pidfd_getfd
                if copy < 0:
                    if ctypes.get_errno() in (errno.EPERM, errno.ENOSYS):
                        pytest.skip("pidfd_getfd is not allowed here")
                    continue
                with socket.socket(fileno=copy) as sock:
                    if sock.family == socket.AF_INET and peer(sock) == client.getsockname():
                        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            os.close(pidfd)
    return None


def peer(sock: socket.socket) -> tuple[str, int] | None:
    try:
        return sock.getpeername()
    except OSError:  # a listening socket
        return None


@pytest.mark.stack
def test_accepted_connections_have_tcp_nodelay(server: Server) -> None:
    """Without TCP_NODELAY, a response written in two parts waits for the client's delayed
    ACK: 40 ms per request on a keep-alive connection. The option is read from the server's
    own socket (no client-side timing can tell it apart from a slow predict)."""
    connection = HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for _ in range(3):  # keep-alive: the same connection throughout
            connection.request(
                "POST", "/invocations", SAMPLE_REQUEST.read_bytes(), {"Content-Type": "text/csv"}
            )
            response = connection.getresponse()
            assert response.status == 200
            response.read()
        assert server_side_nodelay(server.process.pid, connection.sock) not in (None, 0)
    finally:
        connection.close()


# Who serves, with setpriv's options to become them.
UNPRIVILEGED = {
    # A user with no home and no capability, as `docker run --user 1000:1000` runs one; but
    # for reading what root's 0700 home hides (where this interpreter may live): it may
    # write only where any user may.
    "uid-1000": [
        "--reuid=1000",
        "--regid=1000",
        "--clear-groups",
        "--inh-caps=-all,+dac_read_search",
        "--ambient-caps=+dac_read_search",
        "--bounding-set=-all,+dac_read_search",
    ],
    # root without a single capability (`docker run --cap-drop ALL`).
    "root-without-capabilities": ["--inh-caps=-all", "--bounding-set=-all"],
}


@pytest.mark.parametrize("who", UNPRIVILEGED)
def test_serving_needs_no_privilege_and_writes_only_to_tmpdir(
    serving_dir: Path, tmp_path: Path, who: str
) -> None:
    """SageMaker Serverless Inference runs containers without capabilities, and an image
    may be run as any user on a read-only filesystem: the server still serves, and writes
    nothing but under TMPDIR."""
    if os.geteuid() != 0:
        message = "only root can start a process as another user or drop capabilities"
        if STRICT:
            pytest.fail(message)
        pytest.skip(message)
    setpriv = require_tool("setpriv")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    tmpdir.chmod(0o1777)
    started = time.time()
    server = Server(
        serving_dir,
        free_port(),
        wrapper=[setpriv, *UNPRIVILEGED[who], "--"],
        HOME="/nonexistent",
        TMPDIR=str(tmpdir),
    )
    try:
        server.wait_until_healthy(workers=2)
        status, _, body = server.post_csv()
        assert status == 200, body
        assert len(body.splitlines()) == len(SAMPLE_REQUEST.read_text().splitlines())
{%- if cookiecutter.server == "nginx-gunicorn-flask" %}
        assert any(tmpdir.iterdir())  # nginx's run directory: what it writes, it writes there
{%- endif %}
    finally:
        assert server.stop()[0] == 0, server.log.read_text()
    if who == "uid-1000":  # it could have written in these too
        written = [
            path
            for folder in (Path("/tmp"), Path("/dev/shm"), Path("/var/tmp"))
            if folder.is_dir()
            for path in folder.iterdir()
            if path.lstat().st_uid == 1000 and path.lstat().st_mtime >= started
        ]
        assert written == []


# ---------------------------------------------------------------- make serve-local

# An idle server stops within this after SIGTERM (as healthy_server expects).
STOP_SECONDS = 10


def started_at(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot), or None once it has exited: with the
    pid, it names one process even if the pid is reused."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in "ZX" else fields[19]


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def port_is_free(port: int) -> bool:
    """Whether a server could bind ``port`` now, as the server binds it."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def make_command(target: str, trained: Paths, tmp_path: Path, port: int) -> list[str]:
    """``make TARGET`` with the project's Makefile, on the trained model, serving on ``port``;
    run in ``tmp_path``, where ``make package`` writes model.tar.gz (not in the project)."""
    return [
        require_tool("make"),
        "-f",
        str(PROJECT / "Makefile"),
        target,
        f"LOCAL={trained.base}",
        f"SERVING={tmp_path / 'serving'}",
        f"PORT={port}",
        f"PYTHON={sys.executable}",
    ]


def start_serve_local(trained: Paths, tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    """``make serve-local`` with one worker, its output in tmp_path/make.log, in a session of
    its own (whatever is left of it can be killed at the end)."""
    command = make_command("serve-local", trained, tmp_path, port)
    with (tmp_path / "make.log").open("wb") as out:
        return subprocess.Popen(
            command,
            cwd=tmp_path,
            env={**os.environ, "SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def end_session(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to make if it still runs, then SIGKILL to whatever is left of its session."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.stack
def test_make_predict_waits_for_the_server_make_serve_local_starts(
    trained: Paths, tmp_path: Path
) -> None:
    """``make serve-local &`` then ``make predict`` at once, as the README's quick start has
    it: predict waits for /ping 200 (the server is still unpacking and loading the model)."""
    require_tool("curl")  # what `make predict` runs
    port = free_port()
    server = start_serve_local(trained, tmp_path, port)
    try:
        predicted = subprocess.run(
            [*make_command("predict", trained, tmp_path, port), "--silent"],
            cwd=PROJECT,  # data/sample-request.csv
            capture_output=True,
            text=True,
            timeout=STARTUP_SECONDS + 30,
            check=False,
        )
        assert predicted.returncode == 0, predicted.stderr + (tmp_path / "make.log").read_text()
    finally:
        end_session(server)
    rows = np.loadtxt(SAMPLE_REQUEST, delimiter=",", ndmin=2)
    expected = [str(label) for label in model.predict(model.load(trained.model), rows)]
    assert predicted.stdout.splitlines() == expected


@pytest.mark.stack
@pytest.mark.parametrize("signalled", ["server", "make"])
def test_sigterm_to_make_serve_local_stops_the_server(
    trained: Paths, tmp_path: Path, signalled: str
) -> None:
    """SIGTERM to the process ``make serve-local`` started, or to make itself (which passes
    it on), stops the server gracefully: no process of it left, and its port free."""
    port = free_port()
    process = start_serve_local(trained, tmp_path, port)
    log = tmp_path / "make.log"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while ping(port) != 200:
            assert process.poll() is None, log.read_text()
            if time.monotonic() > deadline:
                pytest.fail(f"/ping was not 200 within {STARTUP_SECONDS} s:\n{log.read_text()}")
            time.sleep(0.1)
        (child,) = children(process.pid)
        started = {pid: started_at(pid) for pid in descendants(process.pid)[1:]}
        os.kill(child if signalled == "server" else process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while left := [pid for pid, start in started.items() if started_at(pid) == start]:
            if time.monotonic() > deadline:
                pytest.fail(f"still running {STOP_SECONDS} s after SIGTERM: {left}")
            time.sleep(0.1)
        assert port_is_free(port)
        process.wait(timeout=STOP_SECONDS)
    finally:
        end_session(process)
    # The server stopped gracefully (exit code 0); make, signalled, dies of the signal.
    expected = 0 if signalled == "server" else -signal.SIGTERM
    assert process.returncode == expected, log.read_text()


def ping(port: int) -> int | None:
    try:
        return http("GET", f"http://127.0.0.1:{port}/ping")[0]
    except OSError:
        return None
