"""Generating again over a project (``cookiecutter -f``) loses nothing of the user's.

The post-generation hook once swept every empty folder of the project, ``.git`` and the
virtualenv included: a repository without commits lost its objects and refs.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

from .helpers import STRICT, TEMPLATE, run

pre_existing = pytest.mark.parametrize("commits", [False, True], ids=["no-commit", "committed"])


def generate(output: Path, config: Path) -> Path:
    project = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        overwrite_if_exists=True,
        output_dir=str(output),
        config_file=str(config),
    )
    return Path(project)


def snapshot(root: Path, names: list[str]) -> dict[str, str]:
    """Every file, folder and link under ``names``: kind, mode and content digest."""
    found: dict[str, str] = {}
    for name in names:
        top = root / name
        if not top.exists() and not top.is_symlink():
            found[name] = "missing"
            continue
        for path in [top, *sorted(top.rglob("*"))] if top.is_dir() else [top]:
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                kind = f"link -> {path.readlink()}"
            elif stat.S_ISDIR(mode):
                kind = "dir"
            else:
                kind = hashlib.sha256(path.read_bytes()).hexdigest()
            found[path.relative_to(root).as_posix()] = f"{oct(mode)} {kind}"
    return found


def git(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], project)


@pre_existing
def test_regenerating_keeps_git_venv_and_user_files(tmp_path: Path, commits: bool) -> None:
    if shutil.which("git") is None:
        if STRICT:
            pytest.fail("git is not installed")
        pytest.skip("git is not installed")
    config = tmp_path / "cookiecutterrc.yaml"
    config.write_text(
        f"cookiecutters_dir: {tmp_path / 'cookiecutters'}\nreplay_dir: {tmp_path / 'replay'}\n"
    )
    project = generate(tmp_path / "out", config)
    assert git(project, "init", "-q").returncode == 0
    if commits:
        assert git(project, "add", "-A").returncode == 0
        assert git(project, "commit", "-q", "-m", "generated").returncode == 0
    venv = run([sys.executable, "-m", "venv", "--without-pip", str(project / ".venv")])
    assert venv.returncode == 0, venv.stderr
    (project / ".venv" / "include" / "python3.12").mkdir(parents=True, exist_ok=True)
    (project / "notes.txt").write_text("mine, not the template's\n")
    (project / "data" / "raw").mkdir()  # an empty folder of the user's
    (project / "wheels").mkdir(exist_ok=True)  # an optional folder the user made
    (project / "wheels" / "mine.whl").write_bytes(b"PK\x03\x04")
    kept = [".git", ".venv", "notes.txt", "data/raw", "wheels/mine.whl"]
    before = snapshot(project, kept)
    assert any(p.startswith(".git/objects/") for p in before)
    assert ".git/refs/heads" in before

    again = generate(tmp_path / "out", config)

    assert again == project
    assert snapshot(project, kept) == before
    status = git(project, "status", "--porcelain")
    assert status.returncode == 0, status.stderr  # still a repository
    if commits:  # the template's own files came back unchanged
        assert status.stdout.splitlines() == ["?? notes.txt", "?? wheels/"], status.stdout
