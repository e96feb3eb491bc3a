"""The HTTP app (FastAPI): ``GET /ping``, ``POST /invocations``, ``GET /execution-parameters``.

It only moves bytes and headers: decoding, prediction and encoding live in
``inference.py``, shared by every server stack. Predictions run in a thread, one at a time
per worker (``PREDICTIONS_AT_ONCE``), so ``/ping`` answers at once even while a large batch
is being scored and others wait their turn. ``openapi.json`` at the
project root documents the endpoints (FastAPI's generated docs are off: that file is the one
description, and the tests hold the app to it). Each request is logged as one JSON line.

``MODEL_SERVER_READ_TIMEOUT`` (20 s) bounds a silent client both ways: a request head or
body that stops arriving for that long is a 408, and an answer its client takes none of for
that long is dropped and the connection aborted (the send timeout, which uvicorn lacks: a
client that never read kept its whole answer in the worker). Both are in
``LimitedHttpToolsProtocol`` and ``read_body`` below.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import access_log
from .environment import Paths, ServerSettings
from .inference import (
    CUSTOM_ATTRIBUTES_HEADER,
    InvocationError,
    ModelService,
    no_such_path,
    stalled,
    too_large,
    wrong_method,
)

log = logging.getLogger(__name__)

# What asyncio.wait_for raises on timeout: the builtin from Python 3.11, its own class before.
TIMED_OUT = (TimeoutError, asyncio.TimeoutError)

# Predictions one worker runs at once. Its Python code runs one thread at a time (the GIL),
# and the model's own threads already use the worker's share of the CPUs, so a second
# prediction gains nothing; and not every library may be called from several threads at once:
# scikit-learn's Parallel saves, empties and restores the process-wide warning filters around
# each tree (``warnings.catch_warnings`` is not thread-safe), and concurrent predictions undid
# each other's, logging its "delayed should be used with Parallel" warning dozens of times per
# request. Requests beyond it wait in the event loop, not in a thread, and one whose timeout
# passes while it waits is never run.
PREDICTIONS_AT_ONCE = 1


class PayloadTooLarge(InvocationError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit))


class BodyStalled(InvocationError):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, stalled(seconds))


class BodyCutShort(InvocationError):
    def __init__(self) -> None:
        super().__init__(400, "the client left before the end of the request body")


async def read_body(request: Request, limit: int, idle_seconds: float) -> bytes:
    """The request body, refused as soon as it is known to exceed ``limit`` bytes, or once
    nothing has arrived for ``idle_seconds``: uvicorn itself waits for a stalled body for
    ever, and each one it waits for holds a connection and its buffers."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    try:
        while True:
            try:
                with anyio.fail_after(idle_seconds):
                    chunk = await anext(stream)
            except StopAsyncIteration:
                return b"".join(chunks)
            except TimeoutError:
                raise BodyStalled(idle_seconds) from None
            except ClientDisconnect:  # nobody reads the answer: it is for the request log
                raise BodyCutShort() from None
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(limit)
            chunks.append(chunk)
    finally:
        # Let go of the body now: a refusal's traceback keeps this frame, and the garbage
        # collector may not free it for long (60 uploads that stalled until their 408 left
        # a worker 150 MiB larger after they had gone).
        chunks.clear()


def error_response(
    request: Request, reason: str, status: int, headers: dict[str, str] | None = None
) -> Response:
    """An error answer: the reason as one line of text, which the request log keeps too
    (unless a traceback is there already)."""
    if getattr(request.state, "error", None) is None:
        request.state.error = reason
    return PlainTextResponse(reason + "\n", status, headers=headers)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


