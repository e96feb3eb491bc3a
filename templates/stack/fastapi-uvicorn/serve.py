"""The server launcher: what ``python -m <package> serve`` does (FastAPI on uvicorn).

This process binds the port and listens before it imports anything slow, so SageMaker's
first connections are accepted at once; until every worker has its model they are answered
503 "model is loading" (``readiness``). Where the framework allows it the model is loaded
here, once, and the workers forked after the load share it; elsewhere each worker loads
its own copy before it accepts. Then every worker starts serving at once, so ``/ping``
goes 200 once and stays so. A worker that dies is forked again (with the model, or loading
it before it accepts). SIGTERM stops accepting connections, lets in-flight requests finish,
and exits 0. Settings come from the environment: ``SAGEMAKER_BIND_TO_PORT`` (8080),
``SAGEMAKER_MODEL_SERVER_WORKERS`` (one per CPU), ``SAGEMAKER_MODEL_SERVER_TIMEOUT`` (60 s)
and ``MODEL_SERVER_READ_TIMEOUT`` (20 s: how long a request body may stop arriving before
the app answers 408; uvicorn has no such limit).

The supervisor is this module's own, not uvicorn's (which spawns its workers, so they could
not share a model): it forks the workers, each runs ``uvicorn.Server`` on the inherited
socket. uvloop sets TCP_NODELAY on every connection it accepts (plain asyncio with several
workers does not, which delays each response by the 40 ms of a delayed ACK). That, the
replacement of a worker that dies, and a predict that holds the GIL for seconds are tested
in ``tests/test_server.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import time
from types import FrameType
from typing import TYPE_CHECKING

from . import readiness
from .environment import ServerSettings, bind_port, configure_logging, log_config

# Connections the kernel accepts before a worker takes them (uvicorn's default).
BACKLOG = 2048
# SageMaker sends SIGKILL 30 s after SIGTERM: finish in-flight requests well before that.
GRACEFUL_SHUTDOWN_SECONDS = 25
# Longer than any client-side idle timeout SageMaker uses, so it never sees a reset.
KEEP_ALIVE_SECONDS = 75
# A worker that ends sooner than this after its start is started again only after as long:
# one that cannot start at all must not be forked in a tight loop.
RESPAWN_PAUSE_SECONDS = 1.0

if TYPE_CHECKING:  # uvicorn itself is imported once the port is taken
    import uvicorn

log = logging.getLogger(__name__)


def listen(port: int) -> socket.socket:
    """A TCP socket bound to ``port`` and listening, which the forked workers inherit; a
    port in use ends the process with a message naming it (``bind_port``)."""
    sock = bind_port(port)
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    """``workers`` forked processes serving ``config`` on ``sock``; each that dies is forked
    again, and SIGTERM or SIGINT stops them all gracefully."""

    def __init__(
        self, config: uvicorn.Config, sock: socket.socket, workers: int, gate: readiness.Gate
    ) -> None:
        self.config = config
        self.sock = sock
        self.workers = workers
        self.gate = gate
        self.children: dict[int, float] = {}  # pid -> monotonic start
        self.stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def _wake(self, signum: int, frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            if not self.stopping:
                log.info("received %s: stopping", signal.Signals(signum).name)
            self.stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def fork(self) -> None:
        pid = os.fork()
        if pid:
            self.children[pid] = time.monotonic()
            return
        code = 1
        try:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)  # uvicorn sets its own when it serves
            os.close(self._wake_r)
            os.close(self._wake_w)
            code = serve_worker(self.config, self.sock, self.gate)
        except BaseException:
            log.exception("worker failed")
        finally:
            logging.shutdown()
            os._exit(code)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, self._wake)
        for _ in range(self.workers):
            self.fork()
        while not self.stopping:
            self.reap()
            for _ in range(self.workers - len(self.children)):
                self.fork()
            with contextlib.suppress(InterruptedError):
                select.select([self._wake_r], [], [], 1.0)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
        self.stop()
        return 0

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            started = self.children.pop(pid, None)
            if started is None or self.stopping:
                continue
            log.warning("worker %d ended (%s): starting another", pid, describe(status))
            if time.monotonic() - started < RESPAWN_PAUSE_SECONDS:
                time.sleep(RESPAWN_PAUSE_SECONDS)

    def stop(self) -> None:
        """SIGTERM to every worker (uvicorn's graceful shutdown), SIGKILL to any left after
        the graceful timeout and a margin."""
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACEFUL_SHUTDOWN_SECONDS + 2
        while self.children and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.sock.close()


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def serve_worker(config: uvicorn.Config, sock: socket.socket, gate: readiness.Gate) -> int:
    """A worker: its model settled (the master's, or loaded here), then uvicorn on ``sock``
    once the master gives the go; its exit code."""
    import uvicorn

    from .app import app  # imported in the master already where the model was loaded there

    service = app.state.model_service
    if not readiness.settle(service.load, gate):
        return 0
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def stop_now(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGINT before the workers exist: nothing in flight, exit 0 at once."""
    log.info("received %s before the workers started: stopping", signal.Signals(signum).name)
    raise SystemExit(0)


def main() -> int:
    configure_logging()
    settings = ServerSettings.from_env()
    signal.signal(signal.SIGTERM, stop_now)
    signal.signal(signal.SIGINT, stop_now)
    sock = listen(settings.port)
    responder = readiness.Responder([sock])
    responder.start()
    log.info("listening on port %d; starting %d workers", settings.port, settings.workers)
    gate = readiness.Gate(settings.workers)
    gate.open_when_ready(responder)
    # Imported once the port is taken: uvicorn alone costs about 0.2 s.
    import uvicorn

    config = uvicorn.Config(
        f"{__package__}.app:app",
        loop="uvloop",
        # httptools, with limits on a request's head (uvicorn sets none).
        http=f"{__package__}.app:LimitedHttpToolsProtocol",
        backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_config=log_config(),
        access_log=False,  # the app logs each request as one JSON line (access_log.py)
    )
    if readiness.FORK_AFTER_LOAD:
        from .app import app

        app.state.model_service.load()
        readiness.freeze_for_fork()
    # The supervisor even for one worker: a worker that dies is replaced, not the container.
    return Supervisor(config, sock, settings.workers, gate).run()
