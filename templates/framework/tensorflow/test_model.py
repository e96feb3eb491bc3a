"""What is particular to this project's model (Keras on TensorFlow); the rest is generic.

The constants at the top are what the generic tests need to know about the model.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from {{ cookiecutter.package_name }} import model, training
from {{ cookiecutter.package_name }}.environment import Paths, threads_per_worker

# Quick to train: the model the suite trains once and serves.
QUICK_HYPERPARAMETERS = {"epochs": "20"}
# Slow to train (many seconds), for stopping a job part-way.
LONG_HYPERPARAMETERS = {"epochs": "100000", "batch_size": "4"}
# A value of the right type that the library itself rejects, and what the failure says.
LIBRARY_REJECTED = ({"dropout": "1.5"}, "hyperparameter 'dropout': Invalid value")

# Run in a fresh process: TensorFlow sizes its thread pools once, when its runtime starts.
THREADS_AT_LOAD = """
import importlib, sys
from pathlib import Path
model = importlib.import_module(sys.argv[1])
model.load(Path(sys.argv[2]))
import tensorflow as tf
print(
    tf.config.threading.get_intra_op_parallelism_threads(),
    tf.config.threading.get_inter_op_parallelism_threads(),
)
"""


def test_hyperparameters_reach_keras(job: Paths) -> None:
    job.hyperparameters.write_text(
        json.dumps(
            {
                "epochs": "2",
                "hidden_units": "[8, 4]",
                "dropout": "0.25",
                "optimizer": '"sgd"',
                "learning_rate": "0.05",
            }
        )
    )
    assert training.main() == 0
    # The full file, optimizer included (the server loads it without).
    network = keras.saving.load_model(job.model / model.MODEL_FILE)
    dense = [layer.units for layer in network.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [8, 4, 3]
    dropout = [layer.rate for layer in network.layers if isinstance(layer, keras.layers.Dropout)]
    assert dropout == [0.25, 0.25]
    assert isinstance(network.optimizer, keras.optimizers.SGD)
    assert float(network.optimizer.learning_rate) == pytest.approx(0.05)


def test_one_int_of_hidden_units_is_one_hidden_layer(job: Paths) -> None:
    job.hyperparameters.write_text(json.dumps({"epochs": "1", "hidden_units": "16"}))
    assert training.main() == 0
    network = model.load(job.model).network
    dense = [layer.units for layer in network.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [16, 3]


def test_one_line_per_metric_per_epoch(job: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    job.hyperparameters.write_text(json.dumps({"epochs": "3"}))
    assert training.main() == 0
    out = capsys.readouterr().out
    for name in ("train:loss", "train:accuracy", "validation:loss", "validation:accuracy"):
        assert len(re.findall(rf"^{name}=[0-9.]+$", out, re.MULTILINE)) == 3, name
    # verbose=0: no progress bars or "Epoch 1/3" among the metric lines.
    assert all("=" in line for line in out.splitlines()), out


def test_no_validation_split_logs_training_metrics_only(
    job: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    job.hyperparameters.write_text(json.dumps({"epochs": "2", "validation_fraction": "0"}))
    assert training.main() == 0
    out = capsys.readouterr().out
    assert "validation:" not in out
    assert len(re.findall(r"^train:accuracy=", out, re.MULTILINE)) == 2


def test_the_saved_model_is_a_keras_file_that_scales_its_input(trained: Paths) -> None:
    with zipfile.ZipFile(trained.model / model.MODEL_FILE) as archive:
        assert {"config.json", "model.weights.h5"} <= set(archive.namelist())
    class_names = json.loads((trained.model / model.CLASS_NAMES_FILE).read_text())
    assert class_names == ["setosa", "versicolor", "virginica"]
    # The scaling is a layer of the saved model, adapted on (most of) the training data.
    normalization = model.load(trained.model).network.layers[0]
    assert isinstance(normalization, keras.layers.Normalization)
    features, _ = training.read_csv_channel(trained, "training")
    np.testing.assert_allclose(np.ravel(normalization.mean), features.mean(axis=0), rtol=0.1)


def test_predict_is_one_vectorised_call(trained: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = model.load(trained.model)
    calls = []
    forward = loaded.network.predict_on_batch
    monkeypatch.setattr(
        loaded.network, "predict_on_batch", lambda x: calls.append(len(x)) or forward(x)
    )
    rows = np.tile([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]], (500, 1))
    predictions = model.predict(loaded, rows)
    assert calls == [1000]
    assert predictions.shape == (1000,)
    assert list(predictions[:2]) == ["setosa", "virginica"]


def test_nan_is_refused_naming_the_row(trained: Paths) -> None:
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [5.1, np.nan, 1.4, 0.2]])
    with pytest.raises(ValueError, match=r"NaN \(row 2\)"):
        model.predict(model.load(trained.model), rows)


def test_thread_pools_are_sized_for_one_worker_at_load(trained: Paths) -> None:
    env = {**os.environ, "SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    result = subprocess.run(
        [sys.executable, "-c", THREADS_AT_LOAD, model.__name__, str(trained.model)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    threads = threads_per_worker(env)
    assert result.stdout.split() == [str(threads), str(threads)]


@pytest.mark.parametrize(
    ("hyperparameters", "reason"),
    [
        ({"hidden_units": "[16, 0]"}, "hyperparameter 'hidden_units': "),
        ({"validation_fraction": "1.5"}, "'validation_fraction' must be in [0, 1)"),
        ({"batch_size": "0"}, "'batch_size' must be at least 1"),
        ({"learning_rate": "-0.1"}, "'learning_rate' must be positive"),
    ],
)
def test_bad_values_fail_the_job_naming_them(
    job: Paths, hyperparameters: dict[str, str], reason: str
) -> None:
    job.hyperparameters.write_text(json.dumps(hyperparameters))
    assert training.main() == 1
    assert reason in job.failure.read_text().splitlines()[0]
