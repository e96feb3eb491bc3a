import io
import tarfile
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.environment import Paths
from {{ cookiecutter.package_name }}.packaging import PackagingError, create, extract, main


def test_round_trip_puts_files_at_the_archive_root(trained: Paths, tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    names = create(trained.model, archive)
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == sorted(names)
    assert "metadata.json" in names
    assert all("/" not in name for name in names)
    restored = tmp_path / "restored"
    assert sorted(extract(archive, restored)) == sorted(names)
    for name in names:
        assert (restored / name).read_bytes() == (trained.model / name).read_bytes()


def test_refuses_an_empty_model_dir(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    with pytest.raises(PackagingError, match="no files"):
        create(tmp_path / "model", tmp_path / "model.tar.gz")
    assert not (tmp_path / "model.tar.gz").exists()


def test_refuses_a_nested_model_dir(tmp_path: Path) -> None:
    nested = tmp_path / "model" / "model"
    nested.mkdir(parents=True)
    (nested / "weights.bin").write_bytes(b"x")
    with pytest.raises(PackagingError, match="under model/"):
        create(tmp_path / "model", tmp_path / "model.tar.gz")


def test_refuses_to_write_into_the_model_dir(trained: Paths) -> None:
    with pytest.raises(PackagingError, match="outside the model directory"):
        create(trained.model, trained.model / "model.tar.gz")


def _archive(tmp_path: Path, *members: tarfile.TarInfo) -> Path:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            data = b"x" * member.size
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    "member",
    [
        _file("../escape.txt"),
        _file("/etc/cron.d/evil"),
        _file("ok/../../escape.txt"),
        _link("link", "/etc/passwd", tarfile.SYMTYPE),
        _link("hard", "/etc/passwd", tarfile.LNKTYPE),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink", "hardlink"],
)
def test_extract_refuses_unsafe_members(tmp_path: Path, member: tarfile.TarInfo) -> None:
    archive = _archive(tmp_path, _file("model.joblib"), member)
    with pytest.raises(PackagingError, match="unsafe member"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "escape.txt").exists()


def test_extract_refuses_an_archive_with_a_top_folder(tmp_path: Path) -> None:
    archive = _archive(tmp_path, _file("model/model.joblib"), _file("model/metadata.json"))
    with pytest.raises(PackagingError, match="under model/"):
        extract(archive, tmp_path / "out")


def test_command_line(trained: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "model.tar.gz"
    assert main(["create", str(trained.model), str(archive)]) == 0
    assert main(["extract", str(archive), str(tmp_path / "out")]) == 0
    assert main(["create", str(tmp_path / "missing"), str(archive)]) == 1
    assert "is not a directory" in capsys.readouterr().err
