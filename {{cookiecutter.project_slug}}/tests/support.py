"""Helpers for the tests: a SageMaker-shaped directory, free ports, HTTP without extra deps."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package_name }}.checkpoints import Checkpoints
from {{ cookiecutter.package_name }}.environment import Paths

PROJECT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = PROJECT / "data" / "iris.csv"
SAMPLE_REQUEST = PROJECT / "data" / "sample-request.csv"
N_FEATURES = len(SAMPLE_REQUEST.read_text().splitlines()[0].split(","))
# The sample as the model sees it: the first column, and the features.
SAMPLE_LABELS = np.loadtxt(SAMPLE_DATA, delimiter=",", usecols=0, dtype=str)
SAMPLE_FEATURES = np.loadtxt(SAMPLE_DATA, delimiter=",", usecols=range(1, N_FEATURES + 1))


def layout(base: Path, hyperparameters: dict[str, str] | None = None) -> Paths:
    """A directory laid out like /opt/ml for a training job on the sample data."""
    paths = Paths(base)
    paths.input_config.mkdir(parents=True)
    paths.hyperparameters.write_text(json.dumps(hyperparameters or {}))
    paths.channel("training").mkdir(parents=True)
    shutil.copy(SAMPLE_DATA, paths.channel("training"))
    return paths


def recorded_checkpoints(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The step of every checkpoint written from now on."""
    written: list[int] = []
    save = Checkpoints.save

    def recording(self: Checkpoints, step: int, write: Callable[[Path], None]) -> Path:
        written.append(step)
        return save(self, step, write)

    monkeypatch.setattr(Checkpoints, "save", recording)
    return written


def start_hosts(
    base: Path,
    hyperparameters: dict[str, str],
    hosts: int = 2,
    addresses: dict[str, str] | None = None,
    stdout: int | None = subprocess.PIPE,
) -> list[tuple[Paths, subprocess.Popen[str]]]:
    """One training job on ``hosts`` machines, each a process with its own /opt/ml.

    The host names map to the loopback address (``LOCAL_HOST_ADDRESSES``), as SageMaker's
    DNS maps them to instances, unless ``addresses`` says otherwise; the interface is ``lo``.
    One address for all: LightGBM finds its rank among the machines by its own addresses,
    and 127.0.0.1 is the one loopback address an interface lists. Returns each host's paths
    and running process (stderr piped; stdout too unless ``stdout`` says otherwise),
    ``algo-1`` first.
    """
    names = [f"algo-{i}" for i in range(1, hosts + 1)]
    if addresses is None:
        addresses = dict.fromkeys(names, "127.0.0.1")
    port = free_port_range(hosts + 2)  # A rendezvous port, and what frameworks add to it.
    started = []
    for name in names:
        paths = layout(base / name, hyperparameters)
        paths.resource_config.write_text(
            json.dumps({"current_host": name, "hosts": names, "network_interface_name": "lo"})
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SAGEMAKER_BASE_DIR": str(paths.base),
            "LOCAL_HOST_ADDRESSES": json.dumps(addresses),
            "MASTER_PORT": str(port),
        }
        command = [sys.executable, "-m", "{{ cookiecutter.package_name }}", "train"]
        process = subprocess.Popen(
            command, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True
        )
        started.append((paths, process))
    return started


def run_hosts(
    base: Path,
    hyperparameters: dict[str, str],
    hosts: int = 2,
    timeout: float = 300,
    addresses: dict[str, str] | None = None,
) -> list[tuple[Paths, subprocess.CompletedProcess[str]]]:
    """``start_hosts``, then each host's paths and finished process, ``algo-1`` first."""
    started = start_hosts(base, hyperparameters, hosts, addresses)
    finished = []
    for paths, process in started:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for _, other in started:
                other.kill()
            raise
        finished.append(
            (paths, subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
        )
    return finished


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive ports that are all free now."""
    while True:
        first = free_port()
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return first


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) for one request; HTTP errors are answers, not exceptions.

    Header names are lowercased.
    """
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, lower(error.headers.items()), error.read()


def lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}
