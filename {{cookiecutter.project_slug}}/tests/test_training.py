import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest

from {{ cookiecutter.package_name }} import model, training
from {{ cookiecutter.package_name }}.__main__ import main
from {{ cookiecutter.package_name }}.channels import channels
from {{ cookiecutter.package_name }}.environment import Paths
from {{ cookiecutter.package_name }}.job import metric_definitions

from .support import N_FEATURES, SAMPLE_DATA, run_hosts
from .test_model import LIBRARY_REJECTED, LONG_HYPERPARAMETERS, QUICK_HYPERPARAMETERS


def run_job(paths: Paths) -> subprocess.CompletedProcess[str]:
    """``python -m <package> train`` against ``paths``, as the container runs it."""
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}", "train"],
        env={"SAGEMAKER_BASE_DIR": str(paths.base), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_train_writes_a_model_the_server_can_load(job: Paths) -> None:
    assert training.main() == 0
    assert not job.failure.exists()
    assert json.loads((job.model / "metadata.json").read_text()) == {"n_features": N_FEATURES}
    loaded = model.load(job.model)
    data = channels(job)["training"].read()
    accuracy = float(np.mean(model.predict(loaded, data.features) == data.labels))
    assert accuracy > 0.85


def test_metrics_are_printed_one_line_each_that_the_definitions_read(job: Paths) -> None:
    job.hyperparameters.write_text(json.dumps(QUICK_HYPERPARAMETERS))
    shutil.copytree(job.channel("training"), job.channel("test"))
    result = run_job(job)
    assert result.returncode == 0, result.stderr
    printed = dict(re.findall(r"^([\w:]+)=(\S+)$", result.stdout, re.MULTILINE))
    assert "validation:accuracy" in printed
    assert 0.8 < float(printed["test:accuracy"]) <= 1.0
    definitions = metric_definitions(training.all_metrics())
    assert [d["Name"] for d in definitions] == list(training.all_metrics())
    for definition in definitions:
        if definition["Name"] in printed:  # Each regex reads its own line, and only it.
            values = re.findall(definition["Regex"], result.stdout, re.MULTILINE)
            assert float(values[-1]) == float(printed[definition["Name"]]), definition
    undeclared = set(printed) - set(training.all_metrics())
    assert not undeclared
    final = json.loads((job.output_data / "metrics.json").read_text())
    assert final["test:accuracy"] == float(printed["test:accuracy"])


def test_metric_definitions_command_prints_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["metric-definitions"]) == 0
    assert json.loads(capsys.readouterr().out) == metric_definitions(training.all_metrics())


def test_an_undeclared_metric_is_refused(job: Paths) -> None:
    logger = training.MetricLogger(model.METRICS)
    with pytest.raises(ValueError, match=r"not declared in model\.METRICS"):
        logger("made:up", 1.0)


def first_field_of_type(kind: type) -> str:
    return next(f.name for f in fields(model.Hyperparameters) if f.type in (kind, kind.__name__))


def test_a_mistyped_hyperparameter_fails_the_job_naming_it(job: Paths) -> None:
    name = first_field_of_type(int)
    job.hyperparameters.write_text(json.dumps({name: "many"}))
    assert training.main() == 1
    assert job.failure.read_text().splitlines()[0] == (
        f"HyperparameterError: hyperparameter {name!r}: expected an integer, got 'many'"
    )


def test_an_unknown_hyperparameter_fails_the_job_listing_the_known_ones(job: Paths) -> None:
    job.hyperparameters.write_text(json.dumps({"no_such_thing": "0.1"}))
    assert training.main() == 1
    reason = job.failure.read_text().splitlines()[0]
    known = ", ".join(sorted(f.name for f in fields(model.Hyperparameters)))
    assert reason == f"HyperparameterError: unknown hyperparameter 'no_such_thing'; known: {known}"


def test_a_value_the_library_rejects_fails_the_job_naming_it(job: Paths) -> None:
    hyperparameters, named = LIBRARY_REJECTED
    job.hyperparameters.write_text(json.dumps(hyperparameters))
    assert training.main() == 1
    reason = job.failure.read_text().splitlines()[0]
    assert named in reason
    assert len(reason) < 1024  # SageMaker shows the first 1,024 characters


