"""How this model trains on several hosts: LightGBM's network, and a side channel to agree.

With several hosts (``job.cluster``), every host boosts on its share of the rows
(``job.shard``) with LightGBM's data-parallel tree learner (``tree_learner="data"``), which
sums the histograms over LightGBM's own network (``network``): the ``machines`` list holds
each host's address and port ``job.cluster.port + rank``, and LightGBM finds its own rank in
it from its local addresses and ``local_listen_port`` (which is why each host listens on a
port of its own: several "hosts" can then share one machine).

LightGBM's network offers Python no collective, so the hosts agree through a small side
channel of their own (``Hosts``, on port ``job.cluster.port + hosts``) on what must be the
same everywhere:

- ``shared_classes``: the class names, the union of every host's (sharded rows differ);
- ``first_hosts``: a value read on the first host only (the checkpoint to resume from);
- ``agree_to_stop``: every iteration, whether any host was asked to stop (SIGTERM), so that
  they all stop after the same iteration.

On a single host ``Hosts`` connects nothing and ``network`` adds no parameter: ``model.py``
reads the same either way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

import numpy as np

from .cluster import Cluster
from .job import Job

log = logging.getLogger(__name__)

CONNECT_SECONDS = 300  # How long a host waits for the first host's side channel.


class Hosts:
    """The hosts' side channel: every host sends a JSON value, every host gets them all.

    The first host listens on ``cluster.port + hosts`` and relays; LightGBM's network
    (on ``cluster.port + rank``) has no Python API for this. On a single host: no one to
    talk to, every value is this host's own.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.rank = cluster.rank
        self.peers: list[Connection] = []
        if not cluster.distributed:
            return
        address = (cluster.address(cluster.master), cluster.port + cluster.size)
        if cluster.is_master:
            with Listener(address) as listener:
                self.peers = [listener.accept() for _ in range(cluster.size - 1)]
            return
        deadline = time.monotonic() + CONNECT_SECONDS
        while True:  # The first host may not be listening yet.
            try:
                self.peers = [Client(address)]
                return
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def gather(self, value: Any) -> list[Any]:
        """Every host's ``value``, by rank (JSON values: a tuple comes back a list)."""
        if self.rank != 0:
            self.peers[0].send_bytes(json.dumps([self.rank, value]).encode())
            return json.loads(self.peers[0].recv_bytes())
        values = [value] * (len(self.peers) + 1)
        for peer in self.peers:
            rank, sent = json.loads(peer.recv_bytes())
            values[rank] = sent
        for peer in self.peers:
            peer.send_bytes(json.dumps(values).encode())
        return values

    def shared_classes(self, classes: np.ndarray) -> np.ndarray:
        """The class names of every host (each shares its own ``classes``), sorted."""
        return np.unique(np.concatenate([classes, *self.gather(classes.tolist())]))

    def first_hosts(self, value: Any) -> Any:
        """The first host's ``value``, for every host (the others' is ignored)."""
        return self.gather(value if self.rank == 0 else None)[0]

    def agree_to_stop(self, job: Job) -> bool:
        """This host's stop flag, or in a distributed job whether any host was asked to stop."""
        return any(self.gather(job.stop.is_set()))

    def close(self) -> None:
        for peer in self.peers:
            peer.close()


@contextlib.contextmanager
def hosts(job: Job) -> Iterator[Hosts]:
    """The side channel between the job's hosts, open while training."""
    channel = Hosts(job.cluster)
    try:
        yield channel
    finally:
        channel.close()


def network(job: Job) -> dict[str, Any]:
    """LightGBM's parameters for data-parallel training across the job's hosts (or none)."""
    cluster = job.cluster
    if not cluster.distributed:
        return {}
    machines = [
        f"{cluster.address(host)}:{cluster.port + rank}" for rank, host in enumerate(cluster.hosts)
    ]
    log.info(
        "LightGBM network: rank %d of %d machines (%s), listening on port %d",
        cluster.rank,
        cluster.size,
        ",".join(machines),
        cluster.port + cluster.rank,
    )
    return {
        "tree_learner": "data",
        "machines": ",".join(machines),
        "num_machines": cluster.size,
        "local_listen_port": cluster.port + cluster.rank,
        "pre_partition": True,  # Each host has its own rows already (job.shard).
    }
