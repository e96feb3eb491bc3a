"""The job's input channels: every one of ``inputdataconfig.json``, read by its ContentType.

Each record is a label followed by its features, in any of these content types:

- ``text/csv``: ``label,f1,f2,...`` per line, no header (a first line whose features are
  all names is taken for a header and skipped: ``codec.is_header``);
- ``application/jsonlines``: one JSON value per line, ``[label, f1, f2, ...]`` or
  ``{"label": ..., "features": [f1, f2, ...]}``;
- ``application/x-parquet``: the first column is the label, the others the features (read
  with pyarrow, one row group at a time);
- ``text/libsvm``: ``label index:value ...``, LibSVM's sparse text format (XGBoost's and
  LightGBM's native one). Indices count from 1, or from 0 when a 0 appears; absent features
  are 0, as LibSVM means them. ``#`` starts a comment to the end of the line, as LibSVM,
  XGBoost and LightGBM allow; a line holding only a comment is no record.

A feature is a number by the rule serving applies too (codec.py, "What a feature value
is"): in CSV and LibSVM text, ``codec.NUMBER`` (``nan`` for a missing value; ``NA``, an
empty field or ``1_000`` are refused, naming the line); in JSON lines, a JSON number or
null (NaN), never a boolean or a string. A label may be anything.

File and FastFile mode read every file under ``/opt/ml/input/data/<channel>/``. Pipe mode
reads the FIFO ``/opt/ml/input/data/<channel>_<epoch>``, a new one per pass, unwrapping
RecordIO when the channel says ``RecordWrapperType: RecordIO``; it waits for SageMaker to
start writing the FIFO for at most ``PIPE_MODE_WAIT_SECONDS`` (600), and not past a SIGTERM.
Either way records are parsed a block at a time (``Channel.batches``): the raw data is never
held in memory whole.
"""

from __future__ import annotations

import codecs
import csv
import fcntl
import itertools
import json
import os
import re
import select
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from . import codec
from .codec import (
    CSV,
    JSONLINES,
    LIBSVM,
    PARQUET,
    is_header,
    is_json_number,
    is_number,
    not_a_number,
)
from .environment import Paths, read_json, shown

CONTENT_TYPES = (CSV, JSONLINES, PARQUET, LIBSVM)
SUFFIXES = {".jsonl": JSONLINES, ".parquet": PARQUET, ".libsvm": LIBSVM, ".svm": LIBSVM}
BLOCK_ROWS = 65_536  # Records parsed into one array block.
RECORDIO_MAGIC = 0xCED7230A
# How long Pipe mode waits for SageMaker to start writing a FIFO, unless told otherwise.
PIPE_WAIT_ENV = "PIPE_MODE_WAIT_SECONDS"
PIPE_WAIT_SECONDS = 600.0
# inputdataconfig.json: each setting's allowed values (a missing setting takes the first).
SETTINGS = {
    "TrainingInputMode": ("File", "Pipe", "FastFile"),
    "S3DistributionType": ("FullyReplicated", "ShardedByS3Key"),
    "RecordWrapperType": ("None", "RecordIO"),
}
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # SageMaker's channel names


class ChannelError(ValueError):
    """Data that cannot be read, with the file and line (or record) it is in."""


@dataclass(frozen=True)
class Dataset:
    """Features (float64, rows x features) and their labels (numbers, or else strings)."""

    features: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, selection: Any) -> Dataset:
        return Dataset(self.features[selection], self.labels[selection])

    @classmethod
    def concatenate(cls, parts: list[Dataset], width: int | None = None) -> Dataset:
        """One dataset from blocks; ``width`` pads sparse (LibSVM) blocks to one width.

        Each block's labels are typed already. When blocks differ (numbers in one file,
        strings in another), every label becomes a string (``1.0`` as ``"1.0"``).
        """
        if width is not None:
            parts = [_widen(part, width) for part in parts]
        if len({part.labels.dtype.kind for part in parts}) > 1:
            parts = [replace(part, labels=part.labels.astype(str)) for part in parts]
        return cls(
            np.concatenate([part.features for part in parts]),
            np.concatenate([part.labels for part in parts]),
        )


