"""Bad input and bad clients against the real server: none may get a 5xx, hang the server or
make it hold memory or threads, and a good request still succeeds after each.

Property-based: Schemathesis sends what ``openapi.json`` allows and what it does not: its
examples, boundary values, and random bodies, valid and invalid (JSON from the document's
schemas; CSV, JSON lines and .npy from the strategies below, mixed with random bytes).
Targeted: empty bodies, garbage, NaN and infinity, wrong feature counts, a 50 MB body, and
slow-loris clients that send half a request and stall{% if cookiecutter.__web == "fastapi" %}, and clients that never
read their answers (or read them slowly){% endif %}.
"""

from __future__ import annotations

{% if cookiecutter.__web == "fastapi" -%}
import contextlib
{% endif -%}
import json
{%- if cookiecutter.server == "flask-gunicorn" %}
import math
{%- endif %}
import select
import socket
{%- if cookiecutter.__web == "fastapi" %}
import threading
{%- endif %}
import time
from collections.abc import Iterator
{%- if cookiecutter.__web == "fastapi" %}
from concurrent.futures import ThreadPoolExecutor
{%- endif %}
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from {{ cookiecutter.package_name }} import codec
{%- if cookiecutter.__web == "flask" %}
from {{ cookiecutter.package_name }}.gunicorn_server import THREADS_PER_WORKER
{%- endif %}
{%- if cookiecutter.server == "nginx-gunicorn-flask" %}
from {{ cookiecutter.package_name }}.serve import stalled_reason
{%- endif %}

from .support import N_FEATURES, PROJECT, SAMPLE_REQUEST, Server, healthy_server, npy

# A client may go silent this long mid-request (MODEL_SERVER_READ_TIMEOUT; 20 s by default).
READ_TIMEOUT = 2
{%- if cookiecutter.__web == "flask" %}
# Stalled connections at once: more than the server's 2 workers have threads.
STALLED = 2 * THREADS_PER_WORKER + 8
{%- else %}
# Stalled connections at once: enough to hold every thread of a threaded server.
STALLED = 72
{%- endif %}
{%- if cookiecutter.server == "flask-gunicorn" %}
# gunicorn's threads read request bodies themselves, with no proxy to buffer them: each
# stalled connection holds one for READ_TIMEOUT, and a worker's threads take its share of
# STALLED in turns. A request queued behind them waits that long.
ANSWER_SECONDS = math.ceil(STALLED / THREADS_PER_WORKER) * READ_TIMEOUT + 5
{%- elif cookiecutter.server == "nginx-gunicorn-flask" %}
# nginx buffers requests: stalled ones hold no gunicorn thread, and an answer comes at once.
ANSWER_SECONDS = 5
{%- else %}
# uvicorn's event loop waits on stalled requests without a thread: an answer comes at once.
ANSWER_SECONDS = 5
{%- endif %}
CSV = "text/csv"
MEDIA_TYPES = (CSV, "application/json", "application/jsonlines", "application/x-npy")
GOOD_ROW = b"5.1,3.5,1.4,0.2\n"


@pytest.fixture(scope="module")
def server(serving_dir: Path) -> Iterator[Server]:
    """The server, with a short read timeout so that stalled clients are dropped quickly."""
    with healthy_server(serving_dir, MODEL_SERVER_READ_TIMEOUT=str(READ_TIMEOUT)) as server:
        yield server


def invoke(server: Server, body: bytes, content_type: str | None = CSV) -> tuple[int, bytes]:
    """(status, body) of ``POST /invocations``; no Content-Type at all for None."""
    headers = {"Accept": CSV} | ({"Content-Type": content_type} if content_type else {})
    connection = HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", "/invocations", body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def assert_still_serving(server: Server) -> None:
    """/ping is 200 and the sample request gets one prediction per row."""
    assert server.ping() == 200
    status, body = invoke(server, SAMPLE_REQUEST.read_bytes())
    assert status == 200, body
    assert len(body.splitlines()) == len(SAMPLE_REQUEST.read_bytes().splitlines())


