"""The training runner: what ``python -m <package> train`` does.

1. Reads ``hyperparameters.json`` into the model's typed ``Hyperparameters`` and exports the
   ``SM_*`` variables of AWS's framework images.
2. Reads the channels of ``inputdataconfig.json`` (``channels.py``): ``training``, then
   ``validation`` when the job has it (else ``validation_fraction`` of the training rows),
   and ``test`` when it has it.
3. Calls ``model.train(data, hp, job)``; ``job`` (``job.py``) carries metrics, checkpoints
   and the cluster. SIGTERM sets ``job.stop``: training checkpoints and stops after the
   step it is in (a second SIGTERM stops it at once).
4. Scores the ``test`` channel, then on the first host only writes ``model.save``'s files,
   ``metadata.json`` to ``/opt/ml/model`` and the final metrics to ``output/data``.

On any error it writes the reason to ``/opt/ml/output/failure`` (SageMaker shows its first
1,024 characters as the job's FailureReason; the file holds at most 64 KiB: the reason, then
the end of the traceback) and exits non-zero; if that file cannot be written, stderr says
so in one line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from types import FrameType

import numpy as np

from . import hyperparameters, model
from .channels import ChannelError, Dataset, TrainingData, channels, stratified_split
from .checkpoints import Checkpoints, checkpoint_dir
from .cluster import Cluster, ClusterError
from .environment import (
    METADATA_FILE,
    Paths,
    configure_logging,
    read_json,
    shown,
    training_environment,
)
from .job import Job, MetricLogger, TrainingStopped

log = logging.getLogger(__name__)

TRAINING_CHANNEL = "training"
VALIDATION_CHANNEL = "validation"
TEST_CHANNEL = "test"
METRICS_FILE = "metrics.json"
# Metrics the runner itself reports, beside the model's own (model.METRICS).
RUNNER_METRICS = {"test:accuracy": "Accuracy on the test channel, when the job has one."}
# SageMaker shows the failure file's first 1,024 characters as the job's FailureReason.
REASON_CHARACTERS = 1024
FAILURE_FILE_CHARACTERS = 64 * 1024
# Failures whose message says it all: no traceback in the log.
INPUT_ERRORS = (
    ChannelError,
    ClusterError,
    hyperparameters.HyperparameterError,
)


def read_data(
    paths: Paths, hp: model.Hyperparameters, stop: threading.Event | None = None
) -> tuple[TrainingData, Dataset | None]:
    """The training data (with validation rows) and the test rows, if the job has them."""
    found = channels(paths, stop)
    if TRAINING_CHANNEL not in found:
        raise ChannelError(
            f"channel {TRAINING_CHANNEL!r} is missing: the job has"
            f" {', '.join(sorted(found)) or 'no channels'}"
        )
    training = found[TRAINING_CHANNEL]
    train = training.read()
    validation = found[VALIDATION_CHANNEL].read() if VALIDATION_CHANNEL in found else None
    if validation is None and hp.validation_fraction > 0:
        train, validation = stratified_split(train, hp.validation_fraction, hp.seed, in_place=True)
    test = found[TEST_CHANNEL].read() if TEST_CHANNEL in found else None
    for name, extra in ((VALIDATION_CHANNEL, validation), (TEST_CHANNEL, test)):
        if extra is not None and extra.features.shape[1] != train.features.shape[1]:
            raise ChannelError(
                f"channel {name!r} has {extra.features.shape[1]} features,"
                f" {TRAINING_CHANNEL!r} has {train.features.shape[1]}"
            )
    replicated = training.distribution == "FullyReplicated"
    return TrainingData(train, validation, replicated), test


def all_metrics() -> dict[str, str]:
    """Every metric a job can print: the model's, then the runner's."""
    return {**model.METRICS, **RUNNER_METRICS}


def run(paths: Paths, stop: threading.Event | None = None) -> None:
    raw_hps = read_json(paths.hyperparameters, default={})
    if not isinstance(raw_hps, dict):
        raise hyperparameters.HyperparameterError(
            f"{paths.hyperparameters} must hold a JSON object"
        )
    hp = hyperparameters.load(model.Hyperparameters, raw_hps)
    log.info(
        "hyperparameters: %s",
        ", ".join(f"{name}={shown(value)}" for name, value in dataclasses.asdict(hp).items()),
    )
    # For code that expects AWS's framework images; what the job's environment sets wins.
    for name, value in training_environment(paths, dataclasses.asdict(hp)).items():
        os.environ.setdefault(name, value)
    cluster = Cluster.from_config(paths)
    if cluster.distributed:
        log.info("host %s of %s", cluster.current_host, ", ".join(cluster.hosts))
    stop = stop or threading.Event()
    data, test = read_data(paths, hp, stop)
    validation_rows = len(data.validation) if data.validation is not None else 0
    log.info(
        "training on %d rows x %d features, validating on %d rows",
        *data.train.features.shape,
        validation_rows,
    )
    metrics = MetricLogger(all_metrics())
    job = Job(paths, cluster, Checkpoints(checkpoint_dir(paths)), metrics, stop)
    if job.stop.is_set():
        raise TrainingStopped("stopped by signal SIGTERM before training")
    started = time.perf_counter()
    trained = model.train(data, hp, job)
    log.info("trained in %.2f s", time.perf_counter() - started)
    if test is not None:
        accuracy = float(np.mean(model.predict(trained, test.features) == test.labels))
        metrics("test:accuracy", accuracy)
    if not cluster.is_master:
        log.info("the model is written by the first host, %s", cluster.master)
        return
    paths.model.mkdir(parents=True, exist_ok=True)
    model.save(trained, paths.model)
    metadata = {"n_features": int(data.train.features.shape[1])}
    (paths.model / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    paths.output_data.mkdir(parents=True, exist_ok=True)
    (paths.output_data / METRICS_FILE).write_text(json.dumps(metrics.last, indent=2) + "\n")
    log.info("model written to %s", paths.model)


def failure_reason(exc: BaseException) -> str:
    """``Type: message`` on one line, cut to what SageMaker shows as the FailureReason."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    reason = " ".join(reason.split())
    if len(reason) <= REASON_CHARACTERS:
        return reason
    return reason[: REASON_CHARACTERS - 40] + f"... ({len(reason):,} characters)"


