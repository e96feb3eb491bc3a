"""Your model: the one file to edit to bring your own (scikit-learn).

The training runner (``training.py``) and the model server (``inference.py``) call only what
is defined here, so replacing the RandomForest with your own estimator means editing this
file and nothing else:

- ``Hyperparameters``: the hyperparameters a training job accepts, typed, with defaults.
  SageMaker's ``hyperparameters.json`` is parsed and checked against it; an unknown name or
  a value of the wrong type fails the job with a message naming it.
- ``train(features, labels, hp, log_metric)``: fit and return a model. ``features`` is a
  float64 array (rows x features), ``labels`` the first CSV column. Report metrics with
  ``log_metric(name, value)``; each becomes one ``name=value`` line that a SageMaker
  ``MetricDefinitions`` regex such as ``validation:accuracy=([0-9.]+)`` picks up.
- ``save(model, model_dir)`` / ``load(model_dir)``: write and read everything the server
  needs in ``model_dir`` (it becomes ``model.tar.gz``).
- ``predict(model, features)``: one vectorised call for a whole batch of rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

MODEL_FILE = "model.joblib"


@dataclass(frozen=True)
class Hyperparameters:
    """Named as scikit-learn names them; see ``RandomForestClassifier``."""

    n_estimators: int = 100
    max_depth: int | None = None
    min_samples_leaf: int = 1
    max_features: str = "sqrt"
    validation_fraction: float = 0.2
    random_state: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                "hyperparameter 'validation_fraction' must be in [0, 1),"
                f" got {self.validation_fraction}"
            )


def train(
    features: np.ndarray,
    labels: np.ndarray,
    hp: Hyperparameters,
    log_metric: Callable[[str, float], None],
) -> RandomForestClassifier:
    model = RandomForestClassifier(
        n_estimators=hp.n_estimators,
        max_depth=hp.max_depth,
        min_samples_leaf=hp.min_samples_leaf,
        max_features=hp.max_features,
        random_state=hp.random_state,
        n_jobs=-1,
    )
    if hp.validation_fraction > 0:
        x_train, x_val, y_train, y_val = train_test_split(
            features,
            labels,
            test_size=hp.validation_fraction,
            random_state=hp.random_state,
            stratify=labels,
        )
    else:
        x_train, x_val, y_train, y_val = features, None, labels, None
    model.fit(x_train, y_train)
    log_metric("train:accuracy", accuracy_score(y_train, model.predict(x_train)))
    if x_val is not None:
        log_metric("validation:accuracy", accuracy_score(y_val, model.predict(x_val)))
    # Serve with one thread per worker: the server runs several workers side by side.
    model.set_params(n_jobs=1)
    return model


def save(model: RandomForestClassifier, model_dir: Path) -> None:
    joblib.dump(model, model_dir / MODEL_FILE)


def load(model_dir: Path) -> RandomForestClassifier:
    return joblib.load(model_dir / MODEL_FILE)


def predict(model: RandomForestClassifier, features: np.ndarray) -> np.ndarray:
    return model.predict(features)