@dataclass(frozen=True)
class TrainingData:
    """What ``model.train`` learns from: the training rows and, when there are, validation rows.

    ``validation`` is the ``validation`` channel when the job has one, else a stratified
    share of the training rows (``validation_fraction``), else ``None``. ``replicated``: every
    host holds all the training rows (S3DistributionType FullyReplicated), so a distributed
    job gives each host its share (``Job.shard``).
    """

    train: Dataset
    validation: Dataset | None = None
    replicated: bool = True


def stratified_split(
    dataset: Dataset, fraction: float, seed: int, *, in_place: bool = False
) -> tuple[Dataset, Dataset]:
    """(training, validation): ``fraction`` of each class's rows drawn with ``seed``.

    Every class keeps at least one training row. Labels with nearly as many values as rows
    (a regression target) are split at random instead of by class. ``in_place``: the
    training rows are moved up within ``dataset``'s own arrays instead of copied (the
    runner's way: memory then holds the rows once, plus the validation rows), and
    ``dataset`` must not be used afterwards.
    """
    rng = np.random.default_rng(seed)
    # np.unique(return_inverse=True) would hold three arrays of a row index each at once.
    values = np.unique(dataset.labels)
    in_validation = np.zeros(len(dataset), dtype=bool)
    if len(values) > len(dataset) // 2:
        _choose(in_validation, np.arange(len(dataset)), fraction, rng)
    else:
        codes = np.searchsorted(values, dataset.labels)
        for code in range(len(values)):
            _choose(in_validation, np.flatnonzero(codes == code), fraction, rng)
        del codes
    validation = dataset.rows(in_validation)
    if not in_place:
        return dataset.rows(~in_validation), validation
    return Dataset(
        _compact(dataset.features, ~in_validation), _compact(dataset.labels, ~in_validation)
    ), validation


def _choose(
    chosen: np.ndarray, rows: np.ndarray, fraction: float, rng: np.random.Generator
) -> None:
    """Mark ``fraction`` of ``rows``, drawn with ``rng``, in ``chosen``; leave one unmarked."""
    drawn = rng.permutation(rows)
    chosen[drawn[: min(round(len(drawn) * fraction), len(drawn) - 1)]] = True


def _compact(array: np.ndarray, keep: np.ndarray, chunk: int = BLOCK_ROWS) -> np.ndarray:
    """``array[keep]`` without a second array: the kept rows are moved up a chunk at a time
    (a row never moves down, so no row is overwritten before it is moved), then the array
    is cut to them."""
    kept = 0
    for start in range(0, len(array), chunk):
        rows = array[start : start + chunk][keep[start : start + chunk]]
        array[kept : kept + len(rows)] = rows
        kept += len(rows)
    return _shrunk(array, kept)


def _shrunk(array: np.ndarray, rows: int) -> np.ndarray:
    """``array[:rows]``, giving the rest back to the allocator when ``array`` owns it."""
    if array.flags.owndata and array.flags.c_contiguous:
        array.resize((rows, *array.shape[1:]), refcheck=False)
        return array
    return array[:rows]


def label_array(labels: list[Any]) -> np.ndarray:
    """Numeric labels as numbers (regression, integer classes); anything else as strings."""
    try:
        return np.asarray([float(label) for label in labels], dtype=np.float64)
    except (TypeError, ValueError):
        return np.asarray([str(label).strip() for label in labels])


def media_type(content_type: str | None) -> str:
    """``text/csv`` from ``text/csv; label_size=1`` and its other spellings (the serving
    side's ``codec.media_type``); CSV when the channel names none."""
    return codec.media_type(content_type) or CSV


