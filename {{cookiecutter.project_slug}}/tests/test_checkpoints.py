import json
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.checkpoints import Checkpoints, checkpoint_dir
from {{ cookiecutter.package_name }}.environment import Paths


def writer(text: str):
    def write(directory: Path) -> None:
        (directory / "state.txt").write_text(text)

    return write


def read(directory: Path) -> str:
    return (directory / "state.txt").read_text()


def test_save_then_restore_the_newest(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path / "ckpt")
    assert checkpoints.restore(read) is None
    checkpoints.save(1, writer("one"))
    checkpoints.save(2, writer("two"))
    assert checkpoints.restore(read) == (2, "two")
    manifest = json.loads((checkpoints.path(2) / "checkpoint.json").read_text())
    assert manifest == {"step": 2, "files": {"state.txt": 3}}


def test_only_the_newest_are_kept(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path, keep=2)
    for step in range(1, 6):
        checkpoints.save(step, writer(str(step)))
    assert checkpoints.steps() == [5, 4]


def test_a_failed_write_leaves_no_checkpoint(tmp_path: Path) -> None:
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(1, writer("one"))

    def broken(directory: Path) -> None:
        (directory / "state.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoints.save(2, broken)
    assert checkpoints.steps() == [1]
    assert checkpoints.restore(read) == (1, "one")


@pytest.mark.parametrize("damage", ["truncate", "drop_manifest", "unreadable"])
def test_a_damaged_newest_checkpoint_falls_back(tmp_path: Path, damage: str) -> None:
    checkpoints = Checkpoints(tmp_path)
    checkpoints.save(1, writer("one"))
    checkpoints.save(2, writer("two"))
    newest = checkpoints.path(2)
    if damage == "truncate":
        (newest / "state.txt").write_text("t")
    elif damage == "drop_manifest":
        (newest / "checkpoint.json").unlink()
    else:
        (newest / "state.txt").write_bytes(b"\xff\xfe\xfd")  # Same size, does not decode.
    assert checkpoints.restore(read) == (1, "one")


def test_the_directory_comes_from_checkpointconfig(job: Paths) -> None:
    assert checkpoint_dir(job) == job.checkpoints
    (job.input_config / "checkpointconfig.json").write_text(json.dumps({"LocalPath": "/x/y"}))
    assert checkpoint_dir(job) == Path("/x/y")
