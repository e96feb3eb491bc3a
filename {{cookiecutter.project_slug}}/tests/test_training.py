import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import fields

import numpy as np

from {{ cookiecutter.package_name }} import model, training
from {{ cookiecutter.package_name }}.environment import Paths

from .support import N_FEATURES, SAMPLE_DATA
from .test_model import LIBRARY_REJECTED, LONG_HYPERPARAMETERS


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
    features, labels = training.read_csv_channel(job, "training")
    accuracy = float(np.mean(model.predict(loaded, features) == labels))
    assert accuracy > 0.85


def test_metrics_are_printed_one_parseable_line_each(job: Paths) -> None:
    result = run_job(job)
    assert result.returncode == 0, result.stderr
    # What a MetricDefinitions entry would use as its Regex.
    found = re.findall(r"^validation:accuracy=([0-9.]+)$", result.stdout, re.MULTILINE)
    assert found, result.stdout
    assert 0.8 < float(found[-1]) <= 1.0


def first_field_of_type(kind: type) -> str:
    return next(f.name for f in fields(model.Hyperparameters) if f.type in (kind, kind.__name__))


def test_a_mistyped_hyperparameter_fails_the_job_naming_it(job: Paths) -> None:
    name = first_field_of_type(int)
    job.hyperparameters.write_text(json.dumps({name: "many"}))
    assert run_job(job).returncode != 0
    assert job.failure.read_text().splitlines()[0] == (
        f"HyperparameterError: hyperparameter {name!r}: expected an integer, got 'many'"
    )


def test_an_unknown_hyperparameter_fails_the_job_listing_the_known_ones(job: Paths) -> None:
    job.hyperparameters.write_text(json.dumps({"no_such_thing": "0.1"}))
    assert run_job(job).returncode != 0
    reason = job.failure.read_text().splitlines()[0]
    known = ", ".join(sorted(f.name for f in fields(model.Hyperparameters)))
    assert reason == f"HyperparameterError: unknown hyperparameter 'no_such_thing'; known: {known}"


def test_a_value_the_library_rejects_fails_the_job_naming_it(job: Paths) -> None:
    hyperparameters, named = LIBRARY_REJECTED
    job.hyperparameters.write_text(json.dumps(hyperparameters))
    assert run_job(job).returncode != 0
    reason = job.failure.read_text().splitlines()[0]
    assert named in reason
    assert len(reason) < 1024  # SageMaker shows the first 1,024 characters


def test_missing_channel_fails_the_job(job: Paths) -> None:
    (job.channel("training") / SAMPLE_DATA.name).unlink()
    job.channel("training").rmdir()
    assert training.main() == 1
    assert job.failure.read_text().startswith("TrainingError: channel 'training' is missing")


def test_empty_channel_fails_the_job(job: Paths) -> None:
    (job.channel("training") / SAMPLE_DATA.name).unlink()
    assert training.main() == 1
    assert job.failure.read_text().startswith("TrainingError: channel 'training' is empty")


def test_malformed_csv_line_is_named(job: Paths) -> None:
    data = job.channel("training") / SAMPLE_DATA.name
    lines = data.read_text().splitlines()
    lines[4] = "setosa,5.0,oops,1.4,0.2"
    data.write_text("\n".join(lines) + "\n")
    assert training.main() == 1
    assert job.failure.read_text().startswith(
        f"TrainingError: {SAMPLE_DATA.name} line 5: a feature is not a number"
    )


def test_ragged_csv_line_is_named(job: Paths) -> None:
    with (job.channel("training") / SAMPLE_DATA.name).open("a") as data:
        data.write("setosa,1.0,2.0\n")
    assert training.main() == 1
    assert "line 151: expected 5 columns" in job.failure.read_text()


def test_csv_files_of_a_channel_are_read_together(job: Paths) -> None:
    extra = job.channel("training") / "more" / "part-2.csv"
    extra.parent.mkdir()
    extra.write_text("virginica,6.3,3.3,6.0,2.5\n")
    (job.channel("training") / ".hidden").write_text("not data")
    features, labels = training.read_csv_channel(job, "training")
    assert features.shape == (151, N_FEATURES)
    assert labels[-1] == "virginica"


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
    assert training.main() == 0
    env = os.environ
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
