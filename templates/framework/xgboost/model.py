"""Your model: the one file to edit to bring your own (XGBoost).

The training runner (``training.py``) and the model server (``inference.py``) call only what
is defined here, so changing the objective, the features or the library means editing this
file and nothing else:

- ``Hyperparameters``: the hyperparameters a training job accepts, typed, with defaults,
  named as XGBoost names them. SageMaker's ``hyperparameters.json`` is parsed and checked
  against it; an unknown name or a value of the wrong type fails the job with a message
  naming it, and so does a value XGBoost itself rejects (``eta=-1``).
- ``train(features, labels, hp, log_metric)``: boost with ``xgboost.train`` and return the
  model. ``features`` is a float64 array (rows x features), ``labels`` the first CSV column
  (class names). Every round prints ``train:mlogloss=...`` and ``validation:mlogloss=...``
  through ``log_metric``, and the end ``train:accuracy`` / ``validation:accuracy``: each is
  one ``name=value`` line that a SageMaker ``MetricDefinitions`` regex such as
  ``validation:mlogloss=([0-9.]+)`` picks up.
- ``save(model, model_dir)`` / ``load(model_dir)``: the booster in XGBoost's own UBJSON
  format (``model.ubj``, readable by later XGBoost releases and by XGBoost in any language)
  and the class names (``classes.json``). ``load`` runs once per server worker and gives
  each worker's booster its share of the CPUs (``threads_per_worker()``).
- ``predict(model, features)``: one ``inplace_predict`` call for a whole batch of rows. A
  missing value (NaN) is what XGBoost calls missing: each split sends it down the branch it
  keeps for missing values.

GPU: ``train`` uses ``device="cuda"`` when the container sees an NVIDIA GPU and the installed
XGBoost was built with CUDA, ``cpu`` otherwise. On Linux, ``pyproject.toml`` installs
``xgboost-cpu``, XGBoost's CPU-only build (about 23 MB installed, against about 90 MB plus
NVIDIA's NCCL package for the full one). For a GPU image, replace both XGBoost lines there
with ``"xgboost>=3.2,<4",``: that wheel carries its CUDA code (the driver comes from the GPU
instance), so neither the base image nor this file changes. The server predicts on the CPU
either way.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xgboost

from .environment import cpu_count, gpu_count, threads_per_worker

log = logging.getLogger(__name__)

MODEL_FILE = "model.ubj"  # The extension selects XGBoost's UBJSON format.
CLASSES_FILE = "classes.json"
# XGBoost reports a parameter by its main name; these hyperparameters use its other name.
REPORTED_AS = {"learning_rate": "eta", "min_split_loss": "gamma"}


@dataclass(frozen=True)
class Hyperparameters:
    """Named as XGBoost names them; see its "XGBoost Parameters" page."""

    num_round: int = 100
    eta: float = 0.3
    max_depth: int = 6
    min_child_weight: float = 1.0
    subsample: float = 1.0
    colsample_bytree: float = 1.0
    gamma: float = 0.0
    reg_lambda: float = 1.0  # XGBoost's `lambda`, a Python keyword.
    early_stopping_rounds: int | None = None
    nthread: int = 0  # 0: every CPU of the container. Small data trains faster on fewer.
    validation_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                "hyperparameter 'validation_fraction' must be in [0, 1),"
                f" got {self.validation_fraction}"
            )
        if self.early_stopping_rounds is not None and self.validation_fraction == 0:
            raise ValueError(
                "hyperparameter 'early_stopping_rounds' needs a validation set:"
                " set validation_fraction above 0"
            )


@dataclass(frozen=True)
class Classifier:
    """A booster and the class names its outputs stand for."""

    booster: xgboost.Booster
    classes: np.ndarray


class LogMetrics(xgboost.callback.TrainingCallback):
    """One ``data:metric=value`` line per evaluation set and metric, every round."""

    def __init__(self, log_metric: Callable[[str, float], None]) -> None:
        super().__init__()
        self.log_metric = log_metric

    def after_iteration(self, model: xgboost.Booster, epoch: int, evals_log: dict) -> bool:
        for data_name, metrics in evals_log.items():
            for metric_name, history in metrics.items():
                self.log_metric(f"{data_name}:{metric_name}", history[-1])
        return False  # Never stops training itself.


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of validation rows: ``fraction`` of each class, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    validation = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        validation[rows[: round(len(rows) * fraction)]] = True
    return validation


def cuda_available() -> bool:
    """This XGBoost build can use CUDA and an NVIDIA GPU is mapped into the container."""
    return bool(xgboost.build_info().get("USE_CUDA")) and gpu_count() > 0


def rejected(exc: xgboost.core.XGBoostError) -> ValueError | None:
    """The library's complaint about one parameter, naming it as ``Hyperparameters`` does."""
    message = str(exc).strip().splitlines()[0]
    found = re.search(r"Parameter (\w+)", message)
    if found is None:
        return None
    name = REPORTED_AS.get(found[1], found[1])
    return ValueError(f"hyperparameter {name!r} rejected by XGBoost: {message}")


