"""How this model trains on several hosts: the process group, its processes, and agreements.

With several hosts (``job.cluster``), or several GPUs on a host, every training process
joins one ``torch.distributed`` process group (``run``): rank 0 on the first host,
rendezvous there over TCP, gloo on the CPU, NCCL on GPUs, ``network_interface_name`` as the
socket interface. A host with several GPUs runs one process per GPU, as ``torchrun`` would
(``processes_per_host``): this process is the first, the others are spawned, and they end
together. Each process trains a ``DistributedDataParallel`` copy of the network
(``data_parallel``) on its share of the rows (``sampler``): of all of them when the channel
is FullyReplicated, of its host's when it is ShardedByS3Key (``even_batches`` evens out the
batch counts then). Through the process group they agree on what must be the same:

- ``shared_classes``: the class names, the union of every process's (sharded rows differ);
- ``first_process``: a value read by the first process only (the checkpoint to resume from);
- ``add_up``: sums over every process: metrics, the stop flag, the feature scaling.

On a single process each of these is a no-op or the plain thing: ``model.py`` reads the
same either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.join import Join
from torch.multiprocessing.spawn import ProcessContext, ProcessException, start_processes
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

from .environment import configure_logging
from .job import Job, TrainingStopped

log = logging.getLogger(__name__)

T = TypeVar("T")
# After a failure in the main process, how long the other local processes get to end.
WIND_DOWN_SECONDS = 5.0


@dataclass(frozen=True)
class Place:
    """Where one training process stands: its host among the hosts, its slot on the host."""

    host_rank: int = 0
    hosts: int = 1
    local_rank: int = 0
    local_size: int = 1
    master: str = "127.0.0.1"  # The rendezvous: the first host's address...
    port: int = 0  # ...and port.

    @property
    def rank(self) -> int:
        return self.host_rank * self.local_size + self.local_rank

    @property
    def world(self) -> int:
        return self.hosts * self.local_size

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def device(self) -> torch.device:
        return torch.device(f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu")


# What ``run`` calls in each process: ``job`` is None in the spawned ones (they save nothing),
# ``stop`` is the stop flag of the process.
Fit = Callable[[Place, Job | None, threading.Event], T]


def run(fit: Fit[T], job: Job, processes_per_host: int | None) -> T:
    """``fit`` in this process, with one more process per extra GPU, and hosts alike.

    Every process is in the process group while ``fit`` runs. Returns this process's result.
    """
    cluster = job.cluster
    local_size = processes_on_this_host(processes_per_host)
    if cluster.distributed:
        master, port = cluster.address(cluster.master), cluster.port
        # What SageMaker names the instance's network; a job's own setting wins.
        for variable in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"):
            os.environ.setdefault(variable, cluster.network_interface_name)
    else:
        master, port = "127.0.0.1", free_port()  # Only this host's processes meet there.
    places = [
        Place(cluster.rank, cluster.size, local_rank, local_size, master, port)
        for local_rank in range(local_size)
    ]
    if local_size == 1:
        with process_group(places[0]):
            return fit(places[0], job, job.stop)
    # Local process 0 is this one: it keeps the job (checkpoints, stop flag, metrics) and
    # returns the network; the others are spawned, as torchrun would start them.
    others = start_processes(_local_process, args=(fit, places), nprocs=local_size - 1, join=False)
    try:
        with process_group(places[0]):
            trained = fit(places[0], job, job.stop)
    except TrainingStopped:
        _wind_down(others)  # They agreed to stop too, after the same epoch.
        raise
    except BaseException as exc:
        failure = _wind_down(others)
        if failure:  # The root cause: the main process only saw its peer vanish.
            raise RuntimeError(failure) from exc
        raise
    while not others.join():
        pass
    return trained


def processes_on_this_host(requested: int | None) -> int:
    """The ``processes_per_host`` hyperparameter, or one process per GPU (else one)."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested is None:
        return max(gpus, 1)
    if gpus and requested > gpus:
        raise ValueError(
            f"hyperparameter 'processes_per_host' is {requested}, but this host has"
            f" {gpus} GPUs: NCCL runs one process per GPU"
        )
    return requested


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def process_group(place: Place) -> Iterator[None]:
    """This process in the process group, when there are others; it leaves it at the end."""
    target = place.device()
    if not place.distributed:
        yield
        return
    if target.type == "cuda":
        torch.cuda.set_device(target)
    backend = "nccl" if target.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        init_method=f"tcp://{place.master}:{place.port}",
        rank=place.rank,
        world_size=place.world,
    )
    log.info(
        "rank %d of world size %d (host %d of %d, process %d of %d there), %s backend,"
        " rendezvous at %s:%d",
        place.rank,
        place.world,
        place.host_rank + 1,
        place.hosts,
        place.local_rank + 1,
        place.local_size,
        backend,
        place.master,
        place.port,
    )
    try:
        yield
        dist.barrier()  # No process leaves while another still talks to it.
    finally:
        dist.destroy_process_group()


