"""Channels: every content type and input mode SageMaker hands a training job."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from {{ cookiecutter.package_name }} import training
from {{ cookiecutter.package_name }}.channels import (
    RECORDIO_MAGIC,
    ChannelError,
    Dataset,
    channels,
    stratified_split,
)
from {{ cookiecutter.package_name }}.codec import NPY, is_number
from {{ cookiecutter.package_name }}.environment import Paths
from {{ cookiecutter.package_name }}.job import TrainingStopped

from .support import N_FEATURES, SAMPLE_DATA, SAMPLE_FEATURES, SAMPLE_LABELS, layout
from .test_codec import HEADER_RULE, JSON_FEATURES, NUMBER_SYNTAX, SPELLINGS
from .test_model import QUICK_HYPERPARAMETERS

LABELS = SAMPLE_LABELS.tolist()
FEATURES = SAMPLE_FEATURES


def configure(paths: Paths, **channel_settings: dict[str, str]) -> None:
    paths.input_data_config.write_text(json.dumps(channel_settings))


def replace_training_data(paths: Paths, name: str, content: bytes | str) -> Path:
    directory = paths.channel("training")
    for old in directory.iterdir():
        old.unlink()
    target = directory / name
    if isinstance(content, str):
        target.write_text(content, encoding="utf-8")
    else:
        target.write_bytes(content)
    return target


def read_training(paths: Paths) -> Dataset:
    return channels(paths)["training"].read()


def assert_is_the_sample(data: Dataset) -> None:
    np.testing.assert_array_equal(data.features, FEATURES)
    assert data.labels.tolist() == LABELS


def jsonlines(records: list) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def write_parquet(target: Path, row_group_size: int | None = None) -> None:
    """The sample as Parquet: the label column, then one column per feature."""
    columns = {"species": LABELS} | {f"f{i}": FEATURES[:, i] for i in range(N_FEATURES)}
    pq.write_table(pa.table(columns), target, row_group_size=row_group_size)


def libsvm(first_index: int) -> str:
    lines = []
    for label, row in zip(LABELS, FEATURES, strict=True):
        pairs = [f"{i + first_index}:{v:g}" for i, v in enumerate(row) if v != 0]
        lines.append(" ".join([label, *pairs]))
    return "\n".join(lines) + "\n"


def test_csv_with_a_header_row_and_a_byte_order_mark(job: Paths) -> None:
    header = "species," + ",".join(f"f{i}" for i in range(N_FEATURES))
    replace_training_data(job, "iris.csv", "\ufeff" + header + "\n" + SAMPLE_DATA.read_text())
    assert_is_the_sample(read_training(job))


def test_csv_files_of_a_channel_are_read_together_hidden_ones_skipped(job: Paths) -> None:
    extra = job.channel("training") / "more" / "part-2.csv"
    extra.parent.mkdir()
    extra.write_text("virginica,6.3,3.3,6.0,2.5\n")
    (job.channel("training") / ".hidden").write_text("not data")
    (job.channel("training") / ".cache").mkdir()
    (job.channel("training") / ".cache" / "x.csv").write_text("not data")
    data = read_training(job)
    assert data.features.shape == (len(LABELS) + 1, N_FEATURES)
    assert data.labels[-1] == "virginica"


def test_numeric_and_text_labels_in_one_channel_are_all_text(job: Paths) -> None:
    replace_training_data(job, "a.csv", "1,0.5\n2.5,1.5\n")
    (job.channel("training") / "b.csv").write_text("setosa,2.5\n")
    data = read_training(job)
    assert data.labels.tolist() == ["1.0", "2.5", "setosa"]
    np.testing.assert_array_equal(data.features, [[0.5], [1.5], [2.5]])


def test_numeric_labels_stay_numbers(job: Paths) -> None:
    replace_training_data(job, "a.csv", "1,0.5\n2.5,1.5\n")
    assert read_training(job).labels.tolist() == [1.0, 2.5]


@pytest.mark.parametrize("form", ["arrays", "objects"])
def test_json_lines(job: Paths, form: str) -> None:
    if form == "arrays":
        records = [[label, *row] for label, row in zip(LABELS, FEATURES.tolist(), strict=True)]
    else:
        records = [
            {"label": label, "features": row}
            for label, row in zip(LABELS, FEATURES.tolist(), strict=True)
        ]
    replace_training_data(job, "iris.jsonl", jsonlines(records))
    configure(job, training={"ContentType": "application/jsonlines"})
    assert_is_the_sample(read_training(job))


def test_a_bad_json_line_is_named(job: Paths) -> None:
    replace_training_data(job, "part", '["setosa", 1, 2]\n{"label": "x"}\n')
    configure(job, training={"ContentType": "application/jsonlines"})
    with pytest.raises(ChannelError, match='part line 2: expected an object with "label"'):
        read_training(job)


# Training holds features to the rule serving does (codec.py): the same tables.
@pytest.mark.parametrize(("field", "number"), NUMBER_SYNTAX)
def test_the_number_syntax_in_csv_and_libsvm(job: Paths, field: str, number: bool) -> None:
    replace_training_data(job, "part.csv", f"setosa,9,{field}\n")
    if number:
        np.testing.assert_array_equal(read_training(job).features, [[9.0, float(field)]])
    else:
        with pytest.raises(ChannelError, match=r"^part\.csv line 1: a feature is not a number"):
            read_training(job)
    if field.strip() and not {" ", "\t", "#"} & set(field):  # one LibSVM value, no space
        replace_training_data(job, "part", f"1 1:9 2:{field}\n")
        configure(job, training={"ContentType": "text/libsvm"})
        if number:
            np.testing.assert_array_equal(read_training(job).features, [[9.0, float(field)]])
        else:
            with pytest.raises(ChannelError, match="line 1: expected index:value"):
                read_training(job)


@pytest.mark.parametrize(("row", "header"), HEADER_RULE)
def test_the_header_rule_applies_to_the_features(job: Paths, row: str, header: bool) -> None:
    """The label column may be text: the rule looks at the features of the first line."""
    replace_training_data(job, "part.csv", f"label,{row}\nsetosa,1,2,3,4\n")
    if header:
        np.testing.assert_array_equal(read_training(job).features, [[1.0, 2.0, 3.0, 4.0]])
    elif all(is_number(field) for field in row.split(",")):
        assert len(read_training(job)) == 2  # never a row less
    else:
        with pytest.raises(ChannelError, match=r"part\.csv line 1: a feature is not a number"):
            read_training(job)


@pytest.mark.parametrize(("value", "feature"), JSON_FEATURES)
def test_json_lines_features_are_json_numbers(job: Paths, value: str, feature: bool) -> None:
    replace_training_data(job, "part.jsonl", f'["setosa", 1, 2]\n["virginica", 3, {value}]\n')
    configure(job, training={"ContentType": "application/jsonlines"})
    if feature:
        assert read_training(job).features.shape == (2, 2)
    else:
        with pytest.raises(ChannelError, match=r"part\.jsonl line 2: a feature is not a number"):
            read_training(job)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # A line of empty fields is a record, never skipped as a blank line.
        ("setosa,1,2\n,,\nsetosa,3,4\n", r"line 2: a feature is not a number \(column 2: ''"),
        # "#" starts no comment in CSV: the feature is refused, the row never dropped.
        ("setosa,1,2\nsetosa,#3,4\n", r"line 2: a feature is not a number \(column 2: '#3'"),
        ("setosa,NA,2\n", r"line 1: .*'NA' is not a number \(write nan for a missing value\)"),
        # The line of the file, blank lines and a header counted.
        ("a,b,c\n\nsetosa,1,2\nsetosa,1,x\n", r"part\.csv line 4: a feature is not a number"),
    ],
)
def test_csv_rows_are_read_whole_or_named(job: Paths, content: str, message: str) -> None:
    replace_training_data(job, "part.csv", content)
    with pytest.raises(ChannelError, match=message):
        read_training(job)


def test_a_header_after_blank_lines_is_a_header(job: Paths) -> None:
    replace_training_data(job, "part.csv", "\n\nspecies,a,b\nsetosa,1,2\n")
    np.testing.assert_array_equal(read_training(job).features, [[1.0, 2.0]])


def test_a_json_integer_too_long_is_named(job: Paths) -> None:
    replace_training_data(job, "part.jsonl", '["setosa", 1]\n["setosa", ' + "9" * 4400 + "]\n")
    configure(job, training={"ContentType": "application/jsonlines"})
    with pytest.raises(ChannelError, match=r"part\.jsonl line 2: not JSON"):
        read_training(job)
    replace_training_data(job, "part.jsonl", '["setosa", 1]\n["setosa", ' + "9" * 400 + "]\n")
    with pytest.raises(ChannelError, match=r"part\.jsonl line 2: a feature is too large"):
        read_training(job)


def test_libsvm_comments_are_no_records(job: Paths) -> None:
    """LibSVM's "#" starts a comment to the end of the line, as XGBoost and LightGBM read it;
    a line holding only a comment is no record (it failed the job before)."""
    replace_training_data(job, "part", "# written by hand\n1 1:0.5 # first\n  # \n0 2:1.5\n")
    configure(job, training={"ContentType": "text/libsvm"})
    data = read_training(job)
    np.testing.assert_array_equal(data.features, [[0.5, 0], [0, 1.5]])
    assert data.labels.tolist() == [1.0, 0.0]


def test_parquet_read_a_row_group_at_a_time(job: Paths) -> None:
    write_parquet(job.channel("training") / "iris.parquet", row_group_size=40)
    (job.channel("training") / SAMPLE_DATA.name).unlink()
    configure(job, training={"ContentType": "application/x-parquet"})
    blocks = list(channels(job)["training"].batches(rows=40))
    assert [len(block) for block in blocks] == [40, 40, 40, len(LABELS) - 120]
    assert_is_the_sample(read_training(job))


def test_a_file_that_is_not_parquet_is_named(job: Paths) -> None:
    replace_training_data(job, "part-0", "setosa,1,2\n")
    configure(job, training={"ContentType": "application/x-parquet"})
    with pytest.raises(ChannelError, match="part-0: not a Parquet file"):
        read_training(job)


@pytest.mark.parametrize("first_index", [1, 0])
def test_libsvm_counts_from_one_or_zero(job: Paths, first_index: int) -> None:
    replace_training_data(job, "iris.libsvm", libsvm(first_index))
    configure(job, training={"ContentType": "text/libsvm"})
    assert_is_the_sample(read_training(job))


def test_libsvm_absent_features_are_zero(job: Paths) -> None:
    replace_training_data(job, "part", "1 1:0.5 3:2\n0 2:1.5\n")
    configure(job, training={"ContentType": "text/libsvm"})
    data = read_training(job)
    np.testing.assert_array_equal(data.features, [[0.5, 0, 2], [0, 1.5, 0]])
    assert data.labels.tolist() == [1.0, 0.0]


def test_a_bad_libsvm_pair_is_named(job: Paths) -> None:
    replace_training_data(job, "part", "1 1:0.5\n0 2=1.5\n")
    configure(job, training={"ContentType": "text/libsvm"})
    with pytest.raises(ChannelError, match=r"part line 2: expected index:value, got '2=1\.5'"):
        read_training(job)


def test_content_type_parameters_and_aliases(job: Paths) -> None:
    configure(
        job, training={"ContentType": "text/csv; label_size=1"}, other={"ContentType": "csv"}
    )
    found = channels(job)
    assert found["training"].content_type == found["other"].content_type == "text/csv"


@pytest.mark.parametrize(("spelling", "kind"), SPELLINGS)
def test_a_channel_reads_every_spelling_a_request_may_use(
    job: Paths, spelling: str, kind: str
) -> None:
    """One vocabulary: what serving reads under a name, training reads under it too."""
    if kind == NPY:  # Not a training format: the same name is refused, by that name.
        configure(job, training={"ContentType": spelling})
        with pytest.raises(ChannelError, match=f"ContentType '{spelling}'"):
            channels(job)
        return
    configure(job, training={"ContentType": spelling})
    assert channels(job)["training"].content_type == kind


def test_an_unknown_content_type_is_named(job: Paths) -> None:
    configure(job, training={"ContentType": "image/png"})
    with pytest.raises(ChannelError, match="channel 'training': ContentType 'image/png'"):
        channels(job)


def test_channels_are_the_directories_when_there_is_no_inputdataconfig(job: Paths) -> None:
    job.channel("extra").mkdir()
    assert sorted(channels(job)) == ["extra", "training"]


def test_not_utf8_is_named(job: Paths) -> None:
    replace_training_data(job, "part", b"setosa,1,2\n\xff\xfe,1,2\n")
    with pytest.raises(ChannelError, match="part: not UTF-8 text"):
        read_training(job)


def recordio(records: list[bytes]) -> bytes:
    out = b""
    for record in records:
        out += (
            struct.pack("<II", RECORDIO_MAGIC, len(record)) + record + b"\0" * (-len(record) % 4)
        )
    return out


def feed_fifo(path: Path, content: bytes) -> threading.Thread:
    """A FIFO at ``path`` written by a thread, as SageMaker feeds Pipe mode channels."""
    os.mkfifo(path)

    def write() -> None:
        with path.open("wb") as fifo:
            for start in range(0, len(content), 4096):
                fifo.write(content[start : start + 4096])

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return writer


@pytest.fixture
def pipe_job(job: Paths) -> Paths:
    (job.channel("training") / SAMPLE_DATA.name).unlink()
    job.channel("training").rmdir()
    return job


def test_pipe_mode_reads_one_fifo_per_pass(pipe_job: Paths) -> None:
    configure(pipe_job, training={"ContentType": "text/csv", "TrainingInputMode": "Pipe"})
    writers = [
        feed_fifo(pipe_job.input_data / f"training_{epoch}", SAMPLE_DATA.read_bytes())
        for epoch in range(2)
    ]
    channel = channels(pipe_job)["training"]
    assert channel.pipe
    assert_is_the_sample(channel.read())
    second = list(channel.batches(rows=64))  # The next pass: training_1, a block at a time.
    assert [len(block) for block in second] == [64, 64, len(LABELS) - 128]
    for writer in writers:
        writer.join(timeout=10)
        assert not writer.is_alive()


def test_pipe_mode_with_recordio_records(pipe_job: Paths) -> None:
    configure(
        pipe_job,
        training={
            "ContentType": "text/csv",
            "TrainingInputMode": "Pipe",
            "RecordWrapperType": "RecordIO",
        },
    )
    records = [line.encode() for line in SAMPLE_DATA.read_text().splitlines()]
    feed_fifo(pipe_job.input_data / "training_0", recordio(records))
    assert_is_the_sample(channels(pipe_job)["training"].read())


def test_pipe_mode_refuses_parquet_by_name(pipe_job: Paths) -> None:
    configure(
        pipe_job, training={"ContentType": "application/x-parquet", "TrainingInputMode": "Pipe"}
    )
    with pytest.raises(ChannelError, match="Parquet needs random access"):
        channels(pipe_job)["training"].read()


@pytest.mark.parametrize("content_type", ["jsonlines", "parquet", "libsvm", "pipe"])
def test_a_job_trains_from_each_content_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content_type: str
) -> None:
    paths = layout(tmp_path / "job", QUICK_HYPERPARAMETERS)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(paths.base))
    settings = {"ContentType": content_type}
    if content_type == "jsonlines":
        rows = [[label, *row] for label, row in zip(LABELS, FEATURES.tolist(), strict=True)]
        replace_training_data(paths, "iris.jsonl", jsonlines(rows))
    elif content_type == "parquet":
        (paths.channel("training") / SAMPLE_DATA.name).unlink()
        write_parquet(paths.channel("training") / "iris.parquet")
    elif content_type == "libsvm":
        replace_training_data(paths, "iris.libsvm", libsvm(1))
    else:
        settings = {"ContentType": "text/csv", "TrainingInputMode": "Pipe"}
        (paths.channel("training") / SAMPLE_DATA.name).unlink()
        paths.channel("training").rmdir()
        feed_fifo(paths.input_data / "training_0", SAMPLE_DATA.read_bytes())
    configure(paths, training=settings)
    assert training.main() == 0, paths.failure.read_text()
    assert json.loads((paths.model / "metadata.json").read_text()) == {"n_features": N_FEATURES}


def test_stratified_split_keeps_class_shares_and_is_seeded() -> None:
    data = Dataset(FEATURES, np.asarray(LABELS))
    train, validation = stratified_split(data, 0.2, seed=3)
    assert len(train) + len(validation) == len(data)
    assert sorted(np.unique(validation.labels, return_counts=True)[1]) == [10, 10, 10]
    again_train, _ = stratified_split(data, 0.2, seed=3)
    np.testing.assert_array_equal(train.features, again_train.features)
    other_train, _ = stratified_split(data, 0.2, seed=4)
    assert not np.array_equal(train.features, other_train.features)


def test_stratified_split_leaves_every_class_a_training_row() -> None:
    data = Dataset(np.arange(4.0).reshape(4, 1), np.asarray(["a", "a", "a", "b"]))
    train, validation = stratified_split(data, 0.9, seed=0)
    assert set(train.labels) == {"a", "b"}
    assert len(validation) == 2


def test_a_regression_target_is_split_at_random() -> None:
    data = Dataset(np.arange(100.0).reshape(100, 1), np.linspace(0, 1, 100))
    _, validation = stratified_split(data, 0.25, seed=0)
    assert len(validation) == 25


def test_pipe_mode_waits_for_a_writer_within_a_bound(
    pipe_job: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIFO nobody writes: a plain open() would wait forever."""
    configure(pipe_job, training={"ContentType": "text/csv", "TrainingInputMode": "Pipe"})
    os.mkfifo(pipe_job.input_data / "training_0")
    monkeypatch.setenv("PIPE_MODE_WAIT_SECONDS", "0.5")
    started = time.monotonic()
    with pytest.raises(
        ChannelError, match=r"nothing was written to the pipe .*training_0 in 0.5 s"
    ):
        read_training(pipe_job)
    assert time.monotonic() - started < 5