class RequestLog:
    """ASGI middleware: one ``access_log`` line per HTTP request, errors with their trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "bytes_in": 0, "bytes_out": 0, "error": None}

        async def counting_receive() -> Message:
            message = await receive()
            seen["bytes_in"] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["bytes_out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        except Exception:
            seen["error"] = traceback.format_exc()
            raise
        finally:
            access_log.write(
                access_log.RequestRecord(
                    method=scope["method"],
                    path=scope["path"],
                    status=seen["status"],
                    latency_ms=access_log.elapsed_ms(started),
                    bytes_in=seen["bytes_in"],
                    bytes_out=seen["bytes_out"],
                    content_type=_header(scope, b"content-type"),
                    accept=_header(scope, b"accept"),
                    error=seen["error"] or scope.get("state", {}).get("error"),
                )
            )


# What a request's head (request line and headers) may hold. httptools has no limits of its
# own, and its cost grows with the square of a header's size (each piece is appended to the
# value so far): one 128 MB value cost a worker 19 s of CPU. Far beyond what SageMaker sends.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
# How often, while a connection's answer waits for its client, the send timeout looks at how
# much is still unsent: a stalled send is cut between 1 and 1 + 1/SEND_CHECKS times the
# timeout after the client last took data.
SEND_CHECKS = 4


@functools.cache
def worker_read_timeout() -> float:
    """``MODEL_SERVER_READ_TIMEOUT``, read once per worker, not on every connection."""
    return ServerSettings.from_env().read_timeout


class HeadRefused(Exception):
    """Raised from a parser callback to stop httptools at once."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc]
    """uvicorn's httptools protocol with limits on a request's head: more than
    ``MAX_HEADERS`` headers or ``MAX_HEAD_BYTES`` bytes is a 431, and a head that stops
    arriving (or never starts, on a new connection) for ``MODEL_SERVER_READ_TIMEOUT`` s a
    408, each answered with its reason, logged as the app logs a request, and the connection
    closed. The bytes are counted before httptools sees them, so an oversized head costs no
    more than its limit. ``serve.py`` names this class as uvicorn's ``http``.

    And a send timeout: an answer its client stops taking for ``MODEL_SERVER_READ_TIMEOUT``
    s (the socket full, the transport's buffer above its high-water mark, nothing of it
    taken since) is dropped and the connection aborted, with one log line saying why.
    uvicorn has no such limit: a client that never read kept its whole answer (and the next
    pipelined one, computed and waiting) in the worker for as long as it kept the
    connection open, even after a ``Connection: close``. Progress is what counts, not the
    pause: a client that reads slowly but steadily gets its whole answer, however long.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = worker_read_timeout()
        self.head_bytes = 0
        self.header_count = 0
        self.reading_head = True
        self.refused = False
        self.head_timer: asyncio.TimerHandle | None = None
        self.send_timer: asyncio.TimerHandle | None = None
        self.unsent = 0  # bytes the transport held at the send timeout's last look
        self.sent_at = 0.0  # loop time the client was last seen taking data
        self.running: Any = None  # the request cycle whose app task runs (uvicorn's)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_timer = self.loop.call_later(self.read_timeout, self.head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_head_timer()
        self.stop_send_timer()
        # uvicorn marks only the last request parsed (``self.cycle``) as disconnected: with
        # pipelined requests, the one running, woken from ``FlowControl.drain`` when the
        # connection goes, wrote to the closed transport and failed with a traceback.
        running = self.running
        if running is not None and not running.response_complete:
            running.disconnected = True
            running.message_event.set()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self.running = cycle
        super()._start_asgi_task(cycle, app)

    def pause_writing(self) -> None:
        """The transport holds more than its high-water mark: uvicorn's next ``send`` waits
        in ``FlowControl.drain``. Watch whether the client keeps taking data."""
        super().pause_writing()
        if self.send_timer is None:
            self.unsent = self.transport.get_write_buffer_size()
            self.sent_at = self.loop.time()
            self.send_timer = self.loop.call_later(
                self.read_timeout / SEND_CHECKS, self.check_send
            )

    def resume_writing(self) -> None:
        self.stop_send_timer()
        super().resume_writing()

    def stop_send_timer(self) -> None:
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None

    def check_send(self) -> None:
        self.send_timer = None
        unsent = self.transport.get_write_buffer_size()
        now = self.loop.time()
        if unsent < self.unsent:  # the client took some since the last look
            self.sent_at = now
        self.unsent = unsent
        if now - self.sent_at >= self.read_timeout:
            self.send_timed_out(unsent)
            return
        self.send_timer = self.loop.call_later(self.read_timeout / SEND_CHECKS, self.check_send)

    def send_timed_out(self, unsent: int) -> None:
        """Drop what the client did not take and abort the connection; the transport then
        calls ``connection_lost``, which releases the request waiting to send."""
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning(
            "aborted the connection of %s: the client took nothing of its answer for %s s "
            "(MODEL_SERVER_READ_TIMEOUT); %d bytes unsent dropped",
            client,
            self.read_timeout,
            unsent,
        )
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self.reading_head:
            super().data_received(data)
            return
        if self.head_timer is None:  # the first bytes of a keep-alive connection's next request
            self.head_timer = self.loop.call_later(self.read_timeout, self.head_timed_out)
        room = MAX_HEAD_BYTES - self.head_bytes
        self.head_bytes += min(len(data), room)
        super().data_received(data[:room])
        if self.transport.is_closing():
            return
        if self.reading_head and self.head_bytes >= MAX_HEAD_BYTES:
            self.refuse(431, f"the request head is larger than the {MAX_HEAD_BYTES} byte limit")
        elif len(data) > room:
            super().data_received(data[room:])

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > MAX_HEADERS:
            self.refuse(431, f"a request may have {MAX_HEADERS} headers at most")
            raise HeadRefused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self.stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head = True  # the next request's head, on a keep-alive connection
        self.head_bytes = self.header_count = 0

    def send_400_response(self, msg: str) -> None:
        if not self.refused:  # else the parser stopped at HeadRefused, answered already
            super().send_400_response(msg)

    def stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def head_timed_out(self) -> None:
        self.head_timer = None
        if self.reading_head and not self.transport.is_closing():
            self.refuse(408, f"the request head stopped arriving for {self.read_timeout} s")

    def refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` with ``reason`` as the app answers errors, log it as the app
        logs a request, and close the connection."""
        self.refused = True
        self.stop_head_timer()
        body = (reason + "\n").encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, HTTPStatus(status).phrase.encode(), len(body), body)
        )
        self.transport.close()
        scope = getattr(self, "scope", None) or {}  # both set once a request begins
        url = getattr(self, "url", b"")
        access_log.write(
            access_log.RequestRecord(
                method=scope.get("method", ""),
                path=url[:200].decode("latin-1"),
                status=status,
                latency_ms=0.0,
                bytes_in=self.head_bytes,
                bytes_out=len(body),
                content_type="",
                accept="",
                error=reason,
            )
        )


