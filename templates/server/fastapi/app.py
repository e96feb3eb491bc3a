"""The HTTP app (FastAPI): ``GET /ping`` and ``POST /invocations``.

It only moves bytes and headers: decoding, prediction and encoding live in
``inference.py``, shared by every server stack. Predictions run in a thread pool, so
``/ping`` answers at once even while a large batch is being scored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from .environment import Paths, ServerSettings
from .inference import InvocationError, ModelService


class PayloadTooLarge(InvocationError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the {limit} byte limit")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    service: ModelService | None = None, settings: ServerSettings | None = None
) -> FastAPI:
    service = service or ModelService(Paths.from_env().model)
    settings = settings or ServerSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start_loading()
        yield

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.model_service = service

    @app.get("/ping")
    async def ping() -> Response:
        return Response(status_code=200 if service.ready else 503)

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        try:
            body = await read_body(request, settings.max_payload_bytes)
            payload, media_type = await asyncio.wait_for(
                run_in_threadpool(
                    service.invoke,
                    body,
                    request.headers.get("content-type"),
                    request.headers.get("accept"),
                ),
                timeout=settings.timeout,
            )
        except InvocationError as exc:
            return PlainTextResponse(exc.reason + "\n", status_code=exc.status)
        except TimeoutError:
            return PlainTextResponse(
                f"prediction took longer than {settings.timeout} s\n", status_code=504
            )
        return Response(payload, media_type=media_type)

    return app


app = create_app()
