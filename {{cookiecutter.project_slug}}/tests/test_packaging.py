import io
import os
import tarfile
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import packaging
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


def _model_dir(tmp_path: Path) -> Path:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(b"w" * 100)
    (model_dir / "config.json").write_text("{}")
    return model_dir


def test_links_to_files_are_stored_as_the_files(tmp_path: Path) -> None:
    """extract (and SageMaker) want plain files: a link is stored as what it points to."""
    model_dir = _model_dir(tmp_path)
    outside = tmp_path / "vocab.txt"
    outside.write_text("a b c")
    (model_dir / "vocab.txt").symlink_to(outside)
    (model_dir / "latest.bin").symlink_to("weights.bin")
    os.link(model_dir / "config.json", model_dir / "config-copy.json")
    archive = tmp_path / "model.tar.gz"
    create(model_dir, archive)
    with tarfile.open(archive) as tar:
        assert all(member.isreg() for member in tar.getmembers())
    restored = tmp_path / "restored"
    extract(archive, restored)
    assert (restored / "vocab.txt").read_text() == "a b c"
    assert (restored / "latest.bin").read_bytes() == b"w" * 100
    assert (restored / "config-copy.json").read_text() == "{}"


def _folder_link(model_dir: Path) -> str:
    (model_dir.parent / "shards").mkdir()
    (model_dir / "shards").symlink_to(model_dir.parent / "shards")
    return "is a link to a folder"


def _dangling(model_dir: Path) -> str:
    (model_dir / "gone.bin").symlink_to(model_dir / "nowhere.bin")
    return "is a dangling link"


def _fifo(model_dir: Path) -> str:
    os.mkfifo(model_dir / "pipe")
    return "is not a regular file"


@pytest.mark.parametrize(
    "make", [_folder_link, _dangling, _fifo], ids=["folder-link", "dangling", "fifo"]
)
def test_what_cannot_be_packaged_is_refused_before_writing(tmp_path: Path, make) -> None:
    model_dir = _model_dir(tmp_path)
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"the previous archive")
    reason = make(model_dir)
    with pytest.raises(PackagingError, match=reason):
        create(model_dir, archive)
    assert archive.read_bytes() == b"the previous archive"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_failure_while_writing_leaves_no_partial_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = _model_dir(tmp_path)
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"the previous archive")
    add = packaging._add_file

    def fail_on_the_second(tar: tarfile.TarFile, path: Path, name: str) -> None:
        if len(tar.getmembers()) == 1:
            raise OSError(28, "No space left on device")
        add(tar, path, name)

    monkeypatch.setattr(packaging, "_add_file", fail_on_the_second)
    with pytest.raises(OSError, match="No space left"):
        create(model_dir, archive)
    assert archive.read_bytes() == b"the previous archive"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.tar.gz"]


def _bomb(tmp_path: Path, size: int) -> Path:
    """A gzip archive of a few KB holding ``size`` bytes of zeros."""
    path = tmp_path / "bomb.tar.gz"
    info = tarfile.TarInfo("model.bin")
    info.size = size
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(info, io.BytesIO(bytes(size)))
    return path


def test_extract_refuses_an_archive_that_expands_beyond_the_bound(tmp_path: Path) -> None:
    archive = _bomb(tmp_path, 4 * 2**20)
    assert archive.stat().st_size < 20_000
    with pytest.raises(PackagingError, match="expands to 4,194,304 bytes, more than the"):
        extract(archive, tmp_path / "out", max_bytes=2**20)
    assert not (tmp_path / "out").exists()
    assert extract(archive, tmp_path / "out", max_bytes=4 * 2**20) == ["model.bin"]


def test_the_default_bound_and_the_command_line_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert packaging.MAX_EXTRACTED_BYTES == 50 * 2**30
    archive = _bomb(tmp_path, 3000)
    assert main(["extract", "--max-bytes", "2999", str(archive), str(tmp_path / "out")]) == 1
    assert "more than the 2,999 allowed (--max-bytes to allow more)" in capsys.readouterr().err
    assert main(["extract", "--max-bytes", "3000", str(archive), str(tmp_path / "out")]) == 0


def test_extract_refuses_what_the_disk_cannot_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packaging, "_free_bytes", lambda folder: 1000)
    with pytest.raises(PackagingError, match="has 1,000 free"):
        extract(_bomb(tmp_path, 3000), tmp_path / "out")
    assert not (tmp_path / "out").exists()