@dataclass(frozen=True)
class Channel:
    """One channel of the job, as ``inputdataconfig.json`` describes it."""

    name: str
    directory: Path
    content_type: str = CSV
    input_mode: str = "File"
    distribution: str = "FullyReplicated"
    record_wrapper: str = "None"
    # Set by the first SIGTERM: stops a wait for a Pipe mode FIFO.
    stop: threading.Event | None = field(default=None, repr=False, compare=False)
    pipe_wait: float = PIPE_WAIT_SECONDS
    # Pipe mode's passes over the channel: training_0, training_1...
    _passes: Iterator[int] = field(default_factory=itertools.count, repr=False, compare=False)

    @property
    def pipe(self) -> bool:
        return self.input_mode.lower() == "pipe"

    def read(self) -> Dataset:
        """Every record of the channel (in Pipe mode: of its next pass), in memory."""
        if self.content_type == LIBSVM:  # sparse rows: the width is known at the end only
            blocks = list(self.batches())
            if not blocks:
                raise ChannelError(f"channel {self.name!r} has no data rows")
            width = max(block.features.shape[1] for block in blocks)
            return one_based(Dataset.concatenate(blocks, width))
        return self._assemble(self.batches())

    def _assemble(self, blocks: Iterator[Dataset]) -> Dataset:
        """The blocks' rows in one array, grown in place as they come.

        Concatenating the blocks at the end would hold the data twice at its peak. Growing
        one array holds it once: ``ndarray.resize`` reallocates, and for an array this large
        the allocator has the kernel move its pages (mremap) rather than copy them. It grows
        by a quarter at a time, so the peak is at most a quarter over the data.
        """
        features = np.empty((0, 0))
        labels = []
        rows = 0
        for block in blocks:
            count, width = block.features.shape
            if not labels:
                features = np.empty((count, width))
            elif width != features.shape[1]:
                raise ChannelError(
                    f"channel {self.name!r}: a file has {width} features, the one before"
                    f" it {features.shape[1]}"
                )
            if rows + count > len(features):
                grown = max(rows + count, len(features) + len(features) // 4)
                features.resize((grown, width), refcheck=False)
            features[rows : rows + count] = block.features
            rows += count
            labels.append(block.labels)
        if not labels:
            raise ChannelError(f"channel {self.name!r} has no data rows")
        if len({part.dtype.kind for part in labels}) > 1:  # numbers in one file, text in another
            labels = [part.astype(str) for part in labels]
        return Dataset(_shrunk(features, rows), np.concatenate(labels))

    def batches(self, rows: int = BLOCK_ROWS) -> Iterator[Dataset]:
        """The channel's records, ``rows`` at a time; Pipe mode opens the next pass's FIFO."""
        if self.pipe:
            fifo = self.directory.parent / f"{self.name}_{next(self._passes)}"
            if self.content_type == PARQUET:
                raise ChannelError(
                    f"channel {self.name!r}: Parquet needs random access; use File or FastFile"
                    " mode for it, or CSV, JSON lines or LibSVM in Pipe mode"
                )
            if not fifo.exists():
                raise ChannelError(f"channel {self.name!r} is missing: no pipe {fifo}")
            with self._open_pipe(fifo) as stream:
                lines = _recordio(stream) if self.record_wrapper == "RecordIO" else _text(stream)
                yield from _parse(self.content_type, lines, fifo.name, rows)
            return
        for file in self.files():
            content_type = SUFFIXES.get(file.suffix.lower(), self.content_type)
            if content_type == PARQUET:
                yield from _parquet(file, rows)
                continue
            with file.open("rb") as stream:
                yield from _parse(content_type, _text(stream), file.name, rows)

    def _open_pipe(self, fifo: Path) -> IO[bytes]:
        """``fifo`` open for reading once SageMaker writes to it. A plain ``open`` would wait
        for a writer forever, deaf to SIGTERM; this waits ``pipe_wait`` seconds at most, a
        second at a time, and stops when ``stop`` is set."""
        from .job import TrainingStopped  # job.py imports this module

        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # returns at once, writer or not
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            deadline = time.monotonic() + self.pipe_wait
            while not poller.poll(min(1.0, max(deadline - time.monotonic(), 0)) * 1000):
                if self.stop is not None and self.stop.is_set():
                    raise TrainingStopped(f"stopped by signal SIGTERM while waiting for {fifo}")
                if time.monotonic() >= deadline:
                    raise ChannelError(
                        f"channel {self.name!r}: nothing was written to the pipe {fifo} in"
                        f" {self.pipe_wait:g} s ({PIPE_WAIT_ENV} sets how long to wait)"
                    )
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def files(self) -> list[Path]:
        if not self.directory.is_dir():
            present = sorted(p.name for p in self.directory.parent.glob("*"))
            raise ChannelError(
                f"channel {self.name!r} is missing: no directory {self.directory}"
                f" (channels present: {', '.join(present) or 'none'})"
            )
        files = sorted(
            p
            for p in self.directory.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(self.directory).parts)
        )
        if not files:
            raise ChannelError(f"channel {self.name!r} is empty: no files in {self.directory}")
        return files


