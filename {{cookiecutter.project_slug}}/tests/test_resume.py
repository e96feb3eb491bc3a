"""A job stopped by SIGTERM and started again ends with the model of a job never stopped."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package_name }} import model, training
from {{ cookiecutter.package_name }}.checkpoints import Checkpoints
from {{ cookiecutter.package_name }}.environment import METADATA_FILE, Paths

from .support import layout
from .test_model import RESUME_HYPERPARAMETERS, RESUME_TOLERANCE, fingerprint


@pytest.fixture(autouse=True)
def _restore_sigterm() -> Iterator[None]:
    """training.main installs its SIGTERM handler in this process: put the old one back."""
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def stop_after_checkpoint(monkeypatch: pytest.MonkeyPatch, count: int) -> list[int]:
    """SIGTERM to this process right after the ``count``-th checkpoint is written."""
    written: list[int] = []
    save = Checkpoints.save

    def save_then_stop(self: Checkpoints, step: int, write: Callable[[Path], None]) -> Path:
        path = save(self, step, write)
        written.append(step)
        if len(written) == count:
            os.kill(os.getpid(), signal.SIGTERM)
        return path

    monkeypatch.setattr(Checkpoints, "save", save_then_stop)
    return written


def train_in_process(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(paths.base))
    return training.main()


def test_a_stopped_job_resumes_to_the_same_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    whole = layout(tmp_path / "whole", RESUME_HYPERPARAMETERS)
    assert train_in_process(whole, monkeypatch) == 0

    stopped = layout(tmp_path / "stopped", RESUME_HYPERPARAMETERS)
    with monkeypatch.context() as patch:
        written = stop_after_checkpoint(patch, count=2)
        assert train_in_process(stopped, patch) == 1
    reason = stopped.failure.read_text().splitlines()[0]
    assert reason.startswith("TrainingStopped: stopped by signal SIGTERM after step")
    assert not (stopped.model / METADATA_FILE).exists()
    # The stop itself wrote one more checkpoint, after the step it came in.
    assert len(written) == 3
    assert written == sorted(written)
    last = written[-1]

    stopped.failure.unlink()
    capfd.readouterr()
    assert train_in_process(stopped, monkeypatch) == 0
    assert f"resuming from the checkpoint for step {last}" in capfd.readouterr().err
    np.testing.assert_allclose(
        fingerprint(model.load(stopped.model)),
        fingerprint(model.load(whole.model)),
        rtol=0,
        atol=RESUME_TOLERANCE,
    )


def test_an_incomplete_newest_checkpoint_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    paths = layout(tmp_path / "job", RESUME_HYPERPARAMETERS)
    with monkeypatch.context() as patch:
        written = stop_after_checkpoint(patch, count=1)
        assert train_in_process(paths, patch) == 1
    newest = Checkpoints(paths.checkpoints)
    steps = newest.steps()
    assert steps == sorted(written, reverse=True)
    # As if S3 handed back part of the newest checkpoint: one file cut short.
    victim = max(
        (p for p in newest.path(steps[0]).iterdir() if p.name != "checkpoint.json"),
        key=lambda p: p.stat().st_size,
    )
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    paths.failure.unlink()
    capfd.readouterr()
    assert train_in_process(paths, monkeypatch) == 0
    log = capfd.readouterr().err
    assert f"checkpoint for step {steps[0]} is incomplete" in log
    assert f"resuming from the checkpoint for step {steps[1]}" in log


def test_checkpoints_go_where_checkpointconfig_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = layout(tmp_path / "job", RESUME_HYPERPARAMETERS)
    elsewhere = tmp_path / "spot-checkpoints"
    (paths.input_config / "checkpointconfig.json").write_text(
        json.dumps({"LocalPath": str(elsewhere), "S3Uri": "s3://bucket/checkpoints"})
    )
    with monkeypatch.context() as patch:
        stop_after_checkpoint(patch, count=1)
        assert train_in_process(paths, patch) == 1
    assert Checkpoints(elsewhere).steps()
    assert not paths.checkpoints.exists()
