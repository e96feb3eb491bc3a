"""Bakes run in pytest-cookies' temp dirs; the template is this repository."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def hook_scripts_in_pytest_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """cookiecutter writes each rendered hook to a temp file it never deletes
    (``NamedTemporaryFile(delete=False)``): one pair per bake. Keep them in pytest's temp
    dir, which pytest prunes, instead of leaving thousands in /tmp."""
    saved = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("tempfile"))
    yield
    tempfile.tempdir = saved