def _setting(where: str, settings: Mapping[str, Any], key: str) -> str:
    """One channel setting of inputdataconfig.json, checked: a string among the allowed."""
    allowed = SETTINGS[key]
    value = settings.get(key, allowed[0])
    if not isinstance(value, str):
        raise ChannelError(
            f"{where}: {key} must be a string ({', '.join(allowed)}), got {shown(value)}"
        )
    for known in allowed:  # SageMaker's spelling, whatever the case written
        if value.lower() == known.lower():
            return known
    raise ChannelError(f"{where}: {key} {value!r} is not one of {', '.join(allowed)}")


def pipe_wait_seconds() -> float:
    raw = os.environ.get(PIPE_WAIT_ENV, "")
    try:
        seconds = float(raw) if raw.strip() else PIPE_WAIT_SECONDS
    except ValueError:
        raise ChannelError(f"{PIPE_WAIT_ENV} must be a number of seconds, got {raw!r}") from None
    if not seconds > 0:
        raise ChannelError(f"{PIPE_WAIT_ENV} must be more than 0 seconds, got {raw!r}")
    return seconds


def channels(paths: Paths, stop: threading.Event | None = None) -> dict[str, Channel]:
    """The job's channels: those ``inputdataconfig.json`` lists, else the data directories.

    Every setting is checked here, naming the channel and the setting at fault. ``stop``
    ends a wait for a Pipe mode FIFO (the runner sets it on SIGTERM).
    """
    config = read_json(paths.input_data_config, default=None)
    if config is None:  # A local run without the file: every directory is a CSV channel.
        present = sorted(
            p.name for p in paths.input_data.glob("*") if p.is_dir() and not p.name.startswith(".")
        )
        config = {name: {} for name in present}
    if not isinstance(config, Mapping):
        raise ChannelError(f"{paths.input_data_config} must hold a JSON object")
    found = {}
    for name, settings in config.items():
        where = f"{paths.input_data_config.name}: channel {name!r}"
        if not CHANNEL_NAME.match(name):
            raise ChannelError(f"{where}: not a channel name (letters, digits, '.', '-', '_')")
        if not isinstance(settings, Mapping):
            raise ChannelError(f"{where} must be a JSON object, got {shown(settings)}")
        raw_type = settings.get("ContentType")
        if raw_type is not None and not isinstance(raw_type, str):
            raise ChannelError(f"{where}: ContentType must be a string, got {shown(raw_type)}")
        content_type = media_type(raw_type)
        if content_type not in CONTENT_TYPES:
            raise ChannelError(
                f"channel {name!r}: ContentType {shown(raw_type)} is not one of"
                f" {', '.join(CONTENT_TYPES)}"
            )
        input_mode = _setting(where, settings, "TrainingInputMode")
        found[name] = Channel(
            name=name,
            directory=paths.channel(name),
            content_type=content_type,
            input_mode=input_mode,
            distribution=_setting(where, settings, "S3DistributionType"),
            record_wrapper=_setting(where, settings, "RecordWrapperType"),
            stop=stop,
            pipe_wait=pipe_wait_seconds() if input_mode == "Pipe" else PIPE_WAIT_SECONDS,
        )
    return found


def _text(stream: IO[bytes]) -> Iterator[str]:
    """Lines of UTF-8 text (a byte-order mark dropped), read a buffer at a time."""
    return iter(codecs.getreader("utf-8-sig")(stream, errors="strict"))


