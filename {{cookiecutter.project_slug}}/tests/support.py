"""Helpers for the tests: a SageMaker-shaped directory, free ports, HTTP without extra deps."""

from __future__ import annotations

import json
import shutil
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from {{ cookiecutter.package_name }}.environment import Paths

PROJECT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = PROJECT / "data" / "iris.csv"
SAMPLE_REQUEST = PROJECT / "data" / "sample-request.csv"
N_FEATURES = len(SAMPLE_REQUEST.read_text().splitlines()[0].split(","))


def layout(base: Path, hyperparameters: dict[str, str] | None = None) -> Paths:
    """A directory laid out like /opt/ml for a training job on the sample data."""
    paths = Paths(base)
    paths.input_config.mkdir(parents=True)
    paths.hyperparameters.write_text(json.dumps(hyperparameters or {}))
    paths.channel("training").mkdir(parents=True)
    shutil.copy(SAMPLE_DATA, paths.channel("training"))
    return paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
