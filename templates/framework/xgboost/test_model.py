"""What is particular to this project's model (XGBoost); the rest of the suite is generic.

The constants at the top are what the generic tests need to know about the model.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import xgboost

from {{ cookiecutter.package_name }} import model, training
from {{ cookiecutter.package_name }}.environment import Paths, cpu_count

# Quick to train: the model the suite trains once and serves.
QUICK_HYPERPARAMETERS = {"num_round": "20"}
# Slow to train (many seconds), for stopping a job part-way.
LONG_HYPERPARAMETERS = {"num_round": "100000", "eta": '"0.01"'}
# A value of the right type that the library itself rejects, and what the failure says.
LIBRARY_REJECTED = ({"eta": "-1"}, "hyperparameter 'eta'")

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]  # A setosa, a virginica.


def metric_values(output: str, name: str) -> list[float]:
    return [float(v) for v in re.findall(rf"^{name}=([0-9.]+)$", output, re.MULTILINE)]


def test_hyperparameters_reach_the_booster(job: Paths) -> None:
    job.hyperparameters.write_text(json.dumps({"num_round": '"7"', "max_depth": "1"}))
    assert training.main() == 0
    booster = model.load(job.model).booster
    assert booster.num_boosted_rounds() == 7
    trees = booster.get_dump()
    assert len(trees) == 7 * 3  # One tree per class and round.
    assert all(len(tree.splitlines()) == 3 for tree in trees)  # A split and two leaves.


@pytest.mark.parametrize(("nthread", "threads"), [(1, 1), (0, cpu_count())])
def test_training_uses_nthread_or_every_cpu(job: Paths, nthread: int, threads: int) -> None:
    features, labels = training.read_csv_channel(job, "training")
    hp = model.Hyperparameters(num_round=2, nthread=nthread)
    classifier = model.train(features, labels, hp, lambda name, value: None)
    config = json.loads(classifier.booster.save_config())
    assert config["learner"]["generic_param"]["nthread"] == str(threads)


def test_every_round_prints_its_metrics(job: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    job.hyperparameters.write_text(json.dumps({"num_round": "5"}))
    assert training.main() == 0
    output = capsys.readouterr().out
    assert all(re.fullmatch(r"\w+:\w+=[0-9.]+", line) for line in output.splitlines())
    assert len(metric_values(output, "train:mlogloss")) == 5
    losses = metric_values(output, "validation:mlogloss")
    assert len(losses) == 5
    assert losses == sorted(losses, reverse=True)  # Boosting on iris: better every round.
    assert len(metric_values(output, "validation:accuracy")) == 1


def test_early_stopping_keeps_the_best_round(
    job: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    job.hyperparameters.write_text(
        json.dumps({"num_round": "1000", "eta": "0.5", "early_stopping_rounds": "5"})
    )
    assert training.main() == 0
    losses = metric_values(capsys.readouterr().out, "validation:mlogloss")
    assert len(losses) < 1000
    assert losses[-6] == min(losses)  # Stopped five rounds after the best one...
    assert model.load(job.model).booster.num_boosted_rounds() == len(losses) - 5  # ...kept.


def test_early_stopping_needs_a_validation_set(job: Paths) -> None:
    job.hyperparameters.write_text(
        json.dumps({"early_stopping_rounds": "5", "validation_fraction": "0"})
    )
    assert training.main() == 1
    assert "'early_stopping_rounds' needs a validation set" in job.failure.read_text()


@pytest.mark.parametrize(("name", "value"), [("eta", "-1"), ("gamma", "-1"), ("subsample", "2")])
def test_a_value_xgboost_rejects_is_named_as_a_hyperparameter(
    job: Paths, name: str, value: str
) -> None:
    job.hyperparameters.write_text(json.dumps({name: value}))
    assert training.main() == 1
    reason = job.failure.read_text().splitlines()[0]
    assert reason.startswith(f"ValueError: hyperparameter {name!r} rejected by XGBoost: ")


def test_the_model_is_a_ubjson_booster_and_class_names(trained: Paths) -> None:
    raw = (trained.model / "model.ubj").read_bytes()
    assert raw[:1] == b"{"
    assert raw[:2] != b'{"'  # Binary JSON, not JSON text.
    assert b"learner" in raw
    booster = xgboost.Booster(model_file=trained.model / "model.ubj")
    assert booster.num_boosted_rounds() == int(QUICK_HYPERPARAMETERS["num_round"])
    classes = json.loads((trained.model / "classes.json").read_text())
    assert classes == ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize(("workers", "threads"), [(1, cpu_count()), (cpu_count(), 1)])
def test_served_booster_uses_its_share_of_the_cpus(
    trained: Paths, monkeypatch: pytest.MonkeyPatch, workers: int, threads: int
) -> None:
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", str(workers))
    config = json.loads(model.load(trained.model).booster.save_config())
    assert config["learner"]["generic_param"]["nthread"] == str(threads)


def test_predict_is_one_vectorised_call(trained: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    classifier = model.load(trained.model)
    calls = []
    inplace_predict = xgboost.Booster.inplace_predict

    def counted(self: xgboost.Booster, data: np.ndarray, **kwargs: object) -> np.ndarray:
        calls.append(len(data))
        return inplace_predict(self, data, **kwargs)

    monkeypatch.setattr(xgboost.Booster, "inplace_predict", counted)
    predictions = model.predict(classifier, np.tile(ROWS, (500, 1)))
    assert calls == [1000]
    assert predictions.shape == (1000,)
    assert list(predictions[:2]) == ["setosa", "virginica"]


def test_missing_values_take_the_default_branch(trained: Paths) -> None:
    classifier = model.load(trained.model)
    rows = np.array([[5.1, np.nan, 1.4, 0.2], [np.nan] * 4])
    predictions = model.predict(classifier, rows)
    assert predictions[0] == "setosa"  # Sepal width does not decide a setosa.
    assert predictions[1] in {"setosa", "versicolor", "virginica"}


def test_validation_fraction_is_checked(job: Paths) -> None:
    job.hyperparameters.write_text(json.dumps({"validation_fraction": "1.5"}))
    assert training.main() == 1
    assert "'validation_fraction' must be in [0, 1)" in job.failure.read_text().splitlines()[0]