def _parse(content_type: str, lines: Iterator[str], name: str, rows: int) -> Iterator[Dataset]:
    records: Iterable[tuple[int, Any]]
    if content_type == CSV:
        records, features = _csv_records(lines, name), _text_features
    elif content_type == JSONLINES:
        records = _line_records(lines, name, _json_record)
        features = _json_features
    else:
        records, features = _line_records(lines, name, _libsvm_record), None
    try:
        yield from _blocks(records, name, rows, features)
    except UnicodeDecodeError as exc:
        raise ChannelError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _line_records(lines: Iterator[str], name: str, parse_line: Any) -> Iterator[tuple[int, Any]]:
    """``(line number, record)`` for each line that holds one (``parse_line`` gives None
    for a LibSVM comment line; blank lines hold none)."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            record = parse_line(line, f"{name} line {number}")
            if record is not None:
                yield number, record


def _csv_records(lines: Iterator[str], name: str) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record but blank lines and a header (``codec.is_header`` of the first
    record's features: the label may be text). A line of empty fields (``,,,``) is a
    record, refused for its features: never skipped."""
    reader = csv.reader(lines)
    first = True
    for record in reader:
        if len(record) <= 1 and not "".join(record).strip():
            continue  # A blank line
        number = reader.line_num
        if len(record) < 2:
            raise ChannelError(
                f"{name} line {number}: expected a label and features, got {record!r}"
            )
        if first and is_header(record[1:]):
            first = False
            continue
        first = False
        yield number, record


def _text_features(fields: list[str], where: str) -> list[float]:
    """CSV fields as numbers, by the number syntax (``codec.NUMBER``).

    ``float()`` reads the syntax and more: ``1_000``, digits of other scripts, control
    characters as spaces. Fields of printable ASCII without ``_`` are taken as ``float()``
    reads them (the common case, at C speed); others are held to the syntax itself.
    """
    try:
        values = [float(text) for text in fields]
    except ValueError:
        values = None
    joined = "".join(fields)
    if values is not None and joined.isascii() and joined.isprintable() and "_" not in joined:
        return values
    for column, text in enumerate(fields, start=2):
        if not is_number(text):
            raise _not_a_feature(where, column, text)
    return [float(text) for text in fields]


def _not_a_feature(where: str, column: int, value: Any) -> ChannelError:
    """``part line 3: a feature is not a number (column 2: 'NA' is not a number (write nan
    for a missing value))``: the column counts the label as 1."""
    if isinstance(value, str) and is_number(value):  # From JSON: a number in a string
        reason = f"{value!r} is not a number (a JSON string)"
    else:
        reason = not_a_number(value)
    return ChannelError(f"{where}: a feature is not a number (column {column}: {reason})")


def _json_features(values: list[Any], where: str) -> list[float]:
    """JSON values as numbers: JSON numbers, and null as NaN (``codec.is_json_number``)."""
    for column, value in enumerate(values, start=2):
        if not is_json_number(value):
            raise _not_a_feature(where, column, value)
    try:
        return [np.nan if value is None else float(value) for value in values]
    except OverflowError:
        raise ChannelError(f"{where}: a feature is too large for a float") from None


def _json_record(line: str, where: str) -> list[Any]:
    try:
        value = json.loads(line)
    except RecursionError:
        raise ChannelError(f"{where}: nested too deeply") from None
    except ValueError as exc:  # Not JSON, or an integer of more than 4,300 digits
        raise ChannelError(f"{where}: not JSON ({exc})") from None
    if isinstance(value, dict):
        if "label" not in value or not isinstance(value.get("features"), list):
            raise ChannelError(f'{where}: expected an object with "label" and "features"')
        return [value["label"], *value["features"]]
    if not isinstance(value, list) or len(value) < 2:
        raise ChannelError(f"{where}: expected [label, feature, ...], got {line.strip()[:80]!r}")
    return value