def _local_process(index: int, fit: Fit[Any], places: list[Place]) -> None:
    """A spawned training process (local rank 1, 2...): trains along, saves nothing."""
    configure_logging()
    stop = threading.Event()
    # SageMaker signals the main process only; a signal to the whole group stops this one at
    # the next epoch's agreement instead of killing it mid-collective.
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    place = places[index + 1]
    with contextlib.suppress(TrainingStopped), process_group(place):
        fit(place, None, stop)


def _wind_down(others: ProcessContext) -> str | None:
    """Wait a little for the other local processes to end, then kill those left.

    Returns what a failed one reported (the last line of its traceback first), if one did.
    """
    deadline = time.monotonic() + WIND_DOWN_SECONDS
    failure = None
    try:
        while not others.join(timeout=max(0.0, deadline - time.monotonic()), grace_period=1):
            if time.monotonic() >= deadline:
                break
    except ProcessException as exc:
        lines = str(exc).strip().splitlines()
        failure = f"local training process {exc.error_index + 1} failed: {lines[-1]}\n{exc}"
        log.error("%s", failure)
    for process in others.processes:
        if process.is_alive():
            process.kill()
        process.join()
    return failure


def shared_classes(place: Place, classes: np.ndarray) -> np.ndarray:
    """The class names of every process (each shares its own ``classes``), sorted."""
    if not place.distributed:
        return classes
    every_process: list[Any] = [None] * place.world
    dist.all_gather_object(every_process, classes)
    return np.unique(np.concatenate(every_process))


def first_process(place: Place, read: Callable[[], T]) -> T:
    """``read()`` in the first process, sent to every process: they all start from the same.

    Every host need not have a copy of, say, the checkpoint directory.
    """
    if not place.distributed:
        return read()
    box = [read() if place.rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def add_up(place: Place, *tensors: torch.Tensor) -> None:
    """Sums each tensor, in place, over every process (one all-reduce each)."""
    if place.distributed:
        for tensor in tensors:
            dist.all_reduce(tensor)


def data_parallel(network: nn.Module, place: Place) -> nn.Module:
    """What the processes train: the network, wrapped to sum the gradients across them."""
    if not place.distributed:
        return network
    target = place.device()
    return DistributedDataParallel(network, device_ids=[target] if target.type == "cuda" else None)


def sampler(rows: Dataset[Any], place: Place, sharded: bool, seed: int) -> DistributedSampler:
    """This process's share of the rows, shuffled each epoch (``set_epoch``) from ``seed``.

    Replicated rows: each process takes its share of all of them. Sharded rows (each host
    holds other rows): each process on a host takes its share of that host's.
    """
    return DistributedSampler(
        rows,
        num_replicas=place.local_size if sharded else place.world,
        rank=place.local_rank if sharded else place.rank,
        shuffle=True,
        seed=seed,
    )


def even_batches(
    trainer: nn.Module, place: Place, sharded: bool
) -> contextlib.AbstractContextManager[Any]:
    """Around an epoch's batches: with sharded rows, hosts with fewer batches ``Join`` in."""
    if not place.distributed:
        return contextlib.nullcontext()
    return Join([trainer], enable=sharded)
