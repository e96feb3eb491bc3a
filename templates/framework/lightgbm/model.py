"""Your model: the one file to edit to bring your own (LightGBM).

The training runner (``training.py``) and the model server (``inference.py``) call only what
is defined here, so changing the objective, the features or the library means editing this
file and nothing else:

- ``Hyperparameters``: the hyperparameters a training job accepts, typed, with defaults,
  named as LightGBM names them. SageMaker's ``hyperparameters.json`` is parsed and checked
  against it; an unknown name or a value of the wrong type fails the job with a message
  naming it, and so does a value LightGBM itself rejects (``learning_rate=-1``).
- ``train(features, labels, hp, log_metric)``: boost with ``lightgbm.train`` and return the
  model. ``features`` is a float64 array (rows x features), ``labels`` the first CSV column
  (class names). Every iteration prints ``train:multi_logloss=...`` and
  ``validation:multi_logloss=...`` through ``log_metric``, and the end ``train:accuracy`` /
  ``validation:accuracy``: each is one ``name=value`` line that a SageMaker
  ``MetricDefinitions`` regex such as ``validation:multi_logloss=([0-9.]+)`` picks up.
  LightGBM's own messages go to the log (stderr), so stdout holds the metrics alone.
- ``save(model, model_dir)`` / ``load(model_dir)``: the booster in LightGBM's text model
  format (``model.txt``, readable by later LightGBM releases and by LightGBM in any
  language) and the class names (``classes.json``). ``load`` runs once per server worker;
  each worker predicts with its share of the CPUs (``threads_per_worker()``).
- ``predict(model, features)``: one ``Booster.predict`` call for a whole batch of rows. A
  missing value (NaN) is what LightGBM calls missing and is scored as such.

GPU: the ``lightgbm`` wheel from PyPI trains on the CPU, or on a GPU through OpenCL
(``device_type="gpu"``) when the image has an OpenCL runtime; CUDA (``device_type="cuda"``)
needs LightGBM built from source with CUDA. ``train`` tries ``cuda`` then ``gpu`` when the
container sees an NVIDIA GPU, and uses the CPU when neither works, so the same file serves
both kinds of image. The server predicts on the CPU either way.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightgbm
import numpy as np

from .environment import cpu_count, gpu_count, threads_per_worker

log = logging.getLogger(__name__)

MODEL_FILE = "model.txt"
CLASSES_FILE = "classes.json"


@dataclass(frozen=True)
class Hyperparameters:
    """Named as LightGBM names them; see its "Parameters" page."""

    num_iterations: int = 100
    learning_rate: float = 0.1
    num_leaves: int = 31
    max_depth: int = -1
    min_data_in_leaf: int = 20
    feature_fraction: float = 1.0
    bagging_fraction: float = 1.0
    bagging_freq: int = 0
    lambda_l2: float = 0.0
    early_stopping_round: int | None = None
    verbosity: int = -1
    num_threads: int = 0  # 0: every CPU of the container. Small data trains faster on fewer.
    validation_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                "hyperparameter 'validation_fraction' must be in [0, 1),"
                f" got {self.validation_fraction}"
            )
        if self.early_stopping_round is not None and self.validation_fraction == 0:
            raise ValueError(
                "hyperparameter 'early_stopping_round' needs a validation set:"
                " set validation_fraction above 0"
            )


@dataclass(frozen=True)
class Classifier:
    """A booster, the class names its outputs stand for, and the threads it predicts with."""

    booster: lightgbm.Booster
    classes: np.ndarray
    num_threads: int


class LogMetrics:
    """One ``data:metric=value`` line per evaluation set and metric, every iteration."""

    def __init__(self, log_metric: Callable[[str, float], None]) -> None:
        self.log_metric = log_metric

    def __call__(self, env: lightgbm.callback.CallbackEnv) -> None:
        for data_name, metric_name, value, *_ in env.evaluation_result_list or []:
            self.log_metric(f"{data_name}:{metric_name}", value)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of validation rows: ``fraction`` of each class, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    validation = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        validation[rows[: round(len(rows) * fraction)]] = True
    return validation


def device_type() -> str:
    """``cuda`` or ``gpu`` when this LightGBM build can train on the GPU here, else ``cpu``."""
    if not gpu_count():
        return "cpu"
    for candidate in ("cuda", "gpu"):
        probe = lightgbm.Dataset(np.arange(40.0).reshape(20, 2), label=np.arange(20) % 2)
        try:
            lightgbm.train({"device_type": candidate, "verbosity": -1}, probe, num_boost_round=1)
        except lightgbm.basic.LightGBMError as exc:
            log.info("LightGBM cannot train with device_type=%s here: %s", candidate, exc)
            continue
        return candidate
    return "cpu"


def rejected(exc: lightgbm.basic.LightGBMError) -> ValueError | None:
    """The library's complaint about one parameter, naming it as ``Hyperparameters`` does."""
    message = str(exc).strip().splitlines()[0]
    found = re.match(r"Check failed: \((\w+)\)", message)
    if found is None:
        return None
    check = message.split(" at ")[0]  # Without the C++ source location.
    return ValueError(f"hyperparameter {found[1]!r} rejected by LightGBM: {check}")


