"""Shared fixtures: a SageMaker-shaped directory in tmp, and a model trained into it once."""

from __future__ import annotations

from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import training
from {{ cookiecutter.package_name }}.environment import Paths
from {{ cookiecutter.package_name }}.inference import ModelService

from .support import layout
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
