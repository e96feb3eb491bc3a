"""The training runner: what ``python -m <package> train`` does.

Reads the hyperparameters and the ``training`` channel SageMaker lays out under
``/opt/ml/input``, calls ``model.train`` and ``model.save``, and writes ``/opt/ml/model``.
On any error it writes the reason to ``/opt/ml/output/failure`` (SageMaker shows its first
1,024 characters as the job's FailureReason) and exits non-zero.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType

import numpy as np

from . import hyperparameters, model
from .environment import (
    METADATA_FILE,
    Paths,
    configure_logging,
    read_json,
    training_environment,
)

log = logging.getLogger(__name__)

TRAINING_CHANNEL = "training"


class TrainingError(RuntimeError):
    """A problem with the job's inputs, reported as the failure reason."""


class TrainingStopped(BaseException):
    """SageMaker asked the job to stop (SIGTERM)."""


def log_metric(name: str, value: float) -> None:
    """One ``name=value`` line per metric, for a MetricDefinitions regex."""
    print(f"{name}={value:.6f}", flush=True)


def _channel_files(paths: Paths, channel: str) -> list[Path]:
    directory = paths.channel(channel)
    if not directory.is_dir():
        present = (
            sorted(p.name for p in paths.input_data.iterdir()) if paths.input_data.is_dir() else []
        )
        raise TrainingError(
            f"channel {channel!r} is missing: no directory {directory}"
            f" (channels present: {', '.join(present) or 'none'})"
        )
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise TrainingError(f"channel {channel!r} is empty: no files in {directory}")
    return files


def read_csv_channel(paths: Paths, channel: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels from every CSV file of a channel; the label is the first column."""
    labels: list[str] = []
    rows: list[list[float]] = []
    width: int | None = None
    for file in _channel_files(paths, channel):
        with file.open(newline="", encoding="utf-8") as handle:
            for line_number, record in enumerate(csv.reader(handle), start=1):
                if not record or not "".join(record).strip():
                    continue
                where = f"{file.name} line {line_number}"
                if len(record) < 2:
                    raise TrainingError(f"{where}: expected a label and features, got {record!r}")
                if width is None:
                    width = len(record)
                elif len(record) != width:
                    raise TrainingError(
                        f"{where}: expected {width} columns like the first line, got {len(record)}"
                    )
                try:
                    rows.append([float(value) for value in record[1:]])
                except ValueError as exc:
                    raise TrainingError(f"{where}: a feature is not a number ({exc})") from None
                labels.append(record[0].strip())
    if not rows:
        raise TrainingError(f"channel {channel!r} has no data rows")
    return np.asarray(rows, dtype=np.float64), _label_array(labels)


def _label_array(labels: list[str]) -> np.ndarray:
    """Numeric labels as numbers (regression, integer classes); anything else as strings."""
    try:
        return np.asarray([float(label) for label in labels])
    except ValueError:
        return np.asarray(labels)


def run(paths: Paths) -> None:
    raw_hps = read_json(paths.hyperparameters, default={})
    if not isinstance(raw_hps, dict):
        raise TrainingError(f"{paths.hyperparameters} must hold a JSON object")
    hp = hyperparameters.load(model.Hyperparameters, raw_hps)
    log.info("hyperparameters: %s", hp)
    # For code that expects AWS's framework images; what the job's environment sets wins.
    for name, value in training_environment(paths, dataclasses.asdict(hp)).items():
        os.environ.setdefault(name, value)
    features, labels = read_csv_channel(paths, TRAINING_CHANNEL)
    log.info("training on %d rows x %d features", *features.shape)
    started = time.perf_counter()
    trained = model.train(features, labels, hp, log_metric)
    log.info("trained in %.2f s", time.perf_counter() - started)
    paths.model.mkdir(parents=True, exist_ok=True)
    model.save(trained, paths.model)
    metadata = {"n_features": int(features.shape[1])}
    (paths.model / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    log.info("model written to %s", paths.model)


def write_failure(paths: Paths, exc: BaseException) -> None:
    """The reason first (SageMaker keeps 1,024 characters), the traceback after it."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    paths.failure.parent.mkdir(parents=True, exist_ok=True)
    paths.failure.write_text(f"{reason}\n\n{details}", encoding="utf-8")


def _stop(signum: int, frame: FrameType | None) -> None:
    raise TrainingStopped(f"stopped by signal {signal.Signals(signum).name}")


def main() -> int:
    configure_logging()
    paths = Paths.from_env()
    signal.signal(signal.SIGTERM, _stop)
    try:
        run(paths)
    except (Exception, TrainingStopped, KeyboardInterrupt) as exc:
        log.error("training failed: %s", exc, exc_info=not isinstance(exc, TrainingError))
        write_failure(paths, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
