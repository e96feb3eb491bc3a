"""Readiness of the whole server, not of one worker: ``/ping`` goes 200 once, and stays so.

Every server stack uses it the same way:

1. The master process binds the port at once and starts a ``Responder``: a thread that
   accepts on the listening socket and answers every request 503 "model is loading".
2. Where the framework allows it (``FORK_AFTER_LOAD``), the master loads the model once,
   freezes what it holds out of the garbage collector's way (``gc.freeze``), and only then
   forks the workers: they share the model's memory (copy on write), and a worker started
   later to replace a dead one has it at once. Elsewhere (TensorFlow starts threads as it
   is imported, which a fork does not carry over) each worker loads its own copy before it
   accepts a connection.
3. Each worker, once its model is settled (loaded, or failed: then it answers 503 with the
   reason), reports to the master (``Gate.report``) and waits for the go (``Gate.wait``).
   Once every initial worker has reported, the master stops the responder and gives the
   go: all the workers start accepting at once, every one of them with its model. A
   replacement worker finds the go given and accepts as soon as its model is settled.

So ``/ping`` never answers 200 from one worker and 503 from another, and a killed worker's
replacement never answers 503 in between.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import socket
import threading
from collections.abc import Callable, Sequence

from .environment import give_back_freed_memory

log = logging.getLogger(__name__)

# Whether the model is loaded once in the master and shared by forked workers: where the
# tests found the children forked after a load predict as an unforked process does
# (test_a_model_loaded_before_a_fork_predicts_the_same_in_the_forked_workers). Not so for
# XGBoost and LightGBM, whose load starts OpenMP's thread pool when a worker has more than
# one thread (children forked after it hang in their first predict), nor for TensorFlow,
# which starts its threads as it is imported: there each worker loads its own copy.
FORK_AFTER_LOAD = {% if cookiecutter.framework in ["scikit-learn", "custom", "pytorch"] %}True{% else %}False{% endif %}

LOADING = "model is loading"
# How long the responder waits for a request's head, and a worker between heartbeats.
HEAD_SECONDS = 0.5
POLL_SECONDS = 0.5
MAX_HEAD_BYTES = 64 * 1024


def loading_answer(reason: str = LOADING) -> bytes:
    """A 503 as the app answers errors: the reason as one line of text; then the close."""
    body = f"{reason}\n".encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
    )


class Responder:
    """A thread of the master that answers 503 on ``sockets`` until ``stop`` (which
    returns once it accepts no more): the workers are not accepting yet."""

    def __init__(self, sockets: Sequence[socket.socket]) -> None:
        self.sockets = list(sockets)
        self._wake_r, self._wake_w = os.pipe()
        self._lock = threading.Lock()  # held while a connection is accepted or closed
        self._connection: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, name="loading-503", daemon=True)
        os.register_at_fork(
            before=self._lock.acquire,
            after_in_parent=self._lock.release,
            after_in_child=self._after_fork_in_child,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            os.write(self._wake_w, b"x")
            self._thread.join()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        if self._connection is not None:  # the child's copy: the master's close must end it
            self._connection.close()
            self._connection = None
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _serve(self) -> None:
        while True:
            readable, _, _ = select.select([self._wake_r, *self.sockets], [], [])
            if self._wake_r in readable:
                return
            for listener in readable:
                with self._lock:
                    try:
                        self._connection, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        log.exception("the responder could not accept a connection")
                        continue
                try:
                    self._answer(self._connection)
                finally:
                    with self._lock:
                        self._connection.close()
                        self._connection = None

    @staticmethod
    def _answer(connection: socket.socket) -> None:
        connection.settimeout(HEAD_SECONDS)
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head and len(head) < MAX_HEAD_BYTES:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                head += chunk
            connection.sendall(loading_answer())
            connection.shutdown(socket.SHUT_WR)
            # Read what the client still sends (a body) until it closes: closing with
            # unread bytes would reset the connection, and the client lose the answer.
            while connection.recv(65536):
                pass


class Gate:
    """The master's go to its ``workers`` initial workers, once each has its model."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._ready_r, self._ready_w = os.pipe()
        self._go_r, self._go_w = os.pipe()
        self._go_given = False
        self._lock = threading.Lock()
        os.register_at_fork(
            before=self._lock.acquire,
            after_in_parent=self._lock.release,
            after_in_child=self._after_fork_in_child,
        )

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        for fd in (self._ready_r, self._go_w):
            if fd >= 0:
                os.close(fd)
        self._ready_r = self._go_w = -1

    def open_when_ready(self, responder: Responder) -> threading.Thread:
        """In the master: a thread that waits for every initial worker's report, then stops
        ``responder`` and gives the go."""

        def wait_then_open() -> None:
            reports = 0
            while reports < self.workers:
                received = os.read(self._ready_r, self.workers - reports)
                if not received:
                    break
                reports += len(received)
            responder.stop()
            self.open()
            log.info("all %d workers have their model: accepting requests", self.workers)

        opener = threading.Thread(target=wait_then_open, name="readiness", daemon=True)
        opener.start()
        return opener

    def open(self) -> None:
        """The go (the end of the pipe the workers wait on), given once."""
        with self._lock:
            if self._go_w >= 0:
                os.close(self._go_w)
                self._go_w = -1
            self._go_given = True

    def report(self) -> None:
        """In a worker whose model is settled: tell the master (unless the go was given)."""
        if not self._go_given:
            with contextlib.suppress(OSError):
                os.write(self._ready_w, b"1")
        os.close(self._ready_w)

    def wait(self, still_wanted: Callable[[], bool] = lambda: True) -> bool:
        """In a worker: wait for the go; False if ``still_wanted()`` turned False first (it is
        asked every ``POLL_SECONDS``, which is also how often a heartbeat may beat)."""
        try:
            while still_wanted():
                readable, _, _ = select.select([self._go_r], [], [], POLL_SECONDS)
                if readable and not os.read(self._go_r, 1):
                    return True
            return False
        finally:
            os.close(self._go_r)


def freeze_for_fork() -> None:
    """What the master does between the load and the fork: the objects it holds now move
    out of the garbage collector's sight, which would otherwise touch (and so copy) every
    one of them in every worker; and what the load freed goes back to the system, rather
    than stay in every process as the master's heap."""
    gc.collect()
    gc.freeze()
    give_back_freed_memory()


def settle(load: Callable[[], None], gate: Gate, beat: Callable[[], None] | None = None) -> bool:
    """In a worker: ``load`` the model (a no-op where the master loaded it), report, and wait
    for the go, calling ``beat`` every ``POLL_SECONDS`` meanwhile if given (gunicorn kills a
    worker that stays silent); False if the worker is to stop instead (``beat`` raised
    ``StopIteration``)."""
    beating = threading.Event()
    stopped = threading.Event()

    def heartbeat() -> None:
        while not beating.wait(POLL_SECONDS):
            try:
                beat()  # type: ignore[misc]
            except StopIteration:
                stopped.set()
                return

    if beat is not None:
        threading.Thread(target=heartbeat, name="heartbeat", daemon=True).start()
    try:
        load()
        gate.report()
        go = gate.wait(lambda: not stopped.is_set())
    finally:
        beating.set()
    if go:
        log.info("worker accepting requests")  # the tests count the workers by this line
    return go