def test_missing_channel_fails_the_job(job: Paths) -> None:
    shutil.rmtree(job.channel("training"))
    assert training.main() == 1
    assert job.failure.read_text().startswith("ChannelError: channel 'training' is missing")


def test_a_channel_missing_from_inputdataconfig_fails_the_job(job: Paths) -> None:
    job.input_data_config.write_text(json.dumps({"train": {"ContentType": "text/csv"}}))
    assert training.main() == 1
    assert job.failure.read_text().splitlines()[0] == (
        "ChannelError: channel 'training' is missing: the job has train"
    )


def test_empty_channel_fails_the_job(job: Paths) -> None:
    (job.channel("training") / SAMPLE_DATA.name).unlink()
    assert training.main() == 1
    assert job.failure.read_text().startswith("ChannelError: channel 'training' is empty")


def test_malformed_csv_line_is_named(job: Paths) -> None:
    data = job.channel("training") / SAMPLE_DATA.name
    lines = data.read_text().splitlines()
    lines[4] = "setosa,5.0,oops,1.4,0.2"
    data.write_text("\n".join(lines) + "\n")
    assert training.main() == 1
    assert job.failure.read_text().startswith(
        f"ChannelError: {SAMPLE_DATA.name} line 5: a feature is not a number"
    )


def test_ragged_csv_line_is_named(job: Paths) -> None:
    with (job.channel("training") / SAMPLE_DATA.name).open("a") as data:
        data.write("setosa,1.0,2.0\n")
    assert training.main() == 1
    assert "line 151: expected 5 columns" in job.failure.read_text()


def test_a_value_out_of_bounds_fails_the_job_naming_it(job: Paths) -> None:
    job.hyperparameters.write_text(json.dumps({"validation_fraction": "1.5"}))
    assert training.main() == 1
    assert job.failure.read_text().splitlines()[0] == (
        "HyperparameterError: hyperparameter 'validation_fraction' must be < 1, got '1.5'"
    )


def test_the_validation_channel_replaces_the_split(job: Paths, capfd) -> None:
    job.hyperparameters.write_text(json.dumps(QUICK_HYPERPARAMETERS))
    rows = SAMPLE_DATA.read_text().splitlines()
    job.channel("validation").mkdir()
    (job.channel("validation") / "held-out.csv").write_text("\n".join(rows[::5]) + "\n")
    assert training.main() == 0
    assert "training on 150 rows x 4 features, validating on 30 rows" in capfd.readouterr().err


def test_a_validation_channel_of_another_width_fails_the_job(job: Paths) -> None:
    job.channel("validation").mkdir()
    (job.channel("validation") / "v.csv").write_text("setosa,1.0,2.0\n")
    assert training.main() == 1
    assert job.failure.read_text().splitlines()[0] == (
        f"ChannelError: channel 'validation' has 2 features, 'training' has {N_FEATURES}"
    )


def test_no_validation_when_the_fraction_is_zero(job: Paths, capfd) -> None:
    job.hyperparameters.write_text(
        json.dumps({**QUICK_HYPERPARAMETERS, "validation_fraction": "0"})
    )
    assert training.main() == 0
    out, err = capfd.readouterr()
    assert "training on 150 rows x 4 features, validating on 0 rows" in err
    assert "validation:" not in out


def test_a_two_host_job_writes_one_model_on_the_first_host(tmp_path) -> None:
    (first, done), (second, other) = run_hosts(tmp_path, QUICK_HYPERPARAMETERS)
    assert done.returncode == 0, done.stderr
    assert other.returncode == 0, other.stderr
    assert "host algo-2 of algo-1, algo-2" in other.stderr
    assert json.loads((first.model / "metadata.json").read_text()) == {"n_features": N_FEATURES}
    assert not second.model.exists() or not any(second.model.iterdir())
    assert not first.failure.exists()
    assert not second.failure.exists()


def test_sigterm_stops_the_job_with_a_failure_file(job: Paths) -> None:
    # Enough trees that training is still running when the signal arrives.
    job.hyperparameters.write_text(json.dumps(LONG_HYPERPARAMETERS))
    process = subprocess.Popen(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}", "train"],
        env={"SAGEMAKER_BASE_DIR": str(job.base), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    for line in process.stderr:  # Wait until the model is being fitted.
        if b"training on" in line:
            break
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) != 0
    assert "stopped by signal SIGTERM" in job.failure.read_text().splitlines()[0]


