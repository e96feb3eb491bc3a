"""Shared fixtures: a SageMaker-shaped directory in tmp, a model trained into it once, and
the real server serving it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import packaging, training
from {{ cookiecutter.package_name }}.environment import Paths
from {{ cookiecutter.package_name }}.inference import ModelService

from .support import Server, healthy_server, layout
from .test_model import QUICK_HYPERPARAMETERS


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """A fresh training job directory, with SAGEMAKER_BASE_DIR pointing at it."""
    paths = layout(tmp_path / "opt_ml")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(paths.base))
    return paths


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """One training job on the sample data, run once for the whole session."""
    paths = layout(tmp_path_factory.mktemp("trained"), QUICK_HYPERPARAMETERS)
    training.run(paths)
    return paths


@pytest.fixture(scope="session")
def service(trained: Paths) -> ModelService:
    service = ModelService(trained.model)
    service.load()
    assert service.ready, service.failure
    return service


@pytest.fixture(scope="module")
def serving_dir(trained: Paths, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model as SageMaker hands it to an endpoint: model.tar.gz extracted into model/."""
    root = tmp_path_factory.mktemp("endpoint")
    archive = root / "model.tar.gz"
    packaging.create(trained.model, archive)
    packaging.extract(archive, root / "opt_ml" / "model")
    return root / "opt_ml"


@pytest.fixture(scope="module")
def server(serving_dir: Path) -> Iterator[Server]:
    """The server, started once per test module (two workers)."""
    with healthy_server(serving_dir) as server:
        yield server