def create_app(
    service: ModelService | None = None, settings: ServerSettings | None = None
) -> FastAPI:
    service = service or ModelService(Paths.from_env().model)
    settings = settings or ServerSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start_serving(settings.timeout)
        yield

    predicting = anyio.CapacityLimiter(PREDICTIONS_AT_ONCE)
    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.model_service = service
    app.add_middleware(RequestLog)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            reason = no_such_path(request.url.path)
        elif exc.status_code == 405:
            reason = wrong_method(request.method, request.url.path)
        else:
            reason = exc.detail
        return error_response(request, reason, exc.status_code, exc.headers)

    @app.get("/ping")
    async def ping() -> Response:
        return Response(status_code=200 if service.ready else 503)

    @app.get("/execution-parameters")
    async def execution_parameters() -> Response:
        return JSONResponse(settings.execution_parameters())

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        try:
            body = await read_body(request, settings.max_payload_bytes, settings.read_timeout)
        except InvocationError as exc:
            # The rest of the body is still coming, or never will: this connection is done.
            return error_response(request, exc.reason, exc.status, {"Connection": "close"})
        try:
            answer = await asyncio.wait_for(
                anyio.to_thread.run_sync(
                    service.invoke,
                    body,
                    request.headers.get("content-type"),
                    request.headers.get("accept"),
                    request.headers.get(CUSTOM_ATTRIBUTES_HEADER),
                    limiter=predicting,
                ),
                timeout=settings.timeout,
            )
        except InvocationError as exc:
            return error_response(request, exc.reason, exc.status)
        except TIMED_OUT:
            reason = f"prediction took longer than {settings.timeout} s"
            return error_response(request, reason, 504)
        except Exception as exc:
            request.state.error = traceback.format_exc()
            return error_response(request, f"prediction failed: {type(exc).__name__}", 500)
        headers = {}
        if answer.custom_attributes is not None:
            headers[CUSTOM_ATTRIBUTES_HEADER] = answer.custom_attributes
        return Response(answer.body, media_type=answer.media_type, headers=headers)

    return app


app = create_app()