def test_sm_variables_are_exported_for_the_model(job: Paths, monkeypatch) -> None:
    seen: dict[str, str] = {}

    def train(data, hp, job):  # Records what the model's code would find.
        seen.update(os.environ)

    monkeypatch.setattr(model, "train", train)
    for name in [n for n in os.environ if n.startswith("SM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SM_NUM_CPUS", "7")  # what the job's environment sets wins
    job.resource_config.write_text(
        json.dumps(
            {
                "current_host": "algo-2",
                "hosts": ["algo-2", "algo-1"],
                "network_interface_name": "eth1",
            }
        )
    )
    job.input_data_config.write_text(
        json.dumps(
            {"training": {"ContentType": "text/csv"}, "validation": {"ContentType": "text/csv"}}
        )
    )
    shutil.copytree(job.channel("training"), job.channel("validation"))
    assert training.main() == 0  # algo-2 writes no model: train's result is not saved.
    env = seen
    assert env["SM_MODEL_DIR"] == str(job.model)
    assert env["SM_OUTPUT_DATA_DIR"] == str(job.output_data)
    assert env["SM_CHANNEL_TRAINING"] == str(job.channel("training"))
    assert env["SM_CHANNEL_VALIDATION"] == str(job.channel("validation"))
    assert json.loads(env["SM_CHANNELS"]) == ["training", "validation"]
    assert json.loads(env["SM_HOSTS"]) == ["algo-1", "algo-2"]
    assert env["SM_CURRENT_HOST"] == "algo-2"
    assert env["SM_NETWORK_INTERFACE_NAME"] == "eth1"
    assert env["SM_NUM_CPUS"] == "7"
    assert int(env["SM_NUM_GPUS"]) >= 0
    hps = json.loads(env["SM_HPS"])
    assert set(hps) == {f.name for f in fields(model.Hyperparameters)}
    first = next(iter(hps))
    assert env[f"SM_HP_{first.upper()}"] == (
        hps[first] if isinstance(hps[first], str) else json.dumps(hps[first])
    )


def test_a_huge_hyperparameter_makes_a_small_failure_file_and_log(
    job: Paths, capfd: pytest.CaptureFixture[str]
) -> None:
    """A 10 MB value once made a 30 MB log and a 20 MB failure file."""
    name = first_field_of_type(int)
    job.hyperparameters.write_text(json.dumps({name: "7" * 10_000_000}))
    assert training.main() == 1
    failure = job.failure.read_text()
    reason = failure.splitlines()[0]
    assert reason.startswith(f"HyperparameterError: hyperparameter {name!r}: expected an integer")
    assert len(reason) <= training.REASON_CHARACTERS
    assert len(failure) <= training.FAILURE_FILE_CHARACTERS
    out, err = capfd.readouterr()
    assert len(out) + len(err) < 10_000


def test_the_failure_file_keeps_the_reason_first_and_its_size_bounded(job: Paths) -> None:
    def deep(n: int) -> None:
        if n:
            deep(n - 1)
        raise ValueError("x" * 100_000)

    try:
        deep(500)
    except ValueError as exc:
        training.write_failure(job, exc)
    text = job.failure.read_text()
    assert len(text) <= training.FAILURE_FILE_CHARACTERS
    first, blank, *rest = text.splitlines()
    assert first.startswith("ValueError: xxx")
    assert first.endswith("... (100,012 characters)")
    assert len(first) <= training.REASON_CHARACTERS
    assert blank == ""
    assert rest[0].endswith(" characters cut]")  # the traceback's start went...
    assert text.endswith("x" * 10_000 + "\n")  # ...its end, the innermost, stayed


def test_a_failure_file_that_cannot_be_written_is_one_line_on_stderr(job: Paths) -> None:
    """Root ignores permissions, so /opt/ml/output is a file here: nothing can go under it."""
    shutil.rmtree(job.channel("training"))
    assert not job.failure.parent.exists()
    job.failure.parent.write_text("not a folder")
    result = run_job(job)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "failure file" in line]
    assert lines == [
        f"cannot write the failure file {job.failure} (File exists); the job failed with"
        " ChannelError: channel 'training' is missing: the job has no channels"
    ]
    assert "Traceback" not in result.stderr
