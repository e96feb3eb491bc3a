"""Your model: the one file to edit to bring your own (scikit-learn).

The training runner (``training.py``) and the model server (``inference.py``) call only what
is defined here, so replacing the RandomForest with your own estimator means editing this
file and nothing else:

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
  (the first column). The forest grows ``checkpoint_every`` trees at a time, with a
  checkpoint after each batch (``job.checkpoint``); a restarted job resumes from the newest
  one (``job.resume``) and ends with the same forest as a job never stopped.
- ``save(model, model_dir)`` / ``load(model_dir)``: write and read everything the server
  needs in ``model_dir`` (it becomes ``model.tar.gz``).
- ``predict(model, features)``: one vectorised call for a whole batch of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier

from .channels import TrainingData
from .hyperparameters import hyperparameter
from .job import Job

MODEL_FILE = "model.joblib"

METRICS = {
    "train:accuracy": "Accuracy on the training rows, after training.",
    "validation:accuracy": "Accuracy on the validation rows, after training.",
}


@dataclass(frozen=True)
class Hyperparameters:
    """Named as scikit-learn names them; see ``RandomForestClassifier``."""

    n_estimators: int = hyperparameter(100, "Trees in the forest.", ge=1)
    max_depth: int | None = hyperparameter(None, "Deepest a tree grows; null: no limit.", ge=1)
    min_samples_leaf: int = hyperparameter(1, "Fewest training rows in a leaf.", ge=1)
    max_features: str = hyperparameter("sqrt", "Features tried per split: sqrt or log2.")
    validation_fraction: float = hyperparameter(
        0.2,
        "Training rows held out for validation when there is no validation channel.",
        ge=0,
        lt=1,
    )
    seed: int = hyperparameter(0, "Seeds the trees and the validation split.", ge=0)
    checkpoint_every: int = hyperparameter(
        10, "Trees grown between two checkpoints (and two checks for a stop).", ge=1
    )


def new_forest(hp: Hyperparameters) -> RandomForestClassifier:
    return RandomForestClassifier(
        n_estimators=0,
        max_depth=hp.max_depth,
        min_samples_leaf=hp.min_samples_leaf,
        max_features=hp.max_features,
        random_state=hp.seed,
        warm_start=True,  # Each fit adds trees: the same forest as one fit, in steps.
        n_jobs=-1,
    )


def train(data: TrainingData, hp: Hyperparameters, job: Job) -> RandomForestClassifier:
    resumed = job.resume(load)
    grown, forest = resumed if resumed else (0, new_forest(hp))
    while grown < hp.n_estimators:
        grown = min(grown + hp.checkpoint_every, hp.n_estimators)
        forest.set_params(n_estimators=grown)
        forest.fit(data.train.features, data.train.labels)
        job.checkpoint(grown, lambda directory: save(forest, directory), every=hp.checkpoint_every)
    job.log_metric("train:accuracy", accuracy(forest, data.train.features, data.train.labels))
    if data.validation is not None:
        validation = accuracy(forest, data.validation.features, data.validation.labels)
        job.log_metric("validation:accuracy", validation)
    # Serve with one thread per worker: the server runs several workers side by side.
    forest.set_params(n_jobs=1)
    return forest


def accuracy(forest: RandomForestClassifier, features: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(forest.predict(features) == labels))


def save(model: RandomForestClassifier, model_dir: Path) -> None:
    joblib.dump(model, model_dir / MODEL_FILE)


def load(model_dir: Path) -> RandomForestClassifier:
    return joblib.load(model_dir / MODEL_FILE)


def predict(model: RandomForestClassifier, features: np.ndarray) -> np.ndarray:
    return model.predict(features)
