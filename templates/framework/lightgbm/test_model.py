"""What is particular to this project's model (LightGBM); the rest of the suite is generic.

The constants at the top are what the generic tests need to know about the model.
"""

from __future__ import annotations

import json
import re

import lightgbm
import numpy as np
import pytest

from {{ cookiecutter.package_name }} import model, training
from {{ cookiecutter.package_name }}.environment import Paths, cpu_count

# Quick to train: the model the suite trains once and serves.
QUICK_HYPERPARAMETERS = {"num_iterations": "20"}
# Slow to train (many seconds), for stopping a job part-way.
LONG_HYPERPARAMETERS = {"num_iterations": "100000", "learning_rate": '"0.01"'}
# A value of the right type that the library itself rejects, and what the failure says.
LIBRARY_REJECTED = ({"learning_rate": "-1"}, "hyperparameter 'learning_rate'")

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]  # A setosa, a virginica.


def metric_values(output: str, name: str) -> list[float]:
    return [float(v) for v in re.findall(rf"^{name}=([0-9.]+)$", output, re.MULTILINE)]


def test_hyperparameters_reach_the_booster(job: Paths) -> None:
    job.hyperparameters.write_text(json.dumps({"num_iterations": '"7"', "num_leaves": "2"}))
    assert training.main() == 0
    booster = model.load(job.model).booster
    assert booster.current_iteration() == 7
    trees = booster.dump_model()["tree_info"]
    assert len(trees) == 7 * 3  # One tree per class and iteration.
    assert all(tree["num_leaves"] <= 2 for tree in trees)


@pytest.mark.parametrize(("num_threads", "threads"), [("1", 1), ("0", cpu_count())])
def test_training_uses_num_threads_or_every_cpu(
    job: Paths, num_threads: str, threads: int
) -> None:
    job.hyperparameters.write_text(json.dumps({"num_iterations": "2", "num_threads": num_threads}))
    assert training.main() == 0
    # The text model keeps the parameters it was trained with.
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


def test_early_stopping_needs_a_validation_set(job: Paths) -> None:
    job.hyperparameters.write_text(
        json.dumps({"early_stopping_round": "5", "validation_fraction": "0"})
    )
    assert training.main() == 1
    assert "'early_stopping_round' needs a validation set" in job.failure.read_text()


@pytest.mark.parametrize(
    ("name", "value"), [("learning_rate", "-1"), ("num_leaves", "1"), ("feature_fraction", "2")]
)
def test_a_value_lightgbm_rejects_is_named_as_a_hyperparameter(
    job: Paths, name: str, value: str
) -> None:
    job.hyperparameters.write_text(json.dumps({name: value}))
    assert training.main() == 1
    reason = job.failure.read_text().splitlines()[0]
    assert reason.startswith(
        f"ValueError: hyperparameter {name!r} rejected by LightGBM: Check failed: ({name})"
    )
    assert ".cpp" not in reason  # The C++ source location is left out.


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


def test_validation_fraction_is_checked(job: Paths) -> None:
    job.hyperparameters.write_text(json.dumps({"validation_fraction": "1.5"}))
    assert training.main() == 1
    assert "'validation_fraction' must be in [0, 1)" in job.failure.read_text().splitlines()[0]
