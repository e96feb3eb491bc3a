"""``model.tar.gz``: what SageMaker uploads from ``/opt/ml/model`` and extracts back into it.

``create`` puts the model files at the archive root (never under a top folder, which the
server would then not find) and refuses an empty model directory. A link to a file is stored
as the file it points to (so is a second hard link), since ``extract`` and SageMaker's own
extraction want plain files; a link to a folder, a dangling link, a FIFO or a socket is
refused, named, before anything is written. The archive is written to a temporary file and
renamed into place: a failure leaves no partial archive, and an older archive as it was.

``extract`` refuses members that would land outside the destination (absolute paths, ``..``,
links, devices) and archives whose files add up to more than ``MAX_EXTRACTED_BYTES``
(``--max-bytes``; a few KB of gzip can expand to gigabytes), or to more than the destination
has free, before it writes a byte.

    python -m <package>.packaging create MODEL_DIR model.tar.gz
    python -m <package>.packaging extract [--max-bytes N] model.tar.gz MODEL_DIR
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

# The most an archive may expand to, unless told otherwise: far above any model this image
# serves on one instance's disk, far below what a crafted archive of a few KB can expand to.
MAX_EXTRACTED_BYTES = 50 * 2**30


class PackagingError(ValueError):
    """A model directory or archive that would not work as SageMaker's model.tar.gz."""


def _model_files(model_dir: Path) -> list[Path]:
    """The files to package, each a regular file or a link to one; anything else is refused."""
    files = []
    for path in sorted(model_dir.rglob("*")):
        name = path.relative_to(model_dir).as_posix()
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise PackagingError(f"{name!r} is not a UTF-8 file name: rename it") from None
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            continue
        if stat.S_ISLNK(mode):
            if not path.exists():
                raise PackagingError(f"{name} is a dangling link")
            if path.is_dir():
                raise PackagingError(
                    f"{name} is a link to a folder: copy the folder into the model directory"
                )
        if not path.is_file():
            raise PackagingError(f"{name} is not a regular file (a FIFO, socket or device)")
        files.append(path)
    return files


def create(model_dir: Path, archive: Path) -> list[str]:
    """Write ``archive`` from the files in ``model_dir``; return the member names."""
    model_dir = model_dir.resolve()
    archive = archive.resolve()
    if not model_dir.is_dir():
        raise PackagingError(f"{model_dir} is not a directory")
    if archive.is_relative_to(model_dir):
        raise PackagingError(f"write {archive.name} outside the model directory it packages")
    files = _model_files(model_dir)
    if not files:
        raise PackagingError(f"{model_dir} has no files: train first, then package")
    top = list(model_dir.iterdir())
    if len(top) == 1 and top[0].is_dir():
        raise PackagingError(
            f"everything in {model_dir} is under {top[0].name}/: SageMaker extracts the archive"
            " into /opt/ml/model as it is, so package the folder's contents instead"
        )
    names = [path.relative_to(model_dir).as_posix() for path in files]
    fd, tmp_name = tempfile.mkstemp(dir=archive.parent, prefix=".model-", suffix=".tar.gz")
    os.close(fd)
    try:
        with tarfile.open(tmp_name, "w:gz") as tar:
            for path, name in zip(files, names, strict=True):
                _add_file(tar, path, name)
        os.replace(tmp_name, archive)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return names


def _add_file(tar: tarfile.TarFile, path: Path, name: str) -> None:
    """``path`` as a plain file member, whether it is a link or one of several hard links."""
    with path.open("rb") as stream:
        info = tar.gettarinfo(arcname=name, fileobj=stream)
        info.type = tarfile.REGTYPE
        info.linkname = ""
        tar.addfile(info, stream)


def _check_member(member: tarfile.TarInfo) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise PackagingError(f"unsafe member {member.name!r}: it points outside the model dir")
    if not (member.isfile() or member.isdir()):
        raise PackagingError(f"unsafe member {member.name!r}: only files and folders are allowed")


def _free_bytes(folder: Path) -> int:
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def extract(archive: Path, destination: Path, max_bytes: int = MAX_EXTRACTED_BYTES) -> list[str]:
    """Extract a model archive into ``destination``; return the file names.

    Every member is checked, and the sizes added up, before anything is written.
    """
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member)
        files = [m.name for m in members if m.isfile()]
        if not files:
            raise PackagingError(f"{archive} has no files")
        total = sum(m.size for m in members if m.isfile())
        if total > max_bytes:
            raise PackagingError(
                f"{archive} expands to {total:,} bytes, more than the {max_bytes:,} allowed"
                " (--max-bytes to allow more)"
            )
        free = _free_bytes(destination)
        if total > free:
            raise PackagingError(
                f"{archive} expands to {total:,} bytes; {destination} has {free:,} free"
            )
        tops = {PurePosixPath(name).parts[0] for name in files}
        if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in files):
            raise PackagingError(
                f"{archive} has every file under {tops.pop()}/: the model files must be at"
                " the archive root"
            )
        destination.mkdir(parents=True, exist_ok=True)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(destination, members=members, filter="data")
        else:  # Python before 3.10.12: the members were checked above.
            tar.extractall(destination, members=members)  # noqa: S202
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.packaging")
    commands = parser.add_subparsers(dest="command", required=True)
    create_cmd = commands.add_parser("create", help="model directory -> model.tar.gz")
    create_cmd.add_argument("model_dir", type=Path)
    create_cmd.add_argument("archive", type=Path)
    extract_cmd = commands.add_parser("extract", help="model.tar.gz -> model directory")
    extract_cmd.add_argument("archive", type=Path)
    extract_cmd.add_argument("destination", type=Path)
    extract_cmd.add_argument(
        "--max-bytes",
        type=int,
        default=MAX_EXTRACTED_BYTES,
        help=f"refuse an archive whose files add up to more (default {MAX_EXTRACTED_BYTES:,})",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "create":
            names = create(args.model_dir, args.archive)
            print(f"wrote {args.archive} with {len(names)} files: {', '.join(names)}")
        else:
            names = extract(args.archive, args.destination, args.max_bytes)
            print(f"extracted {len(names)} files into {args.destination}")
    except (PackagingError, OSError, tarfile.TarError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