def test_pipe_mode_stops_waiting_when_told_to(pipe_job: Paths) -> None:
    configure(pipe_job, training={"ContentType": "text/csv", "TrainingInputMode": "Pipe"})
    os.mkfifo(pipe_job.input_data / "training_0")
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(TrainingStopped, match=r"while waiting for .*training_0"):
        channels(pipe_job, stop)["training"].read()
    assert time.monotonic() - started < 5


def test_a_pipe_mode_job_stops_on_the_first_sigterm(pipe_job: Paths) -> None:
    """The job's own process, waiting on a FIFO nobody writes, stops on one SIGTERM."""
    configure(pipe_job, training={"ContentType": "text/csv", "TrainingInputMode": "Pipe"})
    fifo = pipe_job.input_data / "training_0"
    os.mkfifo(fifo)
    process = subprocess.Popen(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}", "train"],
        env={"SAGEMAKER_BASE_DIR": str(pipe_job.base), "PATH": "/usr/bin:/bin"},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:  # the runner has read its configuration: it waits now
        if "hyperparameters:" in line:
            break
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 1
    assert pipe_job.failure.read_text().splitlines()[0] == (
        f"TrainingStopped: stopped by signal SIGTERM while waiting for {fifo}"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        # SageMaker writes strings; a hand-written or corrupted file may not.
        ({"ContentType": 5}, "channel 'training': ContentType must be a string, got 5"),
        (
            {"TrainingInputMode": 5},
            "channel 'training': TrainingInputMode must be a string (File, Pipe, FastFile), got 5",
        ),
        (
            {"TrainingInputMode": "Stream"},
            "channel 'training': TrainingInputMode 'Stream' is not one of File, Pipe, FastFile",
        ),
        (
            {"S3DistributionType": ["FullyReplicated"]},
            "channel 'training': S3DistributionType must be a string"
            " (FullyReplicated, ShardedByS3Key), got ['FullyReplicated']",
        ),
        (
            {"RecordWrapperType": "Protobuf"},
            "channel 'training': RecordWrapperType 'Protobuf' is not one of None, RecordIO",
        ),
        ("text/csv", "channel 'training' must be a JSON object, got 'text/csv'"),
    ],
    ids=["content-type", "mode-type", "mode", "distribution", "wrapper", "not-an-object"],
)
def test_a_malformed_inputdataconfig_names_channel_and_setting(
    job: Paths, settings: object, message: str
) -> None:
    configure(job, training=settings)
    with pytest.raises(ChannelError) as raised:
        channels(job)
    assert str(raised.value) == f"inputdataconfig.json: {message}"
    assert training.main() == 1
    assert job.failure.read_text().splitlines()[0] == (
        f"ChannelError: inputdataconfig.json: {message}"
    )