def _libsvm_record(line: str, where: str) -> tuple[str, dict[int, float]] | None:
    """``label index:value ...``; ``#`` starts a comment (None for a comment line)."""
    data = line.split("#", 1)[0]
    if not data.strip():
        return None
    label, *pairs = data.split()
    features = {}
    for pair in pairs:
        index, sep, value = pair.partition(":")
        if not (sep and index.isascii() and index.isdigit() and is_number(value)):
            raise ChannelError(f"{where}: expected index:value, got {pair!r}")
        features[int(index)] = float(value)
    return label, features


def _blocks(
    records: Iterable[tuple[int, Any]], name: str, rows: int, features_of: Any
) -> Iterator[Dataset]:
    """Blocks of ``rows`` records; ``features_of(values, where)`` makes a dense record's
    features numbers (None: sparse records, LibSVM's)."""
    sparse = features_of is None
    labels: list[Any] = []
    values: list[Any] = []
    width: int | None = None
    for number, record in records:
        where = f"{name} line {number}"
        if sparse:
            label, features = record
            values.append(features)
        else:
            label, *features = record
            if width is None:
                width = len(features)
            elif len(features) != width:
                raise ChannelError(
                    f"{where}: expected {width + 1} columns like the first line,"
                    f" got {len(features) + 1}"
                )
            values.append(features_of(features, where))
        labels.append(label)
        if len(labels) == rows:
            yield _block(labels, values, sparse)
            labels, values = [], []
    if labels:
        yield _block(labels, values, sparse)


def _block(labels: list[Any], values: list[Any], sparse: bool) -> Dataset:
    if not sparse:
        return Dataset(np.asarray(values, dtype=np.float64), label_array(labels))
    # Sparse rows keep their own indices; _widen lines blocks up once the width is known.
    width = max((max(row, default=-1) + 1 for row in values), default=0)
    features = np.zeros((len(values), width))
    for i, row in enumerate(values):
        if row:
            features[i, list(row)] = list(row.values())
    return Dataset(features, label_array(labels))


def _widen(part: Dataset, width: int) -> Dataset:
    missing = width - part.features.shape[1]
    if missing <= 0:
        return part
    return Dataset(np.pad(part.features, ((0, 0), (0, missing))), part.labels)


def one_based(dataset: Dataset) -> Dataset:
    """LibSVM columns counted from 1 when no record used index 0 (LibSVM's own convention)."""
    if dataset.features.shape[1] and not dataset.features[:, 0].any():
        return Dataset(dataset.features[:, 1:], dataset.labels)
    return dataset


def _parquet(file: Path, rows: int) -> Iterator[Dataset]:
    import pyarrow.parquet as pq  # Imported when a channel has Parquet: it is large.

    try:
        reader = pq.ParquetFile(file)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid, OSError...
        raise ChannelError(f"{file.name}: not a Parquet file ({exc})") from None
    columns = reader.schema_arrow.names
    if len(columns) < 2:
        raise ChannelError(f"{file.name}: expected a label column and feature columns")
    for batch in reader.iter_batches(batch_size=rows):
        table = batch.to_pydict()
        try:
            features = np.column_stack(
                [np.asarray(table[column], dtype=np.float64) for column in columns[1:]]
            )
        except (TypeError, ValueError) as exc:
            raise ChannelError(f"{file.name}: a feature column is not numeric ({exc})") from None
        yield Dataset(features, label_array(table[columns[0]]))


def _recordio(stream: IO[bytes]) -> Iterator[str]:
    """The records of a RecordIO stream (Pipe mode's RecordWrapperType), as lines of text."""
    part = b""
    while header := stream.read(8):
        if len(header) < 8:
            raise ChannelError("RecordIO stream ends inside a record header")
        magic, length_and_flag = struct.unpack("<II", header)
        if magic != RECORDIO_MAGIC:
            raise ChannelError(f"not a RecordIO stream (magic {magic:#010x})")
        flag, length = length_and_flag >> 29, length_and_flag & ((1 << 29) - 1)
        payload = stream.read(length)
        stream.read(-length % 4)  # Padding to a 4-byte boundary.
        part += payload
        if flag in (0, 3):  # A whole record, or the last part of a split one.
            yield from part.decode("utf-8").splitlines()
            part = b""
