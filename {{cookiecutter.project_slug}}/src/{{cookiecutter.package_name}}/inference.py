"""The serving core shared by every server stack: load the model once, answer invocations.

The web app (``app.py``) only moves bytes and headers; everything a request means is here,
so each server stack behaves the same way. The server loads the model after it has bound
its port, before its workers accept requests (``readiness``): once in the master where the
workers may share it, else in each worker; ``/ping`` answers 503 (with the reason in the log)
if loading failed.

``X-Amzn-SageMaker-Custom-Attributes`` reaches the model's code without a change to
``model.predict``: during the call, ``custom_attributes()`` returns the request's header,
and ``set_response_attributes(text)`` sets the header of the answer (to echo it:
``set_response_attributes(custom_attributes())``). Without a call, the answer has none.

A prediction that outlives its request's timeout keeps its thread: Python cannot stop it.
``watch_for_stuck_predictions`` ends the worker process once one has run for twice the
timeout, and the server starts a fresh worker in its place, rather than let stuck threads
pile up until the worker answers nothing but 504s while ``/ping`` still says 200.
"""

from __future__ import annotations

import contextvars
import enum
import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import codec
from .environment import METADATA_FILE, give_back_large_blocks

log = logging.getLogger(__name__)


# A prediction still running after this many request timeouts is stuck.
STUCK_AFTER_TIMEOUTS = 2
# How a worker ends when a prediction is stuck: not 3 or 4, which tell uvicorn's and
# gunicorn's supervisors that the app cannot start at all (they would stop, not replace it).
STUCK_EXIT_CODE = os.EX_SOFTWARE

# How long a request waits for a model that is still loading (a multi-worker server's
# /ping may be answered by a worker whose copy is ready while this one's is not).
LOADING_WAIT_SECONDS = 30.0


CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
# What SageMaker forwards: up to 1024 visible US-ASCII characters.
_VALID_ATTRIBUTES = re.compile(r"[\x20-\x7e]{0,1024}")


@dataclass
class Attributes:
    """The custom attributes of the request being answered, and those of its answer."""

    request: str | None = None
    response: str | None = None


_attributes: contextvars.ContextVar[Attributes | None] = contextvars.ContextVar(
    "custom_attributes", default=None
)


def custom_attributes() -> str | None:
    """The request's ``X-Amzn-SageMaker-Custom-Attributes``; None without one."""
    current = _attributes.get()
    return current.request if current else None


def set_response_attributes(text: str) -> None:
    """Send ``text`` back as the answer's ``X-Amzn-SageMaker-Custom-Attributes``."""
    current = _attributes.get()
    if current is None:
        raise RuntimeError("set_response_attributes() is only meaningful during a prediction")
    if not _VALID_ATTRIBUTES.fullmatch(text):
        raise ValueError("custom attributes are at most 1024 visible ASCII characters")
    current.response = text


@dataclass(frozen=True)
class Answer:
    """What ``POST /invocations`` sends back."""

    body: bytes
    media_type: str
    custom_attributes: str | None = None


