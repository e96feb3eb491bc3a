"""Tidy the generated project: drop folders left empty by optional files, restore run bits."""

from __future__ import annotations

import os
import stat
from pathlib import Path

EXECUTABLES = ("scripts",)


def remove_empty_dirs(root: Path) -> None:
    """Remove folders that optional (empty-named) files left empty, deepest first."""
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()


def make_scripts_executable(root: Path) -> None:
    for folder in EXECUTABLES:
        for script in (root / folder).glob("*"):
            if script.is_file() and script.suffix in {".sh", ".py"}:
                script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def main() -> None:
    root = Path(os.getcwd())
    remove_empty_dirs(root)
    make_scripts_executable(root)


if __name__ == "__main__":
    main()