# Property-based, over openapi.json -------------------------------------------------------

FIELDS = st.one_of(
    st.floats().map(repr),
    st.integers().map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "", '"5.1"', " ", "a,b"]),
    st.text(max_size=8),
)
VALUES = st.one_of(st.floats(), st.integers(), st.booleans(), st.none(), st.text(max_size=4))


@st.composite
def csv_bodies(draw: st.DrawFn) -> bytes:
    """Rows of numbers, words, NaN and infinity, of any length; any line endings."""
    rows = draw(st.lists(st.lists(FIELDS, max_size=N_FEATURES + 2), max_size=4))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(",".join(row) for row in rows).encode("utf-8", "surrogatepass")


@st.composite
def jsonlines_bodies(draw: st.DrawFn) -> bytes:
    """Lines of lists of any JSON values, bare or as ``{"features": [...]}``."""
    rows = draw(st.lists(st.lists(VALUES, max_size=N_FEATURES + 2), max_size=4))
    lines = [row if draw(st.booleans()) else {"features": row} for row in rows]
    return "\n".join(json.dumps(line) for line in lines).encode()


@st.composite
def npy_bodies(draw: st.DrawFn) -> bytes:
    """.npy files of any dtype NumPy saves without pickles and any shape, some cut short."""
    dtype = draw(
        st.one_of(
            hnp.floating_dtypes(),
            hnp.integer_dtypes(),
            hnp.boolean_dtypes(),
            hnp.complex_number_dtypes(),
            hnp.unicode_string_dtypes(max_len=4),
        )
    )
    shape = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=N_FEATURES + 1)
    data = npy(draw(hnp.arrays(dtype, shape)))
    return data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data


for media_type, bodies in [
    (CSV, csv_bodies()),
    ("application/jsonlines", jsonlines_bodies()),
    ("application/x-npy", npy_bodies()),
]:
    schemathesis.openapi.media_type(media_type, st.one_of(bodies, st.binary(max_size=64)))

schema = schemathesis.openapi.from_path(PROJECT / "openapi.json")
# A fixed set of cases (the same every run), without a database of past runs in the project.
schema.config.generation.update(max_examples=60, deterministic=True, database="none")


@schema.parametrize()
def test_generated_requests_get_documented_answers_and_never_a_5xx(
    case: schemathesis.Case, server: Server
) -> None:
    response = case.call(base_url=server.url, timeout=30)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


def test_the_server_survives_the_generated_requests(server: Server) -> None:
    assert_still_serving(server)


# Targeted bad input ----------------------------------------------------------------------

GARBAGE = {
    "empty": b"",
    "random bytes": np.random.default_rng(5).bytes(4096),
    "invalid UTF-8": b"5.1,3.5,\xff\xfe,0.2\n\xc3\x28,1,2,3\n",
    "NUL bytes": b"\x00" * 64,
    "control characters": b"\x1c\x1d\x1e\x0b\x0c" * 16,  # valid UTF-8, and whitespace to str.strip
}


@pytest.mark.parametrize("content_type", [*MEDIA_TYPES, None])
@pytest.mark.parametrize("body", GARBAGE.values(), ids=GARBAGE.keys())
def test_empty_and_garbage_bodies_are_400_with_a_reason(
    server: Server, content_type: str | None, body: bytes
) -> None:
    status, reason = invoke(server, body, content_type)
    assert status == 400, reason
    with pytest.raises(codec.CodecError) as expected:  # the same reason on every stack
        codec.decode(body, content_type)
    assert reason.decode() == f"{expected.value}\n"
    if body:
        assert b"empty" not in reason
    assert_still_serving(server)


