"""The server launcher: what ``python -m <package> serve`` does (FastAPI on uvicorn).

uvicorn binds the port before the workers import the app, each worker loads the model in
the background (``/ping`` is 503 until then), and SIGTERM stops accepting connections,
lets in-flight requests finish, and exits 0. Settings come from the environment:
``SAGEMAKER_BIND_TO_PORT`` (8080), ``SAGEMAKER_MODEL_SERVER_WORKERS`` (one per CPU),
``SAGEMAKER_MODEL_SERVER_TIMEOUT`` (60 s) and ``MODEL_SERVER_READ_TIMEOUT`` (20 s: how long
a request body may stop arriving before the app answers 408; uvicorn has no such limit).

uvloop sets TCP_NODELAY on every connection it accepts (plain asyncio with several workers
does not, which delays each response by the 40 ms of a delayed ACK), and uvicorn's
supervisor replaces a worker process that dies. Both are tested in ``tests/test_server.py``.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

import uvicorn

from .environment import ServerSettings, configure_logging, log_config

# SageMaker sends SIGKILL 30 s after SIGTERM: finish in-flight requests well before that.
GRACEFUL_SHUTDOWN_SECONDS = 25
# Longer than any client-side idle timeout SageMaker uses, so it never sees a reset.
KEEP_ALIVE_SECONDS = 75

log = logging.getLogger(__name__)


def _stopped(signum: int, frame: FrameType | None) -> None:
    """Runs after uvicorn's graceful shutdown, which re-raises SIGTERM: exit 0, not -15."""
    log.info("stopped by %s", signal.Signals(signum).name)


def main() -> int:
    configure_logging()
    settings = ServerSettings.from_env()
    signal.signal(signal.SIGTERM, _stopped)
    uvicorn.run(
        f"{__package__}.app:app",
        host="0.0.0.0",
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_config=log_config(),  # applied again in each worker process
        access_log=False,  # the app logs each request as one JSON line (access_log.py)
    )
    return 0
