"""Where SageMaker puts things, and the settings it passes through the environment.

Every path derives from ``SAGEMAKER_BASE_DIR`` (default ``/opt/ml``), so the same code runs
in the container and against a local directory laid out the same way (tests, laptops).
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_BASE_DIR = "/opt/ml"
DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_SECONDS = 60
# How long a client may go silent in the middle of a request (its headers or its body)
# before the server drops it: a stalled upload must not hold a worker thread for ever.
# SageMaker's front end forwards a body it already has, so its requests never pause this long.
DEFAULT_READ_TIMEOUT_SECONDS = 20
# The server's own limits (a worker's heartbeat, a proxy's wait for its answer) sit this far
# beyond SAGEMAKER_MODEL_SERVER_TIMEOUT: the app answers a slow prediction itself, first.
BACKSTOP_MARGIN_SECONDS = 10
DEFAULT_MAX_PAYLOAD_MB = 6
# Batch transform accepts MaxPayloadInMB up to 100; 0 means "chunked", which we cap there.
MAX_PAYLOAD_MB_CEILING = 100
# The model server's request log: bare JSON lines (access_log.py), apart from the rest.
REQUEST_LOGGER = f"{__package__}.access_log"
# Written by the training runner beside the model; read by the server to check requests.
METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class Paths:
    """The ``/opt/ml`` layout of the SageMaker container contract."""

    base: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Paths:
        return cls(Path(env.get("SAGEMAKER_BASE_DIR") or DEFAULT_BASE_DIR))

    @property
    def input_config(self) -> Path:
        return self.base / "input" / "config"

    @property
    def hyperparameters(self) -> Path:
        return self.input_config / "hyperparameters.json"

    @property
    def input_data_config(self) -> Path:
        return self.input_config / "inputdataconfig.json"

    @property
    def resource_config(self) -> Path:
        return self.input_config / "resourceconfig.json"

    @property
    def input_data(self) -> Path:
        return self.base / "input" / "data"

    def channel(self, name: str) -> Path:
        return self.input_data / name

    @property
    def model(self) -> Path:
        return self.base / "model"

    @property
    def output(self) -> Path:
        return self.base / "output"

    @property
    def output_data(self) -> Path:
        return self.output / "data"

    @property
    def failure(self) -> Path:
        return self.output / "failure"

    @property
    def checkpoints(self) -> Path:
        return self.base / "checkpoints"


def read_json(path: Path, default: Any) -> Any:
    """The parsed JSON file at ``path``, or ``default`` when there is no such file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise ValueError(f"{path} is nested too deeply to read") from None


# The most of a value a message or log line shows: a 10 MB hyperparameter once made a 30 MB
# log and a 20 MB failure file.
SHOWN_CHARACTERS = 200