def encodings(rows: list[list[float]]) -> dict[str, bytes]:
    """``rows`` in each media type the server reads."""
    return {
        CSV: "\n".join(",".join(map(str, row)) for row in rows).encode(),
        "application/json": json.dumps({"instances": rows}).encode(),
        "application/jsonlines": "\n".join(json.dumps(row) for row in rows).encode(),
        "application/x-npy": npy(np.array(rows, dtype=np.float64)),
    }


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinity_is_400(server: Server, media_type: str, value: float) -> None:
    body = encodings([[5.1, 3.5, 1.4, 0.2], [value, 3.5, 1.4, 0.2]])[media_type]
    status, reason = invoke(server, body, media_type)
    assert (status, b"row 2 has infinity" in reason) == (400, True), reason
    assert_still_serving(server)


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
def test_nan_is_a_prediction_or_400(server: Server, media_type: str) -> None:
    """Whether NaN means anything is the model's business: a prediction, or a 400 saying why."""
    body = encodings([[float("nan"), 3.5, 1.4, 0.2]] * 3)[media_type]
    status, answer = invoke(server, body, media_type)
    assert status in (200, 400), answer
    if status == 200:
        assert len(answer.splitlines()) == 3
    assert_still_serving(server)


@pytest.mark.parametrize("media_type", MEDIA_TYPES)
@pytest.mark.parametrize("count", [1, N_FEATURES - 1, N_FEATURES + 1, 100])
def test_a_wrong_feature_count_is_400_naming_the_expected_one(
    server: Server, media_type: str, count: int
) -> None:
    body = encodings([[1.0] * count] * 2)[media_type]
    status, reason = invoke(server, body, media_type)
    assert status == 400, reason
    assert f"expected {N_FEATURES} features per row, got {count}".encode() in reason
    assert_still_serving(server)


def test_rows_of_different_lengths_are_400(server: Server) -> None:
    body = GOOD_ROW + b"1,2,3\n"
    status, reason = invoke(server, body)
    assert status == 400, reason
    assert_still_serving(server)


# Bad clients: raw sockets ----------------------------------------------------------------

MIB = 1024 * 1024
LARGE_BODY = 50 * MIB
CHUNK = GOOD_ROW * 4096  # 64 KiB of rows
# What a client may have sent when the server refuses a body over the 6 MB limit: the limit,
# and what the sockets' buffers (a few MiB each way on loopback) hold besides.
IN_FLIGHT = 6 * MIB + 16 * MIB


def request_head(port: int, length: int | None) -> bytes:
    """The head of a CSV ``POST /invocations``: ``length`` bytes, or chunked when None."""
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return (
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: text/csv\r\n{framing}\r\n\r\n"
    ).encode()


def answer_status(sock: socket.socket, deadline: float) -> int | None:
    """The status of the server's answer on ``sock``; None if it closed the connection
    without one. Fails if there is neither by ``deadline`` (``time.monotonic()``)."""
    sock.settimeout(max(deadline - time.monotonic(), 0.01))
    response = HTTPResponse(sock)
    try:
        response.begin()
    except ConnectionResetError:  # http.client.RemoteDisconnected too: a close, no answer
        return None
    except TimeoutError:
        pytest.fail("no answer, and the connection is still open")
    finally:
        response.close()
    return response.status