def failure_text(exc: BaseException) -> str:
    """The reason first, then the traceback: its end, the innermost frames, when too long."""
    reason = failure_reason(exc)
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    room = FAILURE_FILE_CHARACTERS - len(reason) - 100
    if len(details) > room:
        details = f"[{len(details) - room:,} characters cut]\n...{details[-room:]}"
    return f"{reason}\n\n{details}"


def write_failure(paths: Paths, exc: BaseException) -> None:
    paths.failure.parent.mkdir(parents=True, exist_ok=True)
    paths.failure.write_text(failure_text(exc), encoding="utf-8")


def stop_on_sigterm(stop: threading.Event) -> None:
    """First SIGTERM: stop after the current step, with a checkpoint. Second: stop now."""

    def handle(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            raise TrainingStopped(f"stopped by signal {name}")
        stop.set()
        log.warning("%s: stopping after the current step, with a checkpoint", name)

    signal.signal(signal.SIGTERM, handle)


def main() -> int:
    configure_logging()
    paths = Paths.from_env()
    stop = threading.Event()
    stop_on_sigterm(stop)
    try:
        run(paths, stop)
    except (Exception, TrainingStopped, KeyboardInterrupt) as exc:
        quiet = isinstance(exc, (*INPUT_ERRORS, TrainingStopped))
        log.error("training failed: %s", failure_reason(exc), exc_info=not quiet)
        try:
            write_failure(paths, exc)
        except OSError as error:
            print(
                f"cannot write the failure file {paths.failure}"
                f" ({error.strerror or error}); the job failed with {failure_reason(exc)}",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
