"""Your model: the one file to edit to bring your own (no ML library).

A skeleton for models that are plain Python: the example is a nearest-prototype classifier
(learning vector quantisation, LVQ1) written with NumPy alone, so every line of training,
checkpointing, saving, loading and predicting is here to read and replace. The training
runner (``training.py``) and the model server (``inference.py``) call only what is defined
here:

- ``Hyperparameters``: the hyperparameters a training job accepts, each with its type,
  default, bounds and help (``hyperparameter(...)``). That one declaration checks the job's
  ``hyperparameters.json`` (an unknown name, a wrong type or a value out of bounds fails the
  job with a message naming it) and is the README's table (``make docs``).
  ``validation_fraction`` and ``seed`` are read by the runner too: it holds that share of the
  training rows out for validation when the job has no ``validation`` channel.
- ``METRICS``: the metrics training reports, with their help. Each ``job.log_metric(name,
  value)`` prints one ``name=value`` line; ``python -m <package> metric-definitions``
  prints the SageMaker ``MetricDefinitions`` that read them.
- ``train(data, hp, job)``: fit and return a model. ``data.train`` and ``data.validation``
  (``None`` when there is none) hold ``features`` (float64, rows x features) and ``labels``
  (the first column). After every epoch ``job.checkpoint`` writes the model every
  ``checkpoint_every`` epochs, and at once when SageMaker stops the job (then it raises
  ``TrainingStopped``). A restarted job takes the newest checkpoint back (``job.resume``)
  and ends with the very model of a job never stopped: each epoch shuffles with a generator
  seeded by ``(seed, epoch)``, so the epoch number is all the random state there is.
- ``save(model, model_dir)`` / ``load(model_dir)``: write and read everything the server
  needs in ``model_dir`` (it becomes ``model.tar.gz``). Here: one JSON file, which is also
  the checkpoint.
- ``predict(model, features)``: one vectorised call for a whole batch of rows.

A job on several instances runs this same training on every host (each on all the rows)
and the first host saves the model; to split the work, train on ``job.shard(data)`` and
combine what the hosts learn over ``job.cluster``.

``Model`` is whatever object you like: the runner and the server only pass it between
these functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .channels import TrainingData
from .hyperparameters import hyperparameter
from .job import Job

MODEL_FILE = "model.json"

METRICS = {
    "train:accuracy": "Accuracy on the training rows, after each epoch.",
    "validation:accuracy": "Accuracy on the validation rows, after each epoch.",
}


@dataclass(frozen=True)
class Hyperparameters:
    epochs: int = hyperparameter(30, "Passes over the training rows.", ge=0)
    learning_rate: float = hyperparameter(
        0.05, "Step towards (or away from) a row in the first epoch; falls to 0.", gt=0
    )
    prototypes_per_class: int = hyperparameter(3, "Prototypes that stand for each class.", ge=1)
    standardize: bool = hyperparameter(True, "Scale each feature to mean 0, variance 1 first.")
    validation_fraction: float = hyperparameter(
        0.2,
        "Training rows held out for validation when there is no validation channel.",
        ge=0,
        lt=1,
    )
    seed: int = hyperparameter(0, "Seeds the prototypes, the shuffles and the split.", ge=0)
    checkpoint_every: int = hyperparameter(
        10, "Epochs between two checkpoints (a stop checkpoints at once).", ge=1
    )


@dataclass
class Model:
    """Labelled prototypes, in standardised feature space: a row's class is its nearest's."""

    classes: np.ndarray  # the class name of each prototype
    prototypes: np.ndarray  # (prototypes x features)
    mean: np.ndarray  # (features,)
    scale: np.ndarray  # (features,)

    def standardize(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / self.scale


def _nearest(prototypes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    distances = ((rows[:, None, :] - prototypes[None, :, :]) ** 2).sum(axis=2)
    return distances.argmin(axis=1)


def initial_model(data: TrainingData, hp: Hyperparameters) -> Model:
    """Scaling from the training rows, and a few training rows of each class as prototypes."""
    features, labels = data.train.features, data.train.labels
    n_features = features.shape[1]
    mean = features.mean(axis=0) if hp.standardize else np.zeros(n_features)
    scale = features.std(axis=0) if hp.standardize else np.ones(n_features)
    scale[scale == 0] = 1.0
    # Every class of the job, validation's included: each one needs its prototypes.
    known = [labels] if data.validation is None else [labels, data.validation.labels]
    rng = np.random.default_rng(hp.seed)
    starts = []
    for name in np.unique(np.concatenate(known)):
        rows = np.flatnonzero(labels == name)
        if len(rows) < hp.prototypes_per_class:
            raise ValueError(
                f"hyperparameter 'prototypes_per_class' is {hp.prototypes_per_class}, but class"
                f" {str(name)!r} has only {len(rows)} training rows"
            )
        starts.extend(rng.choice(rows, hp.prototypes_per_class, replace=False))
    return Model(labels[starts], (features[starts] - mean) / scale, mean, scale)


def accuracy(model: Model, scaled: np.ndarray, labels: np.ndarray) -> float:
    """The share of rows (standardised already) whose nearest prototype has their label."""
    return float(np.mean(model.classes[_nearest(model.prototypes, scaled)] == labels))


def train(data: TrainingData, hp: Hyperparameters, job: Job) -> Model:
    resumed = job.resume(load)
    epoch, model = resumed if resumed else (0, initial_model(data, hp))
    x, y = model.standardize(data.train.features), data.train.labels
    while epoch < hp.epochs:
        epoch += 1
        # Pull each row's nearest prototype towards the row if their classes agree and push
        # it away if not, less every epoch. The order of the rows depends on the epoch only.
        rate = hp.learning_rate * (1 - (epoch - 1) / hp.epochs)
        for row in np.random.default_rng([hp.seed, epoch]).permutation(len(x)):
            nearest = _nearest(model.prototypes, x[row : row + 1])[0]
            sign = 1.0 if model.classes[nearest] == y[row] else -1.0
            model.prototypes[nearest] += sign * rate * (x[row] - model.prototypes[nearest])
        job.log_metric("train:accuracy", accuracy(model, x, y))
        if data.validation is not None:
            rows = model.standardize(data.validation.features)
            job.log_metric("validation:accuracy", accuracy(model, rows, data.validation.labels))
        job.checkpoint(epoch, lambda directory: save(model, directory), every=hp.checkpoint_every)
    return model


def save(model: Model, model_dir: Path) -> None:
    # JSON keeps every float64 exactly (Python writes the shortest repr that reads back).
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
    return model.classes[_nearest(model.prototypes, model.standardize(features))]