def train(
    features: np.ndarray,
    labels: np.ndarray,
    hp: Hyperparameters,
    log_metric: Callable[[str, float], None],
) -> Classifier:
    classes, targets = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"the training data has a single class, {classes[0]!r}: need two")
    in_validation = stratified_split(targets, hp.validation_fraction, hp.seed)
    splits = {"train": ~in_validation, "validation": in_validation}
    data = {
        name: xgboost.DMatrix(features[rows], label=targets[rows])
        for name, rows in splits.items()
        if rows.any()
    }
    params = {
        "objective": "multi:softprob",
        "num_class": len(classes),
        "eval_metric": "mlogloss",
        "eta": hp.eta,
        "max_depth": hp.max_depth,
        "min_child_weight": hp.min_child_weight,
        "subsample": hp.subsample,
        "colsample_bytree": hp.colsample_bytree,
        "gamma": hp.gamma,
        "reg_lambda": hp.reg_lambda,
        "seed": hp.seed,
        "tree_method": "hist",
        "device": "cuda" if cuda_available() else "cpu",
        "nthread": hp.nthread or cpu_count(),
    }
    log.info("XGBoost trains with device=%s", params["device"])
    try:
        # A Python callback after each round: a SIGTERM stops the job between two rounds.
        booster = xgboost.train(
            params,
            data["train"],
            num_boost_round=hp.num_round,
            # Evaluated after every round, in this order; early stopping watches the last.
            evals=[(matrix, name) for name, matrix in data.items()],
            early_stopping_rounds=hp.early_stopping_rounds,
            verbose_eval=False,
            callbacks=[LogMetrics(log_metric)],
        )
    except xgboost.core.XGBoostError as exc:
        error = rejected(exc)
        if error is None:
            raise
        raise error from exc
    if hp.early_stopping_rounds is not None:
        booster = booster[: booster.best_iteration + 1]  # Keep the rounds up to the best.
    for name, matrix in data.items():  # On the device the booster trained on.
        accuracy = np.mean(np.argmax(booster.predict(matrix), axis=1) == matrix.get_label())
        log_metric(f"{name}:accuracy", float(accuracy))
    return Classifier(booster, classes)


def save(model: Classifier, model_dir: Path) -> None:
    model.booster.save_model(model_dir / MODEL_FILE)
    (model_dir / CLASSES_FILE).write_text(json.dumps(model.classes.tolist()) + "\n")


def load(model_dir: Path) -> Classifier:
    booster = xgboost.Booster()
    booster.load_model(model_dir / MODEL_FILE)
    # The server runs several workers side by side: each uses its share of the CPUs.
    booster.set_param({"nthread": threads_per_worker(), "device": "cpu"})
    classes = np.asarray(json.loads((model_dir / CLASSES_FILE).read_text()))
    return Classifier(booster, classes)


def predict(model: Classifier, features: np.ndarray) -> np.ndarray:
    probabilities = model.booster.inplace_predict(features)  # rows x classes
    return model.classes[np.argmax(probabilities, axis=1)]
