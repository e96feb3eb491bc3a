"""What the training runner hands ``model.train``: metrics, checkpoints, the cluster, stops.

- ``job.log_metric(name, value)`` prints ``name=value``, one line, unbuffered: SageMaker's
  ``MetricDefinitions`` regexes (``metric_definitions``) turn those lines into CloudWatch
  metrics. Only the names ``model.METRICS`` declares are accepted, so the regexes the deploy
  tooling registers always match what training prints.
- ``job.resume(read)`` gives back the newest whole checkpoint, and ``job.checkpoint(step,
  write, every=N)`` at the end of every step writes one each N steps, and at once when
  SageMaker stops the job (SIGTERM: a spot interruption, StopTrainingJob), after which it
  raises ``TrainingStopped``. A restarted job resumes where the checkpoint left off.
- ``job.cluster``: the hosts, this host's rank, the coordinator (``cluster.py``);
  ``job.shard(data)``: this host's share of replicated training rows.
- ``job.output_data``: extra outputs (plots, reports), uploaded as ``output.tar.gz``.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from .channels import TrainingData
from .checkpoints import Checkpoints
from .cluster import Cluster
from .environment import Paths

log = logging.getLogger(__name__)

T = TypeVar("T")
# A number as Python prints it: 0.9333, 12, -1.5e-07. NaN and inf are left out on purpose.
NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


class TrainingStopped(BaseException):
    """SageMaker asked the job to stop (SIGTERM). A BaseException: no ``except Exception``
    in model code swallows it."""


def metric_regex(name: str) -> str:
    """The MetricDefinitions regex for one ``name=value`` line that ``log_metric`` prints."""
    return rf"(?:^|\s){re.escape(name)}={NUMBER}"


def metric_definitions(metrics: Mapping[str, str]) -> list[dict[str, str]]:
    """``MetricDefinitions`` for CreateTrainingJob and the SageMaker SDK's Estimator."""
    return [{"Name": name, "Regex": metric_regex(name)} for name in metrics]


@dataclass
class MetricLogger:
    """Prints declared metrics, one ``name=value`` line each; remembers the last values."""

    declared: Mapping[str, str]
    last: dict[str, float] = field(default_factory=dict)

    def __call__(self, name: str, value: float) -> None:
        if name not in self.declared:
            raise ValueError(
                f"metric {name!r} is not declared in model.METRICS"
                f" (declared: {', '.join(self.declared)})"
            )
        value = float(value)
        self.last[name] = value
        text = repr(value) if math.isfinite(value) else str(value)
        print(f"{name}={text}", flush=True)


@dataclass
class Job:
    paths: Paths
    cluster: Cluster
    checkpoints: Checkpoints
    log_metric: Callable[[str, float], None]
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def output_data(self) -> Path:
        self.paths.output_data.mkdir(parents=True, exist_ok=True)
        return self.paths.output_data

    def resume(self, read: Callable[[Path], T]) -> tuple[int, T] | None:
        """``(step, state)`` from the newest whole checkpoint, or ``None`` on a fresh start."""
        return self.checkpoints.restore(read)

    def checkpoint(
        self,
        step: int,
        write: Callable[[Path], None],
        *,
        every: int,
        stopping: bool | None = None,
    ) -> None:
        """Call after each step (epoch, round...): saves every ``every`` steps and on a stop.

        ``write(directory)`` saves the training state into ``directory``. Only the first
        host saves: every host's state is the same in data-parallel training. ``stopping``
        overrides this host's own stop flag: distributed code passes the flag all hosts
        agreed on, so that they stop after the same step.
        """
        stopping = self.stop.is_set() if stopping is None else stopping
        due = every > 0 and step % every == 0
        saved = None
        if (due or stopping) and self.cluster.is_master:
            saved = self.checkpoints.save(step, write)
        if stopping:
            where = f"; checkpoint in {saved}" if saved else ""
            raise TrainingStopped(f"stopped by signal SIGTERM after step {step}{where}")

    def shard(self, data: TrainingData) -> TrainingData:
        """This host's share of the training rows when every host holds all of them."""
        if not self.cluster.distributed or not data.replicated:
            return data
        mine = data.train.rows(slice(self.cluster.rank, None, self.cluster.size))
        return replace(data, train=mine, replicated=False)