def shown(value: Any, limit: int = SHOWN_CHARACTERS) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters with the full length said."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply to show>"
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def cpu_count() -> int:
    """CPUs this process may run on (the container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # Not Linux.
        return os.cpu_count() or 1


def gpu_count() -> int:
    """NVIDIA GPUs mapped into the container (``/dev/nvidia0``...), as on GPU instances."""
    return len(list(Path("/dev").glob("nvidia[0-9]*")))


def training_environment(paths: Paths, hyperparameters: Mapping[str, Any]) -> dict[str, str]:
    """The ``SM_*`` variables AWS's framework images define, from the job's config files.

    Code written for those images reads them (``SM_MODEL_DIR``, ``SM_CHANNEL_TRAINING``...):
    the training runner exports them before it calls the model.
    """
    resource = read_json(paths.resource_config, default={})
    data_config = read_json(paths.input_data_config, default={})
    channels = sorted(data_config) or (
        sorted(p.name for p in paths.input_data.iterdir() if p.is_dir())
        if paths.input_data.is_dir()
        else []
    )
    hosts = sorted(resource.get("hosts") or ["algo-1"])
    variables = {
        "SM_MODEL_DIR": str(paths.model),
        "SM_INPUT_DIR": str(paths.base / "input"),
        "SM_INPUT_CONFIG_DIR": str(paths.input_config),
        "SM_OUTPUT_DIR": str(paths.output),
        "SM_OUTPUT_DATA_DIR": str(paths.output_data),
        "SM_CHANNELS": json.dumps(channels),
        "SM_HPS": json.dumps(dict(hyperparameters)),
        "SM_HOSTS": json.dumps(hosts),
        "SM_CURRENT_HOST": resource.get("current_host") or hosts[0],
        "SM_CURRENT_INSTANCE_TYPE": resource.get("current_instance_type", "local"),
        "SM_NETWORK_INTERFACE_NAME": resource.get("network_interface_name", "eth0"),
        "SM_NUM_GPUS": str(gpu_count()),
        "SM_NUM_CPUS": str(cpu_count()),
        "SM_RESOURCE_CONFIG": json.dumps(resource),
        "SM_INPUT_DATA_CONFIG": json.dumps(data_config),
    }
    for channel in channels:
        variables[f"SM_CHANNEL_{channel.upper()}"] = str(paths.channel(channel))
    for name, value in hyperparameters.items():
        variables[f"SM_HP_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return variables


def _int_from_env(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


BATCH_STRATEGIES = ("MULTI_RECORD", "SINGLE_RECORD")


def _batch_strategy(env: Mapping[str, str]) -> str:
    raw = env.get("SAGEMAKER_BATCH_STRATEGY", "").strip().upper() or BATCH_STRATEGIES[0]
    if raw not in BATCH_STRATEGIES:
        raise ValueError(
            f"SAGEMAKER_BATCH_STRATEGY must be MULTI_RECORD or SINGLE_RECORD: {raw!r}"
        )
    return raw


@dataclass(frozen=True)
class ServerSettings:
    """Model server settings, from the variables SageMaker and its toolkits define."""

    port: int = DEFAULT_PORT
    workers: int = 1
    timeout: int = DEFAULT_TIMEOUT_SECONDS
    read_timeout: int = DEFAULT_READ_TIMEOUT_SECONDS
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_MB * 1024 * 1024
    # Batch transform: what GET /execution-parameters reports (SageMaker then splits and
    # sends the input accordingly). None: one transform per worker.
    max_concurrent_transforms: int | None = None
    batch_strategy: str = BATCH_STRATEGIES[0]
    max_payload_mb: int = DEFAULT_MAX_PAYLOAD_MB

    @property
    def backstop_timeout(self) -> int:
        """How long the server's processes wait for a request's answer before they give up
        on a worker: longer than any prediction may take, so no layer cuts one short."""
        return self.timeout + BACKSTOP_MARGIN_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServerSettings:
        payload_mb = _int_from_env(
            env, "SAGEMAKER_MAX_PAYLOAD_IN_MB", DEFAULT_MAX_PAYLOAD_MB, minimum=0
        )
        workers = _int_from_env(env, "SAGEMAKER_MODEL_SERVER_WORKERS", cpu_count(), minimum=1)
        return cls(
            port=_int_from_env(env, "SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT, minimum=1),
            workers=workers,
            timeout=_int_from_env(
                env, "SAGEMAKER_MODEL_SERVER_TIMEOUT", DEFAULT_TIMEOUT_SECONDS, minimum=1
            ),
            read_timeout=_int_from_env(
                env, "MODEL_SERVER_READ_TIMEOUT", DEFAULT_READ_TIMEOUT_SECONDS, minimum=1
            ),
            max_payload_bytes=min(payload_mb or MAX_PAYLOAD_MB_CEILING, MAX_PAYLOAD_MB_CEILING)
            * 1024
            * 1024,
            max_concurrent_transforms=_int_from_env(
                env, "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", workers, minimum=1
            ),
            batch_strategy=_batch_strategy(env),
            max_payload_mb=payload_mb,
        )

    def execution_parameters(self) -> dict[str, Any]:
        """The answer to ``GET /execution-parameters`` (batch transform asks it first)."""
        return {
            "MaxConcurrentTransforms": self.max_concurrent_transforms or self.workers,
            "BatchStrategy": self.batch_strategy,
            "MaxPayloadInMB": self.max_payload_mb,
        }


def bind_port(port: int) -> socket.socket:
    """A TCP socket bound to ``port`` on every interface, as the server binds it.

    A port it cannot have (another server holds it, or it needs root) ends the process with
    a message naming the port and how to pick another one, not with a traceback.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("0.0.0.0", port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            reason = f"port {port} is already in use (another server?)"
        else:
            reason = f"cannot listen on port {port}: {error.strerror}"
        raise SystemExit(
            f"{reason}: stop what holds it, or serve on another port: "
            "`make serve-local PORT=9000`, or SAGEMAKER_BIND_TO_PORT=9000 in the environment"
        ) from None
    return sock


# glibc's mallopt(M_MMAP_THRESHOLD): blocks this large or larger get a mapping of their own.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def give_back_large_blocks() -> bool:
    """Make the memory of large blocks (request bodies, their arrays) go back to the system
    when they are freed; False where the C library is not glibc.

    glibc serves blocks over 128 KiB from mappings of their own, but raises that threshold
    as such blocks are freed (up to 32 MiB): 6 MB request bodies then come from its heap,
    whose freed memory stays with the process. 60 clients that stalled mid-upload left a
    worker 290 MiB larger after they had gone. Setting the threshold fixes it (and stops
    the raising).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def give_back_freed_memory() -> bool:
    """Return the freed memory of glibc's heaps to the system (``malloc_trim``); False where
    the C library is not glibc. What loading a model allocated and freed again (an unpickled
    archive's buffers) would otherwise stay in the master and in every worker it forks."""
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim(0)  # 1 if it gave memory back, 0 if there was none to give
    return True


def threads_per_worker(env: Mapping[str, str] = os.environ) -> int:
    """CPU threads for one server worker's model, so that the workers do not fight."""
    return max(1, cpu_count() // ServerSettings.from_env(env).workers)


# One line per record on stderr (unbuffered): CloudWatch shows what the process prints.
# The model server's request log (``access_log.py``) is one JSON object per line, alone.
# A dictConfig, so that server workers started afresh (not forked) can apply it too.
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"},
        "bare": {"format": "%(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "line",
            "stream": "ext://sys.stderr",
        },
        "requests": {
            "class": "logging.StreamHandler",
            "formatter": "bare",
            "stream": "ext://sys.stderr",
        },
    },
    "loggers": {
        REQUEST_LOGGER: {"handlers": ["requests"], "propagate": False},
    },
    "root": {"level": "INFO", "handlers": ["stderr"]},
}


def log_level(env: Mapping[str, str] = os.environ) -> str:
    """The level ``SAGEMAKER_CONTAINER_LOG_LEVEL`` names (``DEBUG``, ``20``...), else INFO."""
    level = env.get("SAGEMAKER_CONTAINER_LOG_LEVEL", "").strip().upper() or "INFO"
    if level.isdigit():
        level = logging.getLevelName(int(level))
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"SAGEMAKER_CONTAINER_LOG_LEVEL is not a log level: {level!r}")
    return level


def log_config(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """``LOG_CONFIG`` at ``log_level``: what uvicorn applies in each worker it spawns."""
    return {**LOG_CONFIG, "root": {**LOG_CONFIG["root"], "level": log_level(env)}}


def configure_logging() -> None:
    """LOG_CONFIG's format on the root logger, replacing only the root's own handlers.

    Not ``dictConfig``: that closes every handler the process ever made, libraries' too
    (absl's, which TensorFlow imports, writes to the stderr it found at import).
    """
    line = LOG_CONFIG["formatters"]["line"]["format"]
    logging.basicConfig(format=line, level=log_level(), stream=sys.stderr, force=True)
    requests = logging.getLogger(REQUEST_LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_CONFIG["formatters"]["bare"]["format"]))
    requests.handlers = [handler]
    requests.propagate = False