class State(enum.Enum):
    NOT_LOADED = "not loaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class InvocationError(Exception):
    """A request the server refuses, with the HTTP status and the reason to send back."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


ENDPOINTS = ("/ping", "/invocations", "/execution-parameters")


# Reasons given in the same words by every layer that can answer a request.
def too_large(limit: int) -> str:
    return f"request body is larger than the {limit} byte limit"


def stalled(seconds: float) -> str:
    return f"the request body stopped arriving for {seconds} s"


def no_such_path(path: str) -> str:
    return f"nothing at {path}: the server answers {', '.join(ENDPOINTS)}"


def wrong_method(method: str, path: str) -> str:
    return f"{path} does not answer {method}"


class ModelService:
    """One model, loaded once (by the server's master, or by each worker), and the
    invocations it answers."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.state = State.NOT_LOADED
        self.failure: str | None = None
        self.n_features: int | None = None
        self._model: Any = None
        self._predict: Callable[[Any, np.ndarray], np.ndarray] | None = None
        self._lock = threading.Lock()
        self._settled = threading.Event()  # Set once loading has succeeded or failed.
        self._started: dict[int, float] = {}  # Predictions running: id -> monotonic start.
        self._started_lock = threading.Lock()
        self._ids = itertools.count()

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    def start_loading(self) -> None:
        """Load the model in a background thread (once); return at once."""
        with self._lock:
            if self.state is not State.NOT_LOADED:
                return
            self.state = State.LOADING
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()

    def start_serving(self, timeout: float) -> None:
        """What a server worker calls once: load the model in the background (nothing to do
        when the server loaded it already, as it does before its workers accept), end the
        worker if a prediction gets stuck (``watch_for_stuck_predictions``), and give the
        memory of large request bodies back once they are freed."""
        give_back_large_blocks()
        self.start_loading()
        watch_for_stuck_predictions(self, timeout)

    def load(self) -> None:
        """Load the model in this thread (once)."""
        with self._lock:
            if self.state is not State.NOT_LOADED:
                return
            self.state = State.LOADING
        self._load()

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            from . import model  # The ML library is imported here, off the startup path.

            loaded = model.load(self.model_dir)
            metadata_file = self.model_dir / METADATA_FILE
            if metadata_file.is_file():
                self.n_features = json.loads(metadata_file.read_text())["n_features"]
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            self.state = State.FAILED
            log.exception("model failed to load from %s", self.model_dir)
        else:
            self._model = loaded
            self._predict = model.predict
            self.state = State.READY
            seconds = time.perf_counter() - started
            log.info("model loaded from %s in %.2f s", self.model_dir, seconds)
        finally:
            self._settled.set()

    def wait_until_settled(self, timeout: float | None) -> bool:
        """Wait for a load under way to succeed or fail; False if none settled in time."""
        return self._settled.wait(timeout)

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self.state is State.LOADING:
            # Another worker answered /ping already: wait for this one's copy of the model.
            self.wait_until_settled(LOADING_WAIT_SECONDS)
        if self._predict is None:
            reason = f": {self.failure}" if self.failure else ""
            raise InvocationError(503, f"model is {self.state.value}{reason}")
        if self.n_features is not None and features.shape[1] != self.n_features:
            raise InvocationError(
                400, f"expected {self.n_features} features per row, got {features.shape[1]}"
            )
        if np.isinf(features).any():
            row = int(np.isinf(features).any(axis=1).argmax())
            raise InvocationError(400, f"features must be finite: row {row + 1} has infinity")
        with self._started_lock:
            prediction = next(self._ids)
            self._started[prediction] = time.monotonic()
        try:
            return self._predict(self._model, features)
        except ValueError as exc:  # What ML libraries raise for input they cannot score.
            raise InvocationError(400, f"cannot predict on this input: {exc}") from None
        finally:
            with self._started_lock:
                del self._started[prediction]

    def longest_prediction(self) -> float:
        """Seconds the oldest prediction still running has taken; 0.0 when none is running."""
        with self._started_lock:
            started = min(self._started.values(), default=None)
        return 0.0 if started is None else time.monotonic() - started

    def invoke(
        self,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        attributes: str | None = None,
    ) -> Answer:
        """The answer to one ``POST /invocations``; ``attributes`` is the custom attributes."""
        try:
            request_type = codec.media_type(content_type) or codec.CSV
            response_type = codec.negotiate(
                accept, request_type if request_type in codec.ENCODERS else codec.JSON
            )
            features = codec.decode(body, content_type)
        except codec.CodecError as exc:
            raise InvocationError(exc.status, str(exc)) from None
        current = Attributes(request=attributes)
        token = _attributes.set(current)
        try:
            predictions = self.predict(features)
        finally:
            _attributes.reset(token)
        return Answer(codec.encode(predictions, response_type), response_type, current.response)


def stop_worker(seconds: float) -> None:
    """End this worker process at once: the server's supervisor starts a new one."""
    log.critical(
        "a prediction has been running for %.0f s: stopping this worker, which the server "
        "replaces (requests still in flight on it are cut)",
        seconds,
    )
    logging.shutdown()
    os._exit(STUCK_EXIT_CODE)  # A graceful exit would wait forever for the stuck thread.


def watch_for_stuck_predictions(
    service: ModelService,
    timeout: float,
    on_stuck: Callable[[float], None] = stop_worker,
    interval: float = 1.0,
) -> threading.Thread:
    """Call ``on_stuck(seconds)`` once a prediction has run ``STUCK_AFTER_TIMEOUTS`` times
    ``timeout``; checked every ``interval`` s by a daemon thread, which then ends."""

    def watch() -> None:
        limit = STUCK_AFTER_TIMEOUTS * timeout
        while (seconds := service.longest_prediction()) <= limit:
            time.sleep(interval)
        on_stuck(seconds)

    watchdog = threading.Thread(target=watch, name="prediction-watchdog", daemon=True)
    watchdog.start()
    return watchdog
