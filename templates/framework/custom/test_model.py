"""What is particular to this project's model (plain NumPy); the rest of the suite is generic.

The constants at the top are what the generic tests need to know about the model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from {{ cookiecutter.package_name }} import model, training
from {{ cookiecutter.package_name }}.environment import Paths

# Quick to train: the model the suite trains once and serves.
QUICK_HYPERPARAMETERS = {"epochs": "10"}
# Slow to train (many seconds), for stopping a job part-way.
LONG_HYPERPARAMETERS = {"epochs": "100000"}
# A value of the right type that the model itself rejects, and what the failure says.
LIBRARY_REJECTED = ({"learning_rate": "-0.1"}, "'learning_rate' must be positive")


def test_hyperparameters_reach_the_model(job: Paths) -> None:
    job.hyperparameters.write_text(
        json.dumps({"epochs": "0", "prototypes_per_class": "2", "standardize": "False"})
    )
    assert training.main() == 0
    trained = model.load(job.model)
    features, labels = training.read_csv_channel(job, "training")
    # No epochs: the prototypes are still the training rows they started from.
    assert sorted(trained.classes) == ["setosa"] * 2 + ["versicolor"] * 2 + ["virginica"] * 2
    for name, prototype in zip(trained.classes, trained.prototypes, strict=True):
        assert (features[labels == name] == prototype).all(axis=1).any()


def test_too_many_prototypes_fail_the_job_naming_it(job: Paths) -> None:
    job.hyperparameters.write_text(json.dumps({"prototypes_per_class": "500"}))
    assert training.main() == 1
    assert "'prototypes_per_class' is 500" in job.failure.read_text().splitlines()[0]


def test_training_learns(trained: Paths, job: Paths) -> None:
    features, labels = training.read_csv_channel(job, "training")
    accuracy = np.mean(model.predict(model.load(trained.model), features) == labels)
    assert accuracy > 0.93


def test_one_metric_line_per_epoch(job: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    job.hyperparameters.write_text(json.dumps({"epochs": "4"}))
    assert training.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("epoch=")] == [
        f"epoch={n}.000000" for n in range(1, 5)
    ]
    assert sum(line.startswith("validation:accuracy=") for line in lines) == 4


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


def test_validation_fraction_is_checked(job: Paths) -> None:
    job.hyperparameters.write_text(json.dumps({"validation_fraction": "1.5"}))
    assert training.main() == 1
    assert "'validation_fraction' must be in [0, 1)" in job.failure.read_text().splitlines()[0]
