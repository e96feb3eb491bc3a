"""Your model: the one file to edit to bring your own (no ML library).

A skeleton for models that are plain Python: the example is a nearest-prototype classifier
(learning vector quantisation, LVQ1) written with NumPy alone, so every line of training,
saving, loading and predicting is here to read and replace. The training runner
(``training.py``) and the model server (``inference.py``) call only what is defined here:

- ``Hyperparameters``: the hyperparameters a training job accepts, typed, with defaults.
  SageMaker's ``hyperparameters.json`` is parsed and checked against it; an unknown name or
  a value of the wrong type fails the job with a message naming it.
- ``train(features, labels, hp, log_metric)``: fit and return a model. ``features`` is a
  float64 array (rows x features), ``labels`` the first CSV column. Report metrics with
  ``log_metric(name, value)``; each becomes one ``name=value`` line that a SageMaker
  ``MetricDefinitions`` regex such as ``validation:accuracy=([0-9.]+)`` picks up.
- ``save(model, model_dir)`` / ``load(model_dir)``: write and read everything the server
  needs in ``model_dir`` (it becomes ``model.tar.gz``). Here: one JSON file.
- ``predict(model, features)``: one vectorised call for a whole batch of rows.

``Model`` is whatever object you like: the runner and the server only pass it between
these functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL_FILE = "model.json"


@dataclass(frozen=True)
class Hyperparameters:
    epochs: int = 30
    learning_rate: float = 0.05
    prototypes_per_class: int = 3
    standardize: bool = True
    validation_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                "hyperparameter 'validation_fraction' must be in [0, 1),"
                f" got {self.validation_fraction}"
            )


@dataclass
class Model:
    """Labelled prototypes, in standardised feature space: a row's class is its nearest's."""

    classes: np.ndarray  # the class name of each prototype
    prototypes: np.ndarray  # (prototypes x features)
    mean: np.ndarray  # (features,)
    scale: np.ndarray  # (features,)


def _split(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices for training and validation, stratified by label."""
    validation: list[int] = []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        validation.extend(rows[: round(len(rows) * fraction)])
    mask = np.zeros(len(labels), dtype=bool)
    mask[validation] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _nearest(prototypes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    distances = ((rows[:, None, :] - prototypes[None, :, :]) ** 2).sum(axis=2)
    return distances.argmin(axis=1)


def train(
    features: np.ndarray,
    labels: np.ndarray,
    hp: Hyperparameters,
    log_metric: Callable[[str, float], None],
) -> Model:
    if hp.learning_rate <= 0:
        raise ValueError(
            f"hyperparameter 'learning_rate' must be positive, got {hp.learning_rate}"
        )
    rng = np.random.default_rng(hp.seed)
    train_rows, validation_rows = _split(labels, hp.validation_fraction, rng)
    mean = features[train_rows].mean(axis=0) if hp.standardize else np.zeros(features.shape[1])
    scale = features[train_rows].std(axis=0) if hp.standardize else np.ones(features.shape[1])
    scale[scale == 0] = 1.0
    x = (features - mean) / scale
    names, y = np.unique(labels, return_inverse=True)
    # Start from a few training rows of each class, then pull each row's nearest prototype
    # towards the row if their classes agree and push it away if not, less every epoch.
    starts = []
    for k in range(len(names)):
        rows = train_rows[y[train_rows] == k]
        if len(rows) < hp.prototypes_per_class:
            raise ValueError(
                f"hyperparameter 'prototypes_per_class' is {hp.prototypes_per_class}, but class"
                f" {names[k]!r} has only {len(rows)} training rows"
            )
        starts.extend(rng.choice(rows, hp.prototypes_per_class, replace=False))
    prototypes = x[starts].copy()
    owners = y[starts]
    for epoch in range(1, hp.epochs + 1):
        rate = hp.learning_rate * (1 - (epoch - 1) / hp.epochs)
        for row in rng.permutation(train_rows):
            nearest = _nearest(prototypes, x[row : row + 1])[0]
            sign = 1.0 if owners[nearest] == y[row] else -1.0
            prototypes[nearest] += sign * rate * (x[row] - prototypes[nearest])
        log_metric("epoch", epoch)
        predicted = owners[_nearest(prototypes, x[train_rows])]
        log_metric("train:accuracy", float(np.mean(predicted == y[train_rows])))
        if len(validation_rows):
            predicted = owners[_nearest(prototypes, x[validation_rows])]
            log_metric("validation:accuracy", float(np.mean(predicted == y[validation_rows])))
    return Model(classes=names[owners], prototypes=prototypes, mean=mean, scale=scale)


def save(model: Model, model_dir: Path) -> None:
    document = {
        "classes": model.classes.tolist(),
        "prototypes": model.prototypes.tolist(),
        "mean": model.mean.tolist(),
        "scale": model.scale.tolist(),
    }
    (model_dir / MODEL_FILE).write_text(json.dumps(document, indent=2) + "\n")


def load(model_dir: Path) -> Model:
    document = json.loads((model_dir / MODEL_FILE).read_text())
    return Model(
        classes=np.asarray(document["classes"]),
        prototypes=np.asarray(document["prototypes"], dtype=np.float64),
        mean=np.asarray(document["mean"], dtype=np.float64),
        scale=np.asarray(document["scale"], dtype=np.float64),
    )


def predict(model: Model, features: np.ndarray) -> np.ndarray:
    if np.isnan(features).any():
        raise ValueError("features must not be NaN: this model has no missing-value handling")
    return model.classes[_nearest(model.prototypes, (features - model.mean) / model.scale)]
