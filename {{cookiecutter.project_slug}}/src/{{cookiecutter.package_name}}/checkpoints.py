"""Checkpoints: written atomically, restored from the newest one that is whole.

SageMaker syncs ``/opt/ml/checkpoints`` (or ``checkpointconfig.json``'s ``LocalPath``) to S3
while a job runs, and copies it back when a job starts again: after a spot interruption
(managed spot training) or when you start a job with the same checkpoint S3 URI. A
checkpoint is a directory ``step-000012`` holding whatever the model writes there, plus a
``checkpoint.json`` manifest written last that lists each file and its size. It is built
under a hidden temporary name and renamed into place, so a stop mid-write leaves no
half-checkpoint; a checkpoint copied back incomplete from S3 fails its manifest and the one
before it is used instead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .environment import Paths, read_json

log = logging.getLogger(__name__)

T = TypeVar("T")
MANIFEST = "checkpoint.json"
PREFIX = "step-"
KEEP = 2  # The newest checkpoints kept; older ones are deleted.


def checkpoint_dir(paths: Paths) -> Path:
    """``checkpointconfig.json``'s ``LocalPath`` when the job has one, else the default."""
    config = read_json(paths.input_config / "checkpointconfig.json", default={})
    return Path(config.get("LocalPath") or paths.checkpoints)


@dataclass(frozen=True)
class Checkpoints:
    directory: Path
    keep: int = KEEP

    def save(self, step: int, write: Callable[[Path], None]) -> Path:
        """``write(directory)`` fills a new checkpoint for ``step``; returns where it landed."""
        final = self.directory / f"{PREFIX}{step:09d}"
        temporary = self.directory / f".{final.name}.partial"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        write(temporary)
        files = {
            path.relative_to(temporary).as_posix(): path.stat().st_size
            for path in sorted(temporary.rglob("*"))
            if path.is_file()
        }
        manifest = temporary / MANIFEST
        manifest.write_text(json.dumps({"step": step, "files": files}, indent=2) + "\n")
        for path in [*temporary.rglob("*"), temporary]:
            _fsync(path)
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
        _fsync(self.directory)
        log.info("checkpoint for step %d written to %s", step, final)
        self._prune()
        return final

    def steps(self) -> list[int]:
        """Steps with a checkpoint directory, newest first (whole or not)."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.glob(f"{PREFIX}*"):
            suffix = path.name.removeprefix(PREFIX)
            if path.is_dir() and suffix.isdigit():
                found.append(int(suffix))
        return sorted(found, reverse=True)

    def path(self, step: int) -> Path:
        return self.directory / f"{PREFIX}{step:09d}"

    def is_whole(self, step: int) -> bool:
        """The checkpoint's manifest is there and every file it lists has its size."""
        directory = self.path(step)
        try:
            manifest = json.loads((directory / MANIFEST).read_text())
            return manifest["step"] == step and all(
                (directory / name).stat().st_size == size
                for name, size in manifest["files"].items()
            )
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def restore(self, read: Callable[[Path], T]) -> tuple[int, T] | None:
        """``(step, read(directory))`` for the newest checkpoint that is whole and reads back.

        ``None`` when there is none: the job starts from scratch.
        """
        for step in self.steps():
            if not self.is_whole(step):
                log.warning("checkpoint for step %d is incomplete: skipped", step)
                continue
            try:
                state = read(self.path(step))
            except Exception:
                log.warning("checkpoint for step %d does not load: skipped", step, exc_info=True)
                continue
            log.info("resuming from the checkpoint for step %d", step)
            return step, state
        return None

    def _prune(self) -> None:
        kept = [step for step in self.steps() if self.is_whole(step)][: self.keep]
        for step in self.steps():
            if step not in kept:
                shutil.rmtree(self.path(step), ignore_errors=True)


def _fsync(path: Path) -> None:
    """On disk before the rename that publishes it: a crash leaves old or new, never half."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