def train(
    features: np.ndarray,
    labels: np.ndarray,
    hp: Hyperparameters,
    log_metric: Callable[[str, float], None],
) -> Classifier:
    lightgbm.register_logger(log)  # LightGBM's messages to stderr: stdout is for metrics.
    classes, targets = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"the training data has a single class, {classes[0]!r}: need two")
    in_validation = stratified_split(targets, hp.validation_fraction, hp.seed)
    splits = {"train": ~in_validation, "validation": in_validation}
    num_threads = hp.num_threads or cpu_count()
    train_set = lightgbm.Dataset(features[~in_validation], label=targets[~in_validation])
    # Evaluated after every iteration; early stopping watches all but the training set.
    valid_sets = {"train": train_set}
    if in_validation.any():
        valid_sets["validation"] = lightgbm.Dataset(
            features[in_validation], label=targets[in_validation], reference=train_set
        )
    params = {
        "objective": "multiclass",
        "num_class": len(classes),
        "metric": "multi_logloss",
        "learning_rate": hp.learning_rate,
        "num_leaves": hp.num_leaves,
        "max_depth": hp.max_depth,
        "min_data_in_leaf": hp.min_data_in_leaf,
        "feature_fraction": hp.feature_fraction,
        "bagging_fraction": hp.bagging_fraction,
        "bagging_freq": hp.bagging_freq,
        "lambda_l2": hp.lambda_l2,
        "early_stopping_round": hp.early_stopping_round,
        "verbosity": hp.verbosity,
        "seed": hp.seed,
        "device_type": device_type(),
        "num_threads": num_threads,
    }
    log.info("LightGBM trains with device_type=%s", params["device_type"])
    try:
        # A Python callback after each iteration: a SIGTERM stops the job between two.
        booster = lightgbm.train(
            params,
            train_set,
            num_boost_round=hp.num_iterations,
            valid_sets=list(valid_sets.values()),
            valid_names=list(valid_sets),
            callbacks=[LogMetrics(log_metric)],
        )
    except lightgbm.basic.LightGBMError as exc:
        error = rejected(exc)
        if error is None:
            raise
        raise error from exc
    model = Classifier(booster, classes, num_threads)
    for name, rows in splits.items():
        if rows.any():
            accuracy = np.mean(predict(model, features[rows]) == labels[rows])
            log_metric(f"{name}:accuracy", float(accuracy))
    return model


def save(model: Classifier, model_dir: Path) -> None:
    # With early stopping, LightGBM saves the iterations up to the best one.
    model.booster.save_model(model_dir / MODEL_FILE)
    (model_dir / CLASSES_FILE).write_text(json.dumps(model.classes.tolist()) + "\n")


def load(model_dir: Path) -> Classifier:
    booster = lightgbm.Booster(model_file=model_dir / MODEL_FILE)
    classes = np.asarray(json.loads((model_dir / CLASSES_FILE).read_text()))
    # The server runs several workers side by side: each uses its share of the CPUs.
    return Classifier(booster, classes, num_threads=threads_per_worker())


def predict(model: Classifier, features: np.ndarray) -> np.ndarray:
    probabilities = model.booster.predict(features, num_threads=model.num_threads)
    return model.classes[np.argmax(probabilities, axis=1)]
