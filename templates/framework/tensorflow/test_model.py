"""What is particular to this project's model (Keras on TensorFlow); the rest is generic.

The constants at the top are what the generic tests need to know about the model.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable

import keras
import numpy as np
import pytest

from {{ cookiecutter.package_name }} import model, training
from {{ cookiecutter.package_name }}.channels import Dataset, TrainingData, channels
from {{ cookiecutter.package_name }}.checkpoints import Checkpoints
from {{ cookiecutter.package_name }}.cluster import Cluster
from {{ cookiecutter.package_name }}.environment import Paths, threads_per_worker
from {{ cookiecutter.package_name }}.hyperparameters import HyperparameterError, load
from {{ cookiecutter.package_name }}.job import Job, TrainingStopped

from .support import recorded_checkpoints

# Quick to train: the model the suite trains once and serves.
QUICK_HYPERPARAMETERS = {"epochs": "20"}
# Slow to train (many seconds), for stopping a job part-way.
LONG_HYPERPARAMETERS = {"epochs": "100000", "batch_size": "4"}
# A value of the right type that the library itself rejects, and what the failure says.
LIBRARY_REJECTED = ({"activation": '"cube"'}, "hyperparameter 'activation': ")
# Several checkpoints' worth: the resume test stops it after its second checkpoint.
RESUME_HYPERPARAMETERS = {"epochs": "8", "checkpoint_every": "2"}
# Bit for bit: the checkpoint holds the weights, the Normalization statistics, the
# optimizer's step count and moments, and the Dropout generators' states; each epoch's
# shuffle comes from (seed, epoch). Same machine, same TensorFlow: the same arithmetic.
RESUME_TOLERANCE = 0.0

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


def fingerprint(classifier: model.Classifier) -> np.ndarray:
    """What must match between two models: every weight, the Normalization's included."""
    return np.concatenate([np.ravel(weights) for weights in classifier.network.get_weights()])


def sample(paths: Paths) -> Dataset:
    return channels(paths)["training"].read()


def steps_per_epoch(rows: int, hp: model.Hyperparameters) -> int:
    return math.ceil(rows / hp.batch_size)


def in_process_job(paths: Paths, log_metric: Callable[[str, float], None]) -> Job:
    """What the runner hands ``model.train``, for one host."""
    return Job(paths, Cluster(), Checkpoints(paths.checkpoints), log_metric, threading.Event())


