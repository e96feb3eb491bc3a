"""What is particular to this project's model (LightGBM); the rest of the suite is generic.

The constants at the top are what the generic tests need to know about the model.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from pathlib import Path

import lightgbm
import numpy as np
import pytest

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
QUICK_HYPERPARAMETERS = {"num_iterations": "20"}
# Slow to train (many seconds), for stopping a job part-way.
LONG_HYPERPARAMETERS = {
    "num_iterations": "100000",
    "learning_rate": '"0.01"',
    "checkpoint_every": "1000",
}
# A value of the right type that the library itself rejects, and what the failure says.
LIBRARY_REJECTED = ({"boosting": "sideways"}, "hyperparameter 'boosting'")
# Several checkpoints' worth, with feature sampling: resuming must redraw the same features.
RESUME_HYPERPARAMETERS = {
    "num_iterations": "50",
    "checkpoint_every": "10",
    "num_threads": "1",  # Iris is tiny: more threads only wait for each other.
    "feature_fraction": "0.7",
}
# Boosting the remaining iterations on the restored booster grows the very same trees: the
# text model keeps every value exactly, LightGBM rebuilds the rows' scores from the trees,
# and feature_fraction is reseeded from the iteration number. (Bagging would not be exact.)
RESUME_TOLERANCE = 0.0
# Two "hosts" on this machine: LightGBM finds its rank from its local address and port,
# and 127.0.0.1 is the loopback address this machine lists as its own.
ONE_MACHINE = {"algo-1": "127.0.0.1", "algo-2": "127.0.0.1"}

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]  # A setosa, a virginica.


def fingerprint(classifier: model.Classifier) -> np.ndarray:
    """What must match between two models: class probabilities over the sample data."""
    return classifier.booster.predict(SAMPLE_FEATURES)


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
    raw = {"num_iterations": '"7"', "num_leaves": "2", "learning_rate": "0.2"}
    hp = hyperparameters.load(model.Hyperparameters, {**raw, "lambda_l2": "0.5"})
    booster = model.train(sample_data(tmp_path, hp), hp, new_job(tmp_path)).booster
    assert booster.current_iteration() == 7
    trees = booster.dump_model()["tree_info"]
    assert len(trees) == 7 * 3  # One tree per class and iteration.
    assert all(tree["num_leaves"] <= 2 for tree in trees)
    text = booster.model_to_string()  # The text model keeps the parameters it had.
    assert "\n[learning_rate: 0.2]\n" in text
    assert "\n[lambda_l2: 0.5]\n" in text


@pytest.mark.parametrize(("num_threads", "threads"), [("1", 1), ("0", cpu_count())])
def test_training_uses_num_threads_or_every_cpu(
    job: Paths, num_threads: str, threads: int
) -> None:
    job.hyperparameters.write_text(json.dumps({"num_iterations": "2", "num_threads": num_threads}))
    assert training.main() == 0
    assert f"\n[num_threads: {threads}]\n" in (job.model / "model.txt").read_text()


@pytest.mark.parametrize("verbosity", ["-1", "2"])
def test_stdout_holds_one_line_per_metric_and_iteration(
    job: Paths, capsys: pytest.CaptureFixture[str], verbosity: str
) -> None:
    job.hyperparameters.write_text(json.dumps({"num_iterations": "5", "verbosity": verbosity}))
    assert training.main() == 0
    output = capsys.readouterr().out
    # Nothing else, even when LightGBM is asked to talk: its messages go to the log.
    assert all(re.fullmatch(r"\w+:\w+=[0-9.]+", line) for line in output.splitlines())
    assert len(metric_values(output, "train:multi_logloss")) == 5
    losses = metric_values(output, "validation:multi_logloss")
    assert len(losses) == 5
    assert losses == sorted(losses, reverse=True)  # Boosting on iris: better every iteration.
    assert len(metric_values(output, "validation:accuracy")) == 1


def test_early_stopping_keeps_the_best_iteration(
    job: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    job.hyperparameters.write_text(
        json.dumps({"num_iterations": "1000", "learning_rate": "0.5", "early_stopping_round": "5"})
    )
    assert training.main() == 0
    losses = metric_values(capsys.readouterr().out, "validation:multi_logloss")
    assert len(losses) < 1000
    assert losses[-6] == min(losses)  # Stopped five iterations after the best one...
    assert model.load(job.model).booster.current_iteration() == len(losses) - 5  # ...kept.


def test_early_stopping_carries_over_a_resume(tmp_path: Path) -> None:
    hp = model.Hyperparameters(
        num_iterations=1000, learning_rate=0.5, early_stopping_round=5, num_threads=1
    )
    data = sample_data(tmp_path, hp)
    rounds: list[float] = []
    stop_after: list[int] = []

    def count_rounds(name: str, value: float) -> None:
        if name == "validation:multi_logloss":
            rounds.append(value)
            if len(rounds) in stop_after:
                stopped.stop.set()  # What SIGTERM does, during that iteration.

    whole = model.train(data, hp, new_job(tmp_path / "whole", count_rounds))
    best = whole.best_iteration
    assert len(rounds) == best + 5 < 1000
    assert whole.booster.best_iteration == best

    rounds.clear()
    stop_after.append(best + 2)  # Two iterations after the best one: early stopping counts.
    stopped = new_job(tmp_path / "stopped", count_rounds)
    with pytest.raises(TrainingStopped, match=f"after step {best + 2};"):
        model.train(data, hp, stopped)
    resumed = model.train(data, hp, new_job(tmp_path / "stopped", count_rounds))
    assert len(rounds) == best + 5  # The resumed job stopped where the whole one did.
    assert resumed.booster.best_iteration == best
    # The same trees; the parameters the text model ends with differ (num_iterations left).
    assert resumed.booster.dump_model()["tree_info"] == whole.booster.dump_model()["tree_info"]


def test_early_stopping_needs_a_validation_set(job: Paths) -> None:
    job.hyperparameters.write_text(
        json.dumps({"early_stopping_round": "5", "validation_fraction": "0"})
    )
    assert training.main() == 1
    assert "'early_stopping_round' needs a validation set" in job.failure.read_text()


@pytest.mark.parametrize(
    ("hps", "name", "says"),
    [
        ({"boosting": "sideways"}, "boosting", "Unknown boosting type sideways"),
        ({"boosting": "rf"}, "boosting", "bagging"),  # A random forest needs bagging.
    ],
)
def test_a_value_lightgbm_rejects_is_named_as_a_hyperparameter(
    job: Paths, hps: dict[str, str], name: str, says: str
) -> None:
    job.hyperparameters.write_text(json.dumps(hps))
    assert training.main() == 1
    reason = job.failure.read_text().splitlines()[0]
    assert reason.startswith(f"ValueError: hyperparameter {name!r} rejected by LightGBM: ")
    assert says in reason
    assert ".cpp" not in reason  # The C++ source location is left out.


def test_a_checkpoint_every_n_iterations_holds_the_booster(tmp_path: Path) -> None:
    hp = model.Hyperparameters(num_iterations=25, checkpoint_every=10)
    job = new_job(tmp_path)
    model.train(sample_data(tmp_path, hp), hp, job)
    assert job.checkpoints.steps() == [20, 10]
    for step in (10, 20):
        booster = lightgbm.Booster(model_file=job.checkpoints.path(step) / "model.txt")
        assert booster.current_iteration() == step
        classes = json.loads((job.checkpoints.path(step) / "classes.json").read_text())
        assert classes == ["setosa", "versicolor", "virginica"]


def test_a_stop_ends_training_after_the_current_iteration_with_a_checkpoint(
    tmp_path: Path,
) -> None:
    hp = model.Hyperparameters(num_iterations=100, checkpoint_every=50)
    rounds = []

    def log_metric(name: str, value: float) -> None:
        if name == "train:multi_logloss":
            rounds.append(value)
            if len(rounds) == 3:
                job.stop.set()  # What the runner's SIGTERM handler does, during iteration 3.

    job = new_job(tmp_path, log_metric)
    with pytest.raises(TrainingStopped, match="after step 3; checkpoint in"):
        model.train(sample_data(tmp_path, hp), hp, job)
    assert len(rounds) == 3
    assert job.checkpoints.steps() == [3]
    saved = lightgbm.Booster(model_file=job.checkpoints.path(3) / "model.txt")
    assert saved.current_iteration() == 3


def test_two_hosts_train_one_model_together(tmp_path: Path) -> None:
    # One thread each: the two "hosts" share this machine's CPUs. verbosity 1: LightGBM
    # says how many machines its network has.
    hps = {"num_iterations": "20", "num_threads": "1", "verbosity": "1"}
    hosts = run_hosts(tmp_path, hps, timeout=240, addresses=ONE_MACHINE)
    for rank, (_, finished) in enumerate(hosts):
        assert finished.returncode == 0, finished.stderr
        assert f"LightGBM network: rank {rank} of 2 machines" in finished.stderr
        assert f"Local rank: {rank}, total number of machines: 2" in finished.stderr
    (first, _), (second, _) = hosts
    assert not second.model.exists() or not any(second.model.iterdir())
    classifier = model.load(first.model)
    assert classifier.booster.current_iteration() == 20
    assert np.mean(model.predict(classifier, SAMPLE_FEATURES) == SAMPLE_LABELS) > 0.85


def test_a_stop_on_one_host_stops_every_host_after_the_same_iteration(tmp_path: Path) -> None:
    hps = {"num_iterations": "100000", "num_threads": "1", "checkpoint_every": "100000"}
    hosts = start_hosts(tmp_path, hps, addresses=ONE_MACHINE, stdout=None)
    try:
        (first, one), (second, two) = hosts
        assert two.stderr is not None
        for line in two.stderr:  # Until both hosts are boosting together.
            if "LightGBM trains with" in line:
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
    assert len(steps) == 1  # Both hosts stopped after the same iteration...
    assert Checkpoints(first.checkpoints).steps() == list(steps)  # ...the first saved it.
    assert not second.checkpoints.exists()


def test_the_model_is_a_lightgbm_text_model_and_class_names(trained: Paths) -> None:
    text = (trained.model / "model.txt").read_text()
    assert text.startswith("tree\n")
    assert "\nnum_class=3\n" in text
    booster = lightgbm.Booster(model_file=trained.model / "model.txt")
    assert booster.current_iteration() == int(QUICK_HYPERPARAMETERS["num_iterations"])
    classes = json.loads((trained.model / "classes.json").read_text())
    assert classes == ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize(("workers", "threads"), [(1, cpu_count()), (cpu_count(), 1)])
def test_predict_is_one_vectorised_call_on_the_workers_share_of_the_cpus(
    trained: Paths, monkeypatch: pytest.MonkeyPatch, workers: int, threads: int
) -> None:
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", str(workers))
    classifier = model.load(trained.model)
    calls = []
    booster_predict = lightgbm.Booster.predict

    def counted(self: lightgbm.Booster, data: np.ndarray, **kwargs: object) -> np.ndarray:
        calls.append((len(data), kwargs.get("num_threads")))
        return booster_predict(self, data, **kwargs)

    monkeypatch.setattr(lightgbm.Booster, "predict", counted)
    predictions = model.predict(classifier, np.tile(ROWS, (500, 1)))
    assert calls == [(1000, threads)]
    assert predictions.shape == (1000,)
    assert list(predictions[:2]) == ["setosa", "virginica"]


def test_missing_values_are_scored(trained: Paths) -> None:
    classifier = model.load(trained.model)
    rows = np.array([[5.1, np.nan, 1.4, 0.2], [np.nan] * 4])
    predictions = model.predict(classifier, rows)
    assert predictions[0] == "setosa"  # Sepal width does not decide a setosa.
    assert predictions[1] in {"setosa", "versicolor", "virginica"}


@pytest.mark.parametrize(
    ("gpu", "works", "expected"),
    [(False, {"cuda", "gpu"}, "cpu"), (True, set(), "cpu"), (True, {"gpu"}, "gpu")],
)
def test_the_device_is_the_first_one_this_build_can_train_on(
    monkeypatch: pytest.MonkeyPatch, gpu: bool, works: set[str], expected: str
) -> None:
    tried = []

    def probe(params: dict[str, object], *args: object, **kwargs: object) -> None:
        tried.append(params["device_type"])
        if params["device_type"] not in works:
            raise lightgbm.basic.LightGBMError("not in this build")

    monkeypatch.setattr(model, "gpu_count", lambda: int(gpu))
    monkeypatch.setattr(lightgbm, "train", probe)
    assert model.device_type() == expected
    assert tried == (["cuda", "gpu"] if gpu else [])
