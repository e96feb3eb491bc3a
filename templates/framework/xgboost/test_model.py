"""What is particular to this project's model (XGBoost); the rest of the suite is generic.

The constants at the top are what the generic tests need to know about the model.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xgboost

from {{ cookiecutter.package_name }} import hyperparameters, model, training
from {{ cookiecutter.package_name }}.channels import TrainingData
from {{ cookiecutter.package_name }}.checkpoints import Checkpoints
from {{ cookiecutter.package_name }}.cluster import Cluster
from {{ cookiecutter.package_name }}.environment import Paths, cpu_count
from {{ cookiecutter.package_name }}.job import Job, MetricLogger, TrainingStopped

from .support import (
    SAMPLE_FEATURES,
    SAMPLE_LABELS,
    layout,
    run_hosts,
    start_hosts,
)

# Quick to train: the model the suite trains once and serves.
QUICK_HYPERPARAMETERS = {"num_round": "20"}
# Slow to train (many seconds), for stopping a job part-way.
LONG_HYPERPARAMETERS = {"num_round": "100000", "eta": '"0.01"', "checkpoint_every": "1000"}
# A value of the right type that the library itself rejects, and what the failure says.
LIBRARY_REJECTED = ({"grow_policy": "sideways"}, "hyperparameter 'grow_policy'")
# Several checkpoints' worth, with row and column sampling: resuming must redraw the samples.
RESUME_HYPERPARAMETERS = {
    "num_round": "50",
    "checkpoint_every": "10",
    "nthread": "1",  # Iris is tiny: more threads only wait for each other.
    "subsample": "0.7",
    "colsample_bytree": "0.7",
}
# Boosting the remaining rounds on the restored booster grows the very same trees, on every
# XGBoost release: the predictions of the training rows are rebuilt from the trees exactly,
# and the row and column sampling are seeded by the round number (seed_per_iteration, and a
# fresh column sampler every round: see model.py).
RESUME_TOLERANCE = 0.0

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]  # A setosa, a virginica.


def fingerprint(classifier: model.Classifier) -> np.ndarray:
    """What must match between two models: class probabilities over the sample data."""
    return classifier.booster.inplace_predict(SAMPLE_FEATURES)


def metric_values(output: str, name: str) -> list[float]:
    return [float(v) for v in re.findall(rf"^{name}=([0-9.]+)$", output, re.MULTILINE)]


def sample_data(tmp_path: Path, hp: model.Hyperparameters) -> TrainingData:
    data, _ = training.read_data(layout(tmp_path / "data"), hp)
    return data


def new_job(tmp_path: Path, log_metric: Callable[[str, float], None] | None = None) -> Job:
    """A single-host job whose checkpoints go to ``tmp_path / "checkpoints"``."""
    return Job(
        Paths(tmp_path / "opt_ml"),
        Cluster(),
        Checkpoints(tmp_path / "checkpoints"),
        log_metric or MetricLogger(training.all_metrics()),
    )


def test_hyperparameters_reach_the_booster(tmp_path: Path) -> None:
    raw = {"num_round": '"7"', "max_depth": "1", "eta": "0.2", "subsample": "0.9"}
    hp = hyperparameters.load(model.Hyperparameters, {**raw, "grow_policy": "lossguide"})
    booster = model.train(sample_data(tmp_path, hp), hp, new_job(tmp_path)).booster
    assert booster.num_boosted_rounds() == 7
    trees = booster.get_dump()
    assert len(trees) == 7 * 3  # One tree per class and round.
    assert all(len(tree.splitlines()) == 3 for tree in trees)  # A split and two leaves.
    config = json.loads(booster.save_config())
    train_param = config["learner"]["gradient_booster"]["tree_train_param"]
    assert float(train_param["eta"]) == pytest.approx(0.2)
    assert float(train_param["subsample"]) == pytest.approx(0.9)
    assert train_param["grow_policy"] == "lossguide"
    assert config["learner"]["generic_param"]["seed_per_iteration"] == "1"


@pytest.mark.parametrize(("nthread", "threads"), [(1, 1), (0, cpu_count())])
def test_training_uses_nthread_or_every_cpu(tmp_path: Path, nthread: int, threads: int) -> None:
    hp = model.Hyperparameters(num_round=2, nthread=nthread)
    classifier = model.train(sample_data(tmp_path, hp), hp, new_job(tmp_path))
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


def test_early_stopping_carries_over_a_resume(tmp_path: Path) -> None:
    hp = model.Hyperparameters(num_round=1000, eta=0.5, early_stopping_rounds=5, nthread=1)
    data = sample_data(tmp_path, hp)
    rounds: list[float] = []
    stop_after: list[int] = []

    def count_rounds(name: str, value: float) -> None:
        if name == "validation:mlogloss":
            rounds.append(value)
            if len(rounds) in stop_after:
                stopped.stop.set()  # What SIGTERM does, during that round.

    whole = model.train(data, hp, new_job(tmp_path / "whole", count_rounds))
    best = int(whole.booster.attr("best_iteration"))
    assert len(rounds) == best + 1 + 5 < 1000
    assert whole.booster.num_boosted_rounds() == best + 1

    rounds.clear()
    stop_after.append(best + 3)  # Two rounds after the best one: early stopping is counting.
    stopped = new_job(tmp_path / "stopped", count_rounds)
    with pytest.raises(TrainingStopped, match=f"after step {best + 3};"):
        model.train(data, hp, stopped)
    resumed = model.train(data, hp, new_job(tmp_path / "stopped", count_rounds))
    assert len(rounds) == best + 1 + 5  # The resumed job stopped where the whole one did.
    assert resumed.booster.save_raw("json") == whole.booster.save_raw("json")


def test_metrics_are_read_from_the_evaluation_line() -> None:
    line = "[3]\ttrain-mlogloss:0.5211\tvalidation-mlogloss:0.25"
    assert model.scores(line) == {"train:mlogloss": 0.5211, "validation:mlogloss": 0.25}


def test_early_stopping_needs_a_validation_set(job: Paths) -> None:
    job.hyperparameters.write_text(
        json.dumps({"early_stopping_rounds": "5", "validation_fraction": "0"})
    )
    assert training.main() == 1
    assert "'early_stopping_rounds' needs a validation set" in job.failure.read_text()


def test_a_value_xgboost_rejects_is_named_as_a_hyperparameter(job: Paths) -> None:
    job.hyperparameters.write_text(json.dumps({"grow_policy": "sideways"}))
    assert training.main() == 1
    reason = job.failure.read_text().splitlines()[0]
    assert reason.startswith("ValueError: hyperparameter 'grow_policy' rejected by XGBoost: ")
    assert "'sideways'" in reason


def test_xgboost_names_are_mapped_to_the_hyperparameters() -> None:
    # XGBoost reports eta as learning_rate, its main name.
    error = xgboost.core.XGBoostError("value -1 for Parameter learning_rate should be >= 0")
    found = model.rejected(error, model.Hyperparameters())
    assert str(found).startswith("hyperparameter 'eta' rejected by XGBoost: value -1")


def test_a_checkpoint_every_n_rounds_holds_the_booster(tmp_path: Path) -> None:
    hp = model.Hyperparameters(num_round=25, checkpoint_every=10)
    job = new_job(tmp_path)
    model.train(sample_data(tmp_path, hp), hp, job)
    assert job.checkpoints.steps() == [20, 10]
    for step in (10, 20):
        saved = model.load(job.checkpoints.path(step))
        assert saved.booster.num_boosted_rounds() == step
        assert list(saved.classes) == ["setosa", "versicolor", "virginica"]


def test_a_stop_ends_training_after_the_current_round_with_a_checkpoint(tmp_path: Path) -> None:
    hp = model.Hyperparameters(num_round=100, checkpoint_every=50)
    rounds = []

    def log_metric(name: str, value: float) -> None:
        if name == "train:mlogloss":
            rounds.append(value)
            if len(rounds) == 3:
                job.stop.set()  # What the runner's SIGTERM handler does, during round 3.

    job = new_job(tmp_path, log_metric)
    with pytest.raises(TrainingStopped, match="after step 3; checkpoint in"):
        model.train(sample_data(tmp_path, hp), hp, job)
    assert len(rounds) == 3
    assert job.checkpoints.steps() == [3]
    assert model.load(job.checkpoints.path(3)).booster.num_boosted_rounds() == 3


def test_two_hosts_train_one_model_together(tmp_path: Path) -> None:
    # One thread each: the two "hosts" share this machine's CPUs.
    hosts = run_hosts(tmp_path, {"num_round": "20", "nthread": "1"}, timeout=240)
    for rank, (_, finished) in enumerate(hosts):
        assert finished.returncode == 0, finished.stderr
        # Each host is one worker of XGBoost's collective, which sums the histograms.
        assert f"XGBoost collective: rank {rank} of world size 2" in finished.stderr
    (first, _), (second, _) = hosts
    assert not second.model.exists() or not any(second.model.iterdir())
    classifier = model.load(first.model)
    assert classifier.booster.num_boosted_rounds() == 20
    assert np.mean(model.predict(classifier, SAMPLE_FEATURES) == SAMPLE_LABELS) > 0.85


def test_a_stop_on_one_host_stops_every_host_after_the_same_round(tmp_path: Path) -> None:
    hps = {"num_round": "100000", "nthread": "1", "checkpoint_every": "100000"}
    hosts = start_hosts(tmp_path, hps, stdout=None)
    try:
        (first, one), (second, two) = hosts
        assert two.stderr is not None
        for line in two.stderr:  # Until both hosts are boosting together.
            if "XGBoost trains with" in line:
                break
        two.send_signal(signal.SIGTERM)  # Only the second host is asked to stop.
        assert two.wait(timeout=30) == 1
        assert one.wait(timeout=30) == 1
    finally:
        for _, process in hosts:
            process.kill()
            process.communicate()
    reasons = [paths.failure.read_text().splitlines()[0] for paths in (first, second)]
    assert all(reason.startswith("TrainingStopped") for reason in reasons), reasons
    steps = {int(re.findall(r"after step (\d+)", reason)[0]) for reason in reasons}
    assert len(steps) == 1  # Both hosts stopped after the same round...
    assert Checkpoints(first.checkpoints).steps() == list(steps)  # ...the first saved it.
    assert not second.checkpoints.exists()


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
