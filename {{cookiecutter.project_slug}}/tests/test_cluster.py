import json
import socket

import pytest

from {{ cookiecutter.package_name }}.cluster import Cluster, ClusterError
from {{ cookiecutter.package_name }}.environment import Paths


def cluster_of(job: Paths, config: dict, env: dict[str, str] | None = None) -> Cluster:
    job.resource_config.write_text(json.dumps(config))
    return Cluster.from_config(job, env or {})


def test_a_job_without_resourceconfig_is_one_host(job: Paths) -> None:
    cluster = Cluster.from_config(job, {})
    assert (cluster.hosts, cluster.rank, cluster.size) == (("algo-1",), 0, 1)
    assert cluster.is_master
    assert not cluster.distributed


def test_rank_comes_from_the_sorted_hosts(job: Paths) -> None:
    cluster = cluster_of(
        job,
        {
            "current_host": "algo-2",
            "hosts": ["algo-3", "algo-1", "algo-2"],
            "network_interface_name": "eth1",
        },
    )
    assert cluster.hosts == ("algo-1", "algo-2", "algo-3")
    assert (cluster.rank, cluster.size, cluster.master) == (1, 3, "algo-1")
    assert not cluster.is_master
    assert cluster.distributed
    assert cluster.network_interface_name == "eth1"


def test_a_current_host_outside_the_hosts_is_refused(job: Paths) -> None:
    with pytest.raises(ClusterError, match="current_host 'algo-9' is not among"):
        cluster_of(job, {"current_host": "algo-9", "hosts": ["algo-1"]})


def test_port_and_local_addresses_from_the_environment(job: Paths) -> None:
    env = {"MASTER_PORT": "12345", "LOCAL_HOST_ADDRESSES": '{"algo-1": "127.0.0.7"}'}
    cluster = cluster_of(job, {"current_host": "algo-1", "hosts": ["algo-1"]}, env)
    assert cluster.port == 12345
    assert cluster.address("algo-1") == "127.0.0.7"
    assert cluster.address("localhost") == "127.0.0.1"


def test_name_resolution_is_retried(job: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [socket.gaierror(-2, "not yet"), socket.gaierror(-2, "not yet")]
    real = socket.getaddrinfo

    def flaky(host: str, *args: object) -> list:
        if answers:
            raise answers.pop()
        return real("127.0.0.1", *args)

    monkeypatch.setattr(socket, "getaddrinfo", flaky)
    assert Cluster().address("algo-1", attempts=3, delay=0) == "127.0.0.1"
    answers[:] = [socket.gaierror(-2, "never")] * 3
    with pytest.raises(ClusterError, match="'algo-1' does not resolve after 3 attempts"):
        Cluster().address("algo-1", attempts=3, delay=0)
