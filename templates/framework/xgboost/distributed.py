"""How this model trains on several hosts: XGBoost's tracker and collective, and agreements.

With several hosts (``job.cluster``), the first one runs XGBoost's tracker
(``xgboost.tracker.RabitTracker``) on its address and ``job.cluster.port``; every host joins
XGBoost's collective (``xgboost.collective.CommunicatorContext``) with its rank from the
sorted host list (``communicator``). Each host boosts on its share of the rows
(``job.shard``): each round's histograms are summed over the hosts, so every host grows the
same trees. Through the same collective the hosts agree on what must be the same everywhere:

- ``shared_classes``: the class names, the union of every host's (sharded rows differ);
- ``first_hosts``: a value read on the first host only (the checkpoint to resume from);
- ``agree_to_stop``: every round, whether any host was asked to stop (SIGTERM), so that they
  all stop after the same round.

On a single host each of these is a no-op: ``model.py`` reads the same either way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
from xgboost import collective
from xgboost.tracker import RabitTracker

from .job import Job

log = logging.getLogger(__name__)

T = TypeVar("T")


@contextlib.contextmanager
def communicator(job: Job) -> Iterator[None]:
    """XGBoost's collective across the hosts (nothing on a single host).

    The first host runs the tracker, which every host (itself included) reports to; the
    task ids order the ranks as the sorted host list does.
    """
    cluster = job.cluster
    if not cluster.distributed:
        yield
        return
    address = cluster.address(cluster.master)
    tracker = None
    if cluster.is_master:
        tracker = RabitTracker(
            n_workers=cluster.size, host_ip=address, port=cluster.port, sortby="task"
        )
        tracker.start()
    try:
        with collective.CommunicatorContext(
            dmlc_communicator="rabit",
            dmlc_tracker_uri=address,
            dmlc_tracker_port=cluster.port,
            dmlc_task_id=f"{cluster.rank:06d}",
        ):
            log.info(
                "XGBoost collective: rank %d of world size %d, tracker %s:%d",
                collective.get_rank(),
                collective.get_world_size(),
                address,
                cluster.port,
            )
            yield
        if tracker is not None:
            tracker.wait_for()
    finally:
        if tracker is not None:
            tracker.free()


def shared_classes(classes: np.ndarray) -> np.ndarray:
    """The class names of every host (each shares its own ``classes``), sorted."""
    if not collective.is_distributed():
        return classes
    shared = [collective.broadcast(classes, root) for root in range(collective.get_world_size())]
    return np.unique(np.concatenate(shared))


def first_hosts(read: Callable[[], T]) -> T:
    """``read()`` on the first host, sent to every host: they all start from the same."""
    if not collective.is_distributed():
        return read()
    mine = [read()] if collective.get_rank() == 0 else None  # The others' is ignored.
    return collective.broadcast(mine, 0)[0]


def agree_to_stop(job: Job) -> bool:
    """This host's stop flag, or in a distributed job whether any host was asked to stop."""
    stopping = job.stop.is_set()
    if not collective.is_distributed():
        return stopping
    return bool(collective.allreduce(np.array([int(stopping)]), collective.Op.MAX)[0])
