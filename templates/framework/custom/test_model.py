"""What is particular to this project's model (plain NumPy); the rest of the suite is generic.

The constants at the top are what the generic tests need to know about the model.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from {{ cookiecutter.package_name }} import model, training
from {{ cookiecutter.package_name }}.channels import Dataset, TrainingData, channels
from {{ cookiecutter.package_name }}.checkpoints import Checkpoints
from {{ cookiecutter.package_name }}.cluster import Cluster
from {{ cookiecutter.package_name }}.environment import Paths
from {{ cookiecutter.package_name }}.job import Job, TrainingStopped

from .support import recorded_checkpoints

# Quick to train: the model the suite trains once and serves.
QUICK_HYPERPARAMETERS = {"epochs": "10"}
# Slow to train (many seconds), for stopping a job part-way.
LONG_HYPERPARAMETERS = {"epochs": "100000"}
# A value of the right type that the model itself rejects, and what the failure says.
LIBRARY_REJECTED = ({"prototypes_per_class": "500"}, "'prototypes_per_class' is 500")
# Several checkpoints' worth: the resume test stops it after its second checkpoint.
RESUME_HYPERPARAMETERS = {"epochs": "12", "checkpoint_every": "2"}
# Each epoch shuffles with a generator seeded by (seed, epoch), and the checkpoint's JSON
# holds every float64 exactly: a resumed job repeats the very same arithmetic.
RESUME_TOLERANCE = 0.0


def fingerprint(trained: model.Model) -> np.ndarray:
    """What must match between two models: the prototypes themselves."""
    return trained.prototypes


def sample(paths: Paths) -> Dataset:
    return channels(paths)["training"].read()


def test_hyperparameters_reach_the_model(job: Paths) -> None:
    job.hyperparameters.write_text(
        json.dumps({"epochs": "0", "prototypes_per_class": "2", "standardize": "False"})
    )
    assert training.main() == 0
    trained = model.load(job.model)
    data = sample(job)
    # No epochs: the prototypes are still the training rows they started from, unscaled.
    assert sorted(trained.classes) == ["setosa"] * 2 + ["versicolor"] * 2 + ["virginica"] * 2
    for name, prototype in zip(trained.classes, trained.prototypes, strict=True):
        assert (data.features[data.labels == name] == prototype).all(axis=1).any()


def test_training_learns(trained: Paths) -> None:
    data = sample(trained)
    accuracy = np.mean(model.predict(model.load(trained.model), data.features) == data.labels)
    assert accuracy > 0.93


def test_one_metric_line_per_epoch(job: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    job.hyperparameters.write_text(json.dumps({"epochs": "4"}))
    assert training.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("train:accuracy=") for line in lines) == 4
    assert sum(line.startswith("validation:accuracy=") for line in lines) == 4


def test_a_checkpoint_every_n_epochs(job: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    written = recorded_checkpoints(monkeypatch)
    job.hyperparameters.write_text(json.dumps({"epochs": "7", "checkpoint_every": "3"}))
    assert training.main() == 0
    assert written == [3, 6]
    # A checkpoint is the model file: the one after epoch 6 serves as it is.
    steps = Checkpoints(job.checkpoints).steps()
    assert steps == [6, 3]
    assert model.load(Checkpoints(job.checkpoints).path(6)).prototypes.shape == (9, 4)


def test_a_stop_ends_the_epoch_then_checkpoints_it(
    job: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = recorded_checkpoints(monkeypatch)
    stop = threading.Event()
    epochs: list[float] = []

    def log_metric(name: str, value: float) -> None:
        if name == "train:accuracy":
            epochs.append(value)
            if len(epochs) == 4:
                stop.set()  # What SIGTERM does, in the middle of epoch 4.

    hp = model.Hyperparameters(epochs=50, checkpoint_every=10)
    paths = Paths(job.base)
    running = Job(paths, Cluster(), Checkpoints(paths.checkpoints), log_metric, stop)
    with pytest.raises(TrainingStopped, match="after step 4"):
        model.train(TrainingData(sample(job)), hp, running)
    assert len(epochs) == 4
    assert written == [4]


def test_a_validation_only_class_fails_the_job_naming_it(job: Paths) -> None:
    data = sample(job)
    virginica = data.labels == "virginica"
    only = TrainingData(data.rows(~virginica), data.rows(virginica))
    with pytest.raises(ValueError, match="class 'virginica' has only 0 training rows"):
        model.initial_model(only, model.Hyperparameters())


def test_the_saved_model_is_plain_json(trained: Paths) -> None:
    document = json.loads((trained.model / model.MODEL_FILE).read_text())
    assert sorted(set(document["classes"])) == ["setosa", "versicolor", "virginica"]
    assert np.asarray(document["prototypes"]).shape == (len(document["classes"]), 4)


def test_predict_is_one_vectorised_call(trained: Paths) -> None:
    loaded = model.load(trained.model)
    rows = np.tile([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]], (500, 1))
    predictions = model.predict(loaded, rows)
    assert predictions.shape == (1000,)
    assert list(predictions[:2]) == ["setosa", "virginica"]


def test_nan_is_refused_with_a_reason(trained: Paths) -> None:
    with pytest.raises(ValueError, match="NaN"):
        model.predict(model.load(trained.model), np.array([[5.1, np.nan, 1.4, 0.2]]))