def stream_until_answered(port: int, length: int | None) -> tuple[int, int | None]:
    """POST a CSV body of ``LARGE_BODY`` bytes, chunk by chunk, and stop sending as soon as
    the server answers or closes: the bytes sent by then, and its answer's status."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request_head(port, length))
        sent = 0
        while sent < LARGE_BODY:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable or not writable:
                break
            framed = CHUNK if length is not None else b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK)
            try:
                sock.sendall(framed)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(CHUNK)
        return sent, answer_status(sock, time.monotonic() + 30)


@pytest.mark.parametrize("length", [LARGE_BODY, None], ids=["content-length", "chunked"])
def test_a_50_mb_body_is_refused_before_it_is_read(server: Server, length: int | None) -> None:
    """413 (or the connection closed) while most of the body is still unsent: the server
    counts what it receives (or reads the Content-Length) instead of reading it all first."""
    sent, status = stream_until_answered(server.port, length)
    assert status in (413, None)
    assert sent < IN_FLIGHT, f"{sent} bytes were sent before the server answered"
    assert_still_serving(server)


def stall(port: int) -> socket.socket:
    """A connection that sends a request's head and half its body, then nothing."""
    body = GOOD_ROW * 8
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(request_head(port, len(body)) + body[: len(body) // 2])
    return sock


def test_clients_that_leave_mid_body_leave_the_server_serving(server: Server) -> None:
    for _ in range(STALLED):
        stall(server.port).close()
    assert_still_serving(server)


def test_stalled_requests_neither_block_others_nor_stay_open(server: Server) -> None:
    stalled = [stall(server.port) for _ in range(STALLED)]
    try:
        time.sleep(0.5)  # for the server to take them in before the request below
        started = time.monotonic()
        status, body = invoke(server, GOOD_ROW)
        assert status == 200, body
        assert time.monotonic() - started < ANSWER_SECONDS
        deadline = started + ANSWER_SECONDS + READ_TIMEOUT
        for sock in stalled:  # each answered 408 (or another 4xx), or simply closed
            status = answer_status(sock, deadline)
            assert status is None or 400 <= status < 500, status
    finally:
        for sock in stalled:
            sock.close()
    assert_still_serving(server)

{%- if cookiecutter.__web == "fastapi" %}


def head_answer(port: int, head: bytes, deadline_seconds: float = 30) -> tuple[int | None, bytes]:
    """Send ``head`` (sent whole, as fast as the server takes it) and read the answer: its
    status and body; (None, b"") if the server closed the connection without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=deadline_seconds) as sock:
        # Refused while it was still sending: the answer may be there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)
        response = HTTPResponse(sock)
        try:
            response.begin()
        except ConnectionResetError:  # http.client.RemoteDisconnected too
            return None, b""
        return response.status, response.read()


def refusal_logged(server: Server, status: int, reason: bytes) -> bool:
    time.sleep(0.2)  # the worker writes the line after the answer
    return any(
        line["status"] == status and line.get("error") == reason.decode().strip()
        for line in server.request_lines()
    )


def test_too_many_headers_are_431_with_a_reason(server: Server) -> None:
    """10,000 headers were read whole: a request may have a hundred."""
    headers = b"".join(b"X-Field-%d: value\r\n" % i for i in range(10_000))
    head = request_head(server.port, len(GOOD_ROW))
    head = head.replace(b"\r\n\r\n", b"\r\n" + headers + b"\r\n")
    status, reason = head_answer(server.port, head + GOOD_ROW)
    assert status == 431
    assert b"headers" in reason
    assert refusal_logged(server, 431, reason)
    assert_still_serving(server)


def test_a_huge_header_value_is_431_and_ping_stays_fast_meanwhile(server: Server) -> None:
    """One 32 MB header value, sent as fast as possible: parsing it cost a worker CPU time
    that grew with the square of its size (19 s for 128 MB), with /ping waiting behind it;
    the head is refused once it passes its limit, before the rest is read."""
    value = b"a" * (32 * 1024 * 1024)
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Big: " + value + b"\r\n\r\n"
    answers: list[tuple[int | None, bytes]] = []
    sender = threading.Thread(target=lambda: answers.append(head_answer(server.port, head)))
    sender.start()
    pings = [server.ping() for _ in range(5)]
    sender.join(timeout=60)
    assert pings == [200] * 5
    # None: the server closed the connection while the client was still sending.
    assert [status for status, _ in answers] in ([431], [None])
    time.sleep(0.2)
    assert any(line["status"] == 431 for line in server.request_lines())
    assert_still_serving(server)


HALF_A_HEAD = b"POST /invocations HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("sent", [b"", HALF_A_HEAD], ids=["nothing", "half a head"])
def test_a_silent_head_is_408_at_the_read_timeout(server: Server, sent: bytes) -> None:
    """A connection silent before or in its headers was kept open for ever: the read timeout
    covers the head as it covers the body, with a 408 logged."""
    started = time.monotonic()
    status, reason = head_answer(server.port, sent, deadline_seconds=READ_TIMEOUT + 10)
    assert status == 408
    assert time.monotonic() - started >= READ_TIMEOUT
    assert refusal_logged(server, 408, reason)
{%- endif %}


{%- if cookiecutter.server == "nginx-gunicorn-flask" %}


def test_a_stalled_body_is_closed_without_an_answer_and_logged_as_a_408(server: Server) -> None:
    """nginx cannot send the 408 a stalled request earns: after MODEL_SERVER_READ_TIMEOUT
    it closes the connection without an answer, and logs the 408 with its reason."""
    sock = stall(server.port)
    started = time.monotonic()
    try:
        assert answer_status(sock, started + READ_TIMEOUT + 5) is None
    finally:
        sock.close()
    assert READ_TIMEOUT - 0.5 < time.monotonic() - started < READ_TIMEOUT + 3
    reason = stalled_reason(READ_TIMEOUT)
    server.wait_for(
        lambda: any(line.get("error") == reason for line in server.request_lines()),
        "the 408's log line",
    )
    line = [line for line in server.request_lines() if line.get("error") == reason][-1]
    assert (line["method"], line["path"], line["status"]) == ("POST", "/invocations", 408)
{%- endif %}

{%- if cookiecutter.__web == "fastapi" %}


# Clients that each send all but 1 KB of the largest body allowed, then stall: 60 held
# 290 MiB of a worker before.
STALLED_UPLOADS = 60
UPLOAD_BYTES = 6 * 2**20 - 1024
# How far the workers' RSS may stay above where it was once those clients are gone.
RSS_MARGIN_MIB = 64


def workers_rss_mib(server: Server) -> int:
    total = 0
    for pid in server.worker_pids():
        status = Path(f"/proc/{pid}/status").read_text()
        total += int(status.split("VmRSS:")[1].split()[0])
    return total // 1024


def test_memory_held_by_stalled_uploads_is_given_back(server: Server) -> None:
    """Memory a connection held is the system's again once it is gone: glibc's rising mmap
    threshold kept 6 MB bodies in its heap, and 60 stalled uploads left a worker 290 MiB
    larger after they had closed (``environment.give_back_large_blocks``)."""
    before = workers_rss_mib(server)
    head = (
        "POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
        f"Content-Length: {UPLOAD_BYTES + 1024}\r\n\r\n"
    ).encode()
    body = GOOD_ROW * (UPLOAD_BYTES // len(GOOD_ROW))

    def upload(_: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT + 5)
        with contextlib.suppress(OSError):  # a server that stops reading holds less
            sock.sendall(head + body)
        return sock

    with ThreadPoolExecutor(STALLED_UPLOADS) as pool:
        uploads = list(pool.map(upload, range(STALLED_UPLOADS)))
    time.sleep(1)  # taken in
    for sock in uploads:
        sock.close()
    deadline = time.monotonic() + READ_TIMEOUT + 15
    while (after := workers_rss_mib(server)) > before + RSS_MARGIN_MIB:
        assert time.monotonic() < deadline, f"worker RSS {before} MiB before, {after} after"
        time.sleep(0.5)
    assert_still_serving(server)


# Clients that never read their answers. Each answer is an .npy of labels (7.2 MB for
# 180,000 rows, a body within the 6 MB limit), larger than what the sockets' buffers take
# (about 3 MB on loopback), so the rest stays in the worker, in uvicorn's transport.
UNREAD_ROWS = 180_000
NON_READERS = 16
ABORTED = "aborted the connection of"


def unread_requests(port: int, count: int) -> bytes:
    """``count`` pipelined requests, each a large batch whose answer is larger still."""
    body = npy(np.tile(np.array([[5.1, 3.5, 1.4, 0.2]]), (UNREAD_ROWS, 1)))
    head = (
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-npy\r\nAccept: application/x-npy\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return (head + body) * count


def non_reader(port: int, requests: bytes) -> socket.socket:
    """A connection that sends ``requests`` and reads nothing (a small receive buffer: the
    answer stays on the server's side)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(15)  # the pipelined requests are read once the first one is answered
    sock.connect(("127.0.0.1", port))
    with contextlib.suppress(OSError):  # cut already
        sock.sendall(requests)
    return sock


def aborted(server: Server) -> int:
    return server.log.read_text().count(ABORTED)


def test_a_client_that_never_reads_its_answer_is_cut_at_the_read_timeout(
    server: Server,
) -> None:
    """Its answer stayed in the worker for as long as it kept the connection open: the send
    timeout aborts the connection once the client has taken nothing for READ_TIMEOUT, and
    says why in the log."""
    cut_before = aborted(server)
    with non_reader(server.port, unread_requests(server.port, 1)) as sock:
        sent = time.monotonic()
        server.wait_for(lambda: aborted(server) > cut_before, "the send timeout")
        assert time.monotonic() - sent >= READ_TIMEOUT
        line = [line for line in server.log.read_text().splitlines() if ABORTED in line][-1]
        assert f"the client took nothing of its answer for {READ_TIMEOUT} s" in line
        assert "Traceback" not in server.log.read_text().split(line)[1]
        received = 0
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(MIB):
                received += len(chunk)
        assert received < UNREAD_ROWS * 40  # the rest was dropped, not sent
    assert_still_serving(server)


def test_a_slow_but_steady_reader_gets_its_whole_answer(server: Server) -> None:
    """Reading 64 KiB every 40 ms, a 7.2 MB answer takes about 5 s, most of it with the
    server's buffer full: longer than READ_TIMEOUT, yet never cut, as the client keeps
    taking data."""
    cut_before = aborted(server)
    with non_reader(server.port, unread_requests(server.port, 1)) as sock:
        started = time.monotonic()
        response = HTTPResponse(sock)
        response.begin()
        assert response.status == 200
        received = 0
        while chunk := response.read(64 * 1024):
            received += len(chunk)
            time.sleep(0.04)
        assert received == int(response.getheader("Content-Length", "0")) > 7_000_000
        assert time.monotonic() - started > READ_TIMEOUT
    assert aborted(server) == cut_before


def test_memory_held_by_clients_that_never_read_is_given_back(server: Server) -> None:
    """Clients that sent two pipelined requests each and read nothing: the first answer
    filled uvicorn's buffer and the second waited, computed, for it to drain. They held
    about 190 MiB of the workers for as long as they stayed; the send timeout cuts them,
    and the memory goes back to the system (large blocks are mmapped: see
    ``environment.give_back_large_blocks``)."""
    before = workers_rss_mib(server)
    cut_before = aborted(server)
    requests = unread_requests(server.port, 2)
    with ThreadPoolExecutor(NON_READERS) as pool:
        clients = list(pool.map(lambda _: non_reader(server.port, requests), range(NON_READERS)))
    try:
        held = workers_rss_mib(server)
        deadline = time.monotonic() + READ_TIMEOUT + 10
        while (cut := aborted(server) - cut_before) < NON_READERS:
            held = max(held, workers_rss_mib(server))
            assert time.monotonic() < deadline, (
                f"{cut} of {NON_READERS} clients cut; worker RSS {before} MiB before, {held} "
                "while they stayed"
            )
            time.sleep(0.5)
        deadline = time.monotonic() + 5
        while (after := workers_rss_mib(server)) > before + RSS_MARGIN_MIB:
            assert time.monotonic() < deadline, f"worker RSS {before} MiB before, {after} after"
            time.sleep(0.5)
    finally:
        for sock in clients:
            sock.close()
    assert_still_serving(server)
{%- endif %}


def test_no_request_of_this_module_was_answered_with_a_5xx(server: Server) -> None:
    """The server's own request log, which also holds the answers no client read."""
    time.sleep(0.5)  # the workers write each line after the answer
    lines = server.request_lines()
    assert len(lines) > 100
    assert [line for line in lines if line["status"] >= 500] == []