def test_hyperparameters_reach_keras(job: Paths) -> None:
    job.hyperparameters.write_text(
        json.dumps(
            {
                "epochs": "2",
                "hidden_units": "[8, 4]",
                "activation": "tanh",
                "dropout": "0.25",
                "optimizer": '"sgd"',
                "learning_rate": "0.05",
            }
        )
    )
    assert training.main() == 0
    # The full file, optimizer included (the server loads it without).
    network = keras.saving.load_model(job.model / model.MODEL_FILE)
    dense = [layer for layer in network.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [8, 4, 3]
    assert [layer.activation.__name__ for layer in dense] == ["tanh", "tanh", "softmax"]
    dropout = [layer for layer in network.layers if isinstance(layer, keras.layers.Dropout)]
    assert [layer.rate for layer in dropout] == [0.25, 0.25]
    assert [layer.seed for layer in dropout] == [0, 1]  # Not the same units in each layer.
    assert isinstance(network.optimizer, keras.optimizers.SGD)
    assert float(network.optimizer.learning_rate) == pytest.approx(0.05)


@pytest.mark.parametrize(
    "hyperparameters",
    [
        {"hidden_units": "[16, 0]"},
        {"dropout": "1"},
        {"batch_size": "0"},
        {"learning_rate": "-0.1"},
        {"checkpoint_every": "0"},
    ],
)
def test_bounds_keep_out_what_keras_would_take(hyperparameters: dict[str, str]) -> None:
    # Keras would take a negative learning rate and train backwards; tf.data's "Batch size
    # must be greater than zero" would not say whose size it is.
    (name,) = hyperparameters
    with pytest.raises(HyperparameterError, match=f"hyperparameter '{name}' must be"):
        load(model.Hyperparameters, hyperparameters)


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
    for name in model.METRICS:
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


def test_a_checkpoint_every_n_epochs_holds_the_whole_training_state(
    job: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = recorded_checkpoints(monkeypatch)
    job.hyperparameters.write_text(json.dumps({"epochs": "5", "checkpoint_every": "2"}))
    assert training.main() == 0
    assert written == [2, 4]
    checkpoint = Checkpoints(job.checkpoints).path(4)
    # Keras' own file, compiled: the optimizer has taken 4 epochs of steps.
    network = keras.saving.load_model(checkpoint / model.MODEL_FILE)
    hp = model.Hyperparameters()
    data, _ = training.read_data(job, hp)
    steps = steps_per_epoch(len(data.train), hp)
    assert int(network.optimizer.iterations) == 4 * steps
    assert isinstance(network.layers[0], keras.layers.Normalization)
    # One Dropout mask per layer and step: the generators' states count them.
    states = json.loads((checkpoint / model.RANDOM_STATE_FILE).read_text())
    assert states == [[0, 4 * steps], [1, 4 * steps]]
    assert json.loads((checkpoint / model.CLASS_NAMES_FILE).read_text()) == [
        "setosa",
        "versicolor",
        "virginica",
    ]


def test_a_stop_ends_the_epoch_then_checkpoints_it(
    job: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = recorded_checkpoints(monkeypatch)
    epochs: list[float] = []

    def log_metric(name: str, value: float) -> None:
        if name == "train:loss":
            epochs.append(value)
            if len(epochs) == 3:
                running.stop.set()  # What SIGTERM does.

    running = in_process_job(job, log_metric)
    hp = model.Hyperparameters(epochs=50, checkpoint_every=10)
    data = sample(job)
    # TrainingStopped, raised in a Keras callback, comes out of fit and out of train.
    with pytest.raises(TrainingStopped, match="after step 3"):
        model.train(TrainingData(data), hp, running)
    assert len(epochs) == 3
    assert written == [3]
    checkpoint = Checkpoints(job.checkpoints).path(3)
    network = keras.saving.load_model(checkpoint / model.MODEL_FILE)
    assert int(network.optimizer.iterations) == 3 * steps_per_epoch(len(data), hp)


def test_a_job_resumed_after_its_last_epoch_fits_no_more(job: Paths) -> None:
    hp = model.Hyperparameters(epochs=2, checkpoint_every=2)
    data = TrainingData(sample(job))
    first = model.train(data, hp, in_process_job(job, lambda name, value: None))
    logged: list[str] = []
    again = model.train(data, hp, in_process_job(job, lambda name, _: logged.append(name)))
    assert logged == []
    np.testing.assert_array_equal(fingerprint(again), fingerprint(first))


def test_the_classes_are_those_of_training_and_validation(job: Paths) -> None:
    data = sample(job)
    virginica = data.labels == "virginica"
    hp = model.Hyperparameters(epochs=1)
    only = TrainingData(data.rows(~virginica), data.rows(virginica))
    trained = model.train(only, hp, in_process_job(job, lambda name, value: None))
    assert trained.class_names.tolist() == ["setosa", "versicolor", "virginica"]
    assert trained.network.output_shape == (None, 3)


def test_the_saved_model_is_a_keras_file_that_scales_its_input(trained: Paths) -> None:
    with zipfile.ZipFile(trained.model / model.MODEL_FILE) as archive:
        assert {"config.json", "model.weights.h5"} <= set(archive.namelist())
    class_names = json.loads((trained.model / model.CLASS_NAMES_FILE).read_text())
    assert class_names == ["setosa", "versicolor", "virginica"]
    # The scaling is a layer of the saved model, adapted on (most of) the training data.
    normalization = model.load(trained.model).network.layers[0]
    assert isinstance(normalization, keras.layers.Normalization)
    features = sample(trained).features
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


def test_load_traces_the_forward_pass_for_every_batch_size(trained: Paths) -> None:
    """No request pays for a trace: the first ones would take 40-70 ms more."""
    loaded = model.load(trained.model)
    traces = loaded.network.predict_function.experimental_get_tracing_count()
    assert traces >= 1
    for rows in (1, 7, 100, 1000, 1):
        model.predict(loaded, np.tile([[5.1, 3.5, 1.4, 0.2]], (rows, 1)))
    assert loaded.network.predict_function.experimental_get_tracing_count() == traces


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
