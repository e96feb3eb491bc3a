"""Tidy the generated project: drop the folders of optional files left out, set run bits.

It touches only what the template renders: a project generated again over an existing one
(``cookiecutter -f``) keeps its ``.git``, its virtualenv and every file of the user's,
empty folders included.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# Folders that hold nothing but optional files (a Jinja condition in the file name), deepest
# first: left empty when the answers leave those files out.
OPTIONAL_FOLDERS = (".github/workflows", ".github", "wheels")
# The template's scripts, run as ./scripts/NAME.py.
SCRIPTS = ("scripts/benchmark.py", "scripts/sagemaker.py", "scripts/soak.py")


def remove_unrendered_folders(root: Path) -> None:
    """Remove each optional folder that is empty: its files were not rendered."""
    for name in OPTIONAL_FOLDERS:
        folder = root / name
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()


def make_scripts_executable(root: Path) -> None:
    run_bits = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    for name in SCRIPTS:
        script = root / name
        if script.is_file():
            script.chmod(script.stat().st_mode | run_bits)


def main() -> None:
    root = Path(os.getcwd())
    remove_unrendered_folders(root)
    make_scripts_executable(root)


if __name__ == "__main__":
    main()
