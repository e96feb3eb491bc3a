"""The server launcher: what ``python -m <package> serve`` does (FastAPI on uvicorn).

This process binds the port and listens before it imports anything slow, so SageMaker's
first connections are accepted at once and wait in the backlog; uvicorn's supervisor then
spawns the workers on that socket, each loads the model in the background (``/ping`` is
503 until then), and a worker that dies is replaced. SIGTERM stops accepting connections,
lets in-flight requests finish, and exits 0. Settings come from the environment:
``SAGEMAKER_BIND_TO_PORT`` (8080), ``SAGEMAKER_MODEL_SERVER_WORKERS`` (one per CPU),
``SAGEMAKER_MODEL_SERVER_TIMEOUT`` (60 s) and ``MODEL_SERVER_READ_TIMEOUT`` (20 s: how long
a request body may stop arriving before the app answers 408; uvicorn has no such limit).

uvloop sets TCP_NODELAY on every connection it accepts (plain asyncio with several workers
does not, which delays each response by the 40 ms of a delayed ACK). That, and the
replacement of a worker that dies (at once, even while a health check waits for it), are
tested in ``tests/test_server.py``; so is a predict that holds the GIL for seconds, which
uvicorn's default health check would have killed.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from .environment import ServerSettings, bind_port, configure_logging, log_config

# Connections the kernel accepts before a worker takes them (uvicorn's default).
BACKLOG = 2048
# SageMaker sends SIGKILL 30 s after SIGTERM: finish in-flight requests well before that.
GRACEFUL_SHUTDOWN_SECONDS = 25
# Longer than any client-side idle timeout SageMaker uses, so it never sees a reset.
KEEP_ALIVE_SECONDS = 75

if TYPE_CHECKING:  # uvicorn itself is imported once the port is taken
    import uvicorn
    from uvicorn.supervisors import Multiprocess

log = logging.getLogger(__name__)


def listen(port: int) -> socket.socket:
    """A TCP socket bound to ``port`` and listening, which the spawned workers inherit; a
    port in use ends the process with a message naming it (``bind_port``)."""
    sock = bind_port(port)
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def supervisor(config: uvicorn.Config, sock: socket.socket) -> Multiprocess:
    """uvicorn's ``Multiprocess`` supervisor on ``sock``, made to see at once a worker that
    dies while its health check is waiting for the answer.

    uvicorn keeps its own copy of each worker's end of the health-check pipe, so the pipe
    never closes when the worker dies: a worker killed (by the OOM killer, say) just as a
    check began went unnoticed for the whole check timeout. Closing that copy once the worker
    has started (it has its own) makes its death end the wait.
    """
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):  # type: ignore[misc]
        def keep_subprocess_alive(self) -> None:
            for worker in self.processes:
                if worker.process.pid is not None:  # started; closing twice is harmless
                    worker.child_conn.close()
            super().keep_subprocess_alive()

    return Supervisor(config, sockets=[sock])


def main() -> int:
    configure_logging()
    settings = ServerSettings.from_env()
    sock = listen(settings.port)
    log.info("listening on port %d; starting %d workers", settings.port, settings.workers)
    # Imported once the port is taken: uvicorn alone costs about 0.2 s.
    import uvicorn

    config = uvicorn.Config(
        f"{__package__}.app:app",
        workers=settings.workers,
        loop="uvloop",
        # httptools, with limits on a request's head (uvicorn sets none).
        http=f"{__package__}.app:LimitedHttpToolsProtocol",
        backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        # The supervisor kills a worker that misses its health check (5 s by default), as
        # one does while a predict holds the GIL: allow what a request may take, and more.
        timeout_worker_healthcheck=settings.backstop_timeout,
        log_config=log_config(),  # applied again in each worker process
        access_log=False,  # the app logs each request as one JSON line (access_log.py)
    )
    # The supervisor even for one worker: a worker that dies is replaced, not the container.
    supervisor(config, sock).run()
    return 0
