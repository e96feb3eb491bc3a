"""The machines of a training job, from ``resourceconfig.json``.

SageMaker names the instances ``algo-1``, ``algo-2``... and gives every one the sorted list
and its own name. The first sorted host coordinates: it is rank 0, it runs the rendezvous
(PyTorch's ``MASTER_ADDR``, XGBoost's tracker) and it alone writes the model. Host names can
take a while to resolve when a job starts, so resolution is retried.

``LOCAL_HOST_ADDRESSES`` (a JSON object, host name to address) is read before DNS: it lets
several "hosts" run on one machine, each a process with its own ``SAGEMAKER_BASE_DIR``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from .environment import Paths, read_json

log = logging.getLogger(__name__)

DEFAULT_PORT = 29500  # PyTorch's usual rendezvous port; MASTER_PORT overrides it.
RESOLVE_ATTEMPTS = 60
RESOLVE_DELAY_SECONDS = 1.0


class ClusterError(RuntimeError):
    """A host that does not resolve, or a resourceconfig.json that makes no sense."""


@dataclass(frozen=True)
class Cluster:
    hosts: tuple[str, ...] = ("algo-1",)
    current_host: str = "algo-1"
    network_interface_name: str = "eth0"
    port: int = DEFAULT_PORT
    addresses: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, paths: Paths, env: Mapping[str, str] = os.environ) -> Cluster:
        config = read_json(paths.resource_config, default={})
        hosts = tuple(sorted(config.get("hosts") or ["algo-1"]))
        current = config.get("current_host") or hosts[0]
        if current not in hosts:
            raise ClusterError(f"current_host {current!r} is not among the hosts {list(hosts)}")
        try:
            addresses = json.loads(env.get("LOCAL_HOST_ADDRESSES") or "{}")
            port = int(env.get("MASTER_PORT") or DEFAULT_PORT)
        except ValueError as exc:
            raise ClusterError(f"LOCAL_HOST_ADDRESSES or MASTER_PORT: {exc}") from None
        return cls(
            hosts=hosts,
            current_host=current,
            network_interface_name=config.get("network_interface_name") or "eth0",
            port=port,
            addresses=addresses,
        )

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def master(self) -> str:
        return self.hosts[0]

    @property
    def is_master(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def address(
        self,
        host: str,
        attempts: int = RESOLVE_ATTEMPTS,
        delay: float = RESOLVE_DELAY_SECONDS,
    ) -> str:
        """The IPv4 address of ``host``, retrying while its name does not resolve yet."""
        if host in self.addresses:
            return self.addresses[host]
        attempt = 1
        while True:
            try:
                return str(socket.getaddrinfo(host, None, socket.AF_INET)[0][4][0])
            except socket.gaierror as exc:
                if attempt >= attempts:
                    raise ClusterError(
                        f"host {host!r} does not resolve after {attempts} attempts: {exc}"
                    ) from None
                log.info("host %s does not resolve yet (%s); retrying", host, exc)
                attempt += 1
                time.sleep(delay)