def test_settings_take_sagemakers_spelling_whatever_the_case(job: Paths) -> None:
    configure(job, training={"TrainingInputMode": "file", "S3DistributionType": "shardedbys3key"})
    channel = channels(job)["training"]
    assert (channel.input_mode, channel.distribution) == ("File", "ShardedByS3Key")


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden"])
def test_a_channel_name_sagemaker_would_not_give_is_refused(job: Paths, name: str) -> None:
    configure(job, **{name: {}})
    with pytest.raises(ChannelError, match="not a channel name"):
        channels(job)


def test_reading_grows_one_array_instead_of_concatenating_blocks(job: Paths) -> None:
    """Memory holds the rows once: the blocks are copied into one array as they come (see
    bench/training_memory.py for the figures), never concatenated at the end."""
    rows = np.arange(1000 * 4, dtype=np.float64).reshape(1000, 4) / 7
    labels = np.arange(1000) % 3
    text = "".join(
        f"{label},{','.join(map(repr, row))}\n"
        for label, row in zip(labels.tolist(), rows.tolist(), strict=True)
    )
    replace_training_data(job, "a.csv", text)
    (job.channel("training") / "b.csv").write_text(text)
    channel = channels(job)["training"]
    data = channel._assemble(channel.batches(rows=64))  # 32 blocks of at most 64 rows
    np.testing.assert_array_equal(data.features, np.concatenate([rows, rows]))
    np.testing.assert_array_equal(data.labels, np.concatenate([labels, labels]))
    assert data.features.flags.owndata  # one buffer, cut to the rows read
    assert data.features.shape == (2000, 4)


def test_files_of_different_widths_are_named(job: Paths) -> None:
    (job.channel("training") / "wide.csv").write_text("1,2,3,4,5,6\n")
    with pytest.raises(ChannelError, match="a file has 5 features, the one before it 4"):
        read_training(job)


@pytest.mark.parametrize("labels", ["classes", "regression", "strings"])
def test_an_in_place_split_is_the_split_without_a_copy(labels: str) -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(5000, 3))
    targets = {
        "classes": rng.integers(0, 4, 5000).astype(float),
        "regression": rng.normal(size=5000),
        "strings": rng.choice(["setosa", "versicolor", "virginica"], 5000),
    }[labels]
    train, validation = stratified_split(Dataset(features, targets), 0.2, seed=3)
    original = Dataset(features.copy(), targets.copy())
    moved, moved_validation = stratified_split(original, 0.2, seed=3, in_place=True)
    np.testing.assert_array_equal(moved.features, train.features)
    np.testing.assert_array_equal(moved.labels, train.labels)
    np.testing.assert_array_equal(moved_validation.features, validation.features)
    assert np.shares_memory(moved.features, original.features)  # moved up, not copied
    assert len(moved) + len(moved_validation) == 5000
