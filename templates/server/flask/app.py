"""The HTTP app (Flask): ``GET /ping`` and ``POST /invocations``.

It only moves bytes and headers: decoding, prediction and encoding live in
``inference.py``, shared by every server stack. gunicorn runs it in threaded workers, so
``/ping`` answers at once even while a large batch is being scored.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from .environment import Paths, ServerSettings
from .inference import InvocationError, ModelService

PREDICT_THREADS = 4


def text_response(message: str, status: int) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain")


def create_app(
    service: ModelService | None = None, settings: ServerSettings | None = None
) -> Flask:
    """The app; whoever runs it calls ``service.start_loading()`` (see ``gunicorn_server``)."""
    service = service or ModelService(Paths.from_env().model)
    settings = settings or ServerSettings.from_env()
    predictions = ThreadPoolExecutor(PREDICT_THREADS, thread_name_prefix="predict")

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_payload_bytes
    app.extensions["model_service"] = service

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return text_response(exc.description or exc.name, exc.code or 500)

    @app.get("/ping")
    def ping() -> Response:
        return Response(status=200 if service.ready else 503)

    @app.post("/invocations")
    def invocations() -> Response:
        body = request.get_data(cache=False)  # 413 above MAX_CONTENT_LENGTH.
        future = predictions.submit(
            service.invoke,
            body,
            request.headers.get("Content-Type"),
            request.headers.get("Accept"),
        )
        try:
            payload, media_type = future.result(timeout=settings.timeout)
        except InvocationError as exc:
            return text_response(exc.reason, exc.status)
        except FutureTimeout:
            return text_response(f"prediction took longer than {settings.timeout} s", 504)
        return Response(payload, mimetype=media_type)

    return app
