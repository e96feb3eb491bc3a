"""The model server's request log: one JSON object per request, one line, on stderr.

Every server stack writes it from the app (the servers' own access logs are off), so there
is exactly one line per request whatever runs in front.
{%- if cookiecutter.server == "nginx-gunicorn-flask" %} nginx writes the same line
itself, ``error`` included, for what it refuses before the app sees it (``serve.py``).
{%- endif %}
CloudWatch Logs Insights reads the fields as they are: ``fields status, latency_ms | filter
path = "/invocations"``.

``/ping`` is logged at DEBUG: SageMaker checks health every few seconds, and those lines
would drown the rest (``SAGEMAKER_CONTAINER_LOG_LEVEL=DEBUG`` shows them); a failed model
load is logged on its own, with the reason. A 4xx line's ``error`` is the reason the client
got (CloudWatch is all the user of an endpoint has); other 5xx answers are logged at ERROR,
with the traceback when an exception caused them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

QUIET_PATHS = frozenset({"/ping"})


@dataclass
class RequestRecord:
    method: str
    path: str
    status: int
    latency_ms: float
    bytes_in: int
    bytes_out: int
    content_type: str
    accept: str
    error: str | None = None


def level_for(path: str, status: int) -> int:
    if path in QUIET_PATHS:
        return logging.DEBUG
    return logging.ERROR if status >= 500 else logging.INFO


def timestamp(now: float) -> str:
    """``2025-01-31T12:00:00.123Z`` for a ``time.time()`` value."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def line(record: RequestRecord, level: int) -> str:
    fields = {
        "time": timestamp(time.time()),
        "level": logging.getLevelName(level),
        **asdict(record),
    }
    if record.error is None:
        del fields["error"]
    return json.dumps(fields)


def write(record: RequestRecord) -> None:
    level = level_for(record.path, record.status)
    if log.isEnabledFor(level):
        log.log(level, line(record, level))


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` value), to 0.01 ms."""
    return round((time.perf_counter() - started) * 1000, 2)
