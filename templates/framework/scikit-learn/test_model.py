"""What is particular to this project's model (scikit-learn); the rest of the suite is generic.

The constants at the top are what the generic tests need to know about the model.
"""

from __future__ import annotations

import json

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from {{ cookiecutter.package_name }} import model, training
from {{ cookiecutter.package_name }}.environment import Paths

from .support import SAMPLE_FEATURES

# Quick to train: the model the suite trains once and serves.
QUICK_HYPERPARAMETERS = {"n_estimators": "20"}
# Slow to train (many seconds), for stopping a job part-way.
LONG_HYPERPARAMETERS = {"n_estimators": "20000", "max_features": '"sqrt"'}
# A value of the right type that the library itself rejects, and what the failure says.
LIBRARY_REJECTED = ({"max_features": "cube"}, "max_features")
# Several checkpoints' worth: the resume test stops it after its second checkpoint.
RESUME_HYPERPARAMETERS = {"n_estimators": "60", "checkpoint_every": "10"}
RESUME_TOLERANCE = 0.0  # Warm-started forests grow the very trees of a single fit.


def fingerprint(estimator: RandomForestClassifier) -> np.ndarray:
    """What must match between two models: class probabilities over the sample data."""
    return estimator.predict_proba(SAMPLE_FEATURES)


def test_hyperparameters_reach_the_estimator(job: Paths) -> None:
    job.hyperparameters.write_text(json.dumps({"n_estimators": '"7"', "max_depth": "None"}))
    assert training.main() == 0
    estimator = model.load(job.model)
    assert len(estimator.estimators_) == 7
    assert estimator.max_depth is None


def test_served_estimator_uses_one_thread(trained: Paths) -> None:
    # Several server workers run side by side: each predicts on one core.
    assert model.load(trained.model).n_jobs == 1


def test_predict_is_one_vectorised_call(trained: Paths) -> None:
    estimator = model.load(trained.model)
    rows = np.tile([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]], (500, 1))
    predictions = model.predict(estimator, rows)
    assert predictions.shape == (1000,)
    assert set(predictions[:2]) == {"setosa", "virginica"}
