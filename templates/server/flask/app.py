"""The HTTP app (Flask): ``GET /ping``, ``POST /invocations``, ``GET /execution-parameters``.

It only moves bytes and headers: decoding, prediction and encoding live in
``inference.py``, shared by every server stack. gunicorn runs it in threaded workers, so
``/ping`` answers at once even while a large batch is being scored. ``openapi.json`` at the
project root documents the endpoints, and the tests hold the app to it. Each request is
logged as one JSON line (gunicorn's access log is off).
"""

from __future__ import annotations

import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import (
    ClientDisconnected,
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
)

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

PREDICT_THREADS = 4


def error_response(reason: str, status: int) -> Response:
    """An error answer: the reason as one line of text, which the request log keeps too
    (unless a traceback is there already)."""
    if g.get("error") is None:
        g.error = reason
    return Response(reason + "\n", status=status, mimetype="text/plain")


def read_body(limit: int) -> bytes:
    """The request body; 413 above ``limit`` (``MAX_CONTENT_LENGTH``).

    werkzeug refuses a Content-Length over the limit, but reads a body without one (chunked)
    up to the limit and returns it as if it ended there: one more byte from the server's
    own stream tells whether it did, rather than predicting on a truncated body.
    """
    body = request.get_data(cache=False)
    if len(body) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return body


def start_timer() -> None:
    g.started = time.perf_counter()


def log_request(response: Response) -> Response:
    access_log.write(
        access_log.RequestRecord(
            method=request.method,
            path=request.path,
            status=response.status_code,
            latency_ms=access_log.elapsed_ms(g.get("started", time.perf_counter())),
            bytes_in=g.get("bytes_in", request.content_length or 0),
            bytes_out=response.content_length or 0,
            content_type=request.headers.get("Content-Type", ""),
            accept=request.headers.get("Accept", ""),
            error=g.get("error"),
        )
    )
    return response


def create_app(
    service: ModelService | None = None, settings: ServerSettings | None = None
) -> Flask:
    """The app; whoever runs it calls ``service.start_serving(timeout)`` (see
    ``gunicorn_server``)."""
    service = service or ModelService(Paths.from_env().model)
    settings = settings or ServerSettings.from_env()
    predictions = ThreadPoolExecutor(PREDICT_THREADS, thread_name_prefix="predict")

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_payload_bytes
    app.extensions["model_service"] = service
    app.before_request(start_timer)
    app.after_request(log_request)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if isinstance(exc, NotFound):
            reason = no_such_path(request.path)
        elif isinstance(exc, MethodNotAllowed):
            reason = wrong_method(request.method, request.path)
        elif isinstance(exc, RequestEntityTooLarge):
            reason = too_large(settings.max_payload_bytes)
        else:
            reason = exc.description or exc.name
        response = error_response(reason, exc.code or 500)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        g.error = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return error_response(f"internal error: {type(exc).__name__}", 500)

    @app.get("/ping")
    def ping() -> Response:
        return Response(status=200 if service.ready else 503)

    @app.get("/execution-parameters")
    def execution_parameters() -> Response:
        return jsonify(settings.execution_parameters())

    @app.post("/invocations")
    def invocations() -> Response:
        try:
            body = read_body(settings.max_payload_bytes)
        except ClientDisconnected:
            # Nothing came for read_timeout s (gunicorn_server's limit), or the client left.
            return error_response(stalled(settings.read_timeout), 408)
        g.bytes_in = len(body)
        future = predictions.submit(
            service.invoke,
            body,
            request.headers.get("Content-Type"),
            request.headers.get("Accept"),
            request.headers.get(CUSTOM_ATTRIBUTES_HEADER),
        )
        try:
            answer = future.result(timeout=settings.timeout)
        except InvocationError as exc:
            return error_response(exc.reason, exc.status)
        except FutureTimeout:
            return error_response(f"prediction took longer than {settings.timeout} s", 504)
        response = Response(answer.body, mimetype=answer.media_type)
        if answer.custom_attributes is not None:
            response.headers[CUSTOM_ATTRIBUTES_HEADER] = answer.custom_attributes
        return response

    return app
