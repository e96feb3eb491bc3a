"""Your model: the one file to edit to bring your own (TensorFlow / Keras 3).

The training runner (``training.py``) and the model server (``inference.py``) call only what
is defined here, so replacing the small Keras MLP with your own network means editing this
file and nothing else:

- ``Hyperparameters``: the hyperparameters a training job accepts, typed, with defaults.
  SageMaker's ``hyperparameters.json`` is parsed and checked against it; an unknown name or
  a value of the wrong type fails the job with a message naming it.
- ``train(features, labels, hp, log_metric)``: build, compile and fit a Keras model and
  return it. ``features`` is a float64 array (rows x features), ``labels`` the first CSV
  column. A ``keras.layers.Normalization`` layer adapted on the training split does the
  feature scaling inside the model, so the saved file needs nothing beside it to score raw
  rows. A callback turns Keras' per-epoch logs into ``log_metric(name, value)`` calls
  (``train:loss``, ``train:accuracy``, ``validation:loss``, ``validation:accuracy``); each
  becomes one ``name=value`` line that a SageMaker ``MetricDefinitions`` regex such as
  ``validation:accuracy=([0-9.]+)`` picks up. ``fit`` runs with ``verbose=0``, so Keras'
  progress bars stay out of the log.
- ``save(model, model_dir)`` / ``load(model_dir)``: the native Keras format (``model.keras``,
  a zip of the architecture, the weights and the optimizer state) plus ``class_names.json``.
  ``load`` runs once per server worker: it sizes TensorFlow's thread pools with
  ``threads_per_worker()`` first, since TensorFlow fixes them when its runtime starts.
- ``predict(model, features)``: one ``predict_on_batch`` call for the whole batch (a compiled
  forward pass in inference mode: dropout off; unlike ``predict``, no per-call loop or
  progress bar), then the most probable class name per row. NaN is refused (HTTP 400).

TensorFlow runs on a GPU when it finds one, with no change here. ``pyproject.toml`` installs
the CPU-only ``tensorflow-cpu`` wheel on x86_64 Linux (half the download of ``tensorflow``,
which carries the CUDA kernels) and ``tensorflow`` elsewhere (arm64, macOS). For a GPU
image, replace those two lines with ``"tensorflow[and-cuda]>=2.16,<3"``, which brings CUDA
and cuDNN as pip wheels; the driver comes from the host (SageMaker's GPU instances provide
it; locally, ``docker run --gpus all``). ``load`` turns on GPU memory growth so that the
server's workers share the card instead of the first one taking all of its memory.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .environment import threads_per_worker

# Before TensorFlow is imported: Keras 3 on its TensorFlow backend, and TensorFlow's C++
# logging without its INFO lines (warnings and errors still show). The environment wins.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import keras
import tensorflow as tf

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
CLASS_NAMES_FILE = "class_names.json"

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


@dataclass(frozen=True)
class Hyperparameters:
    """Named as Keras names them: ``fit``'s arguments, the layers', the optimizer's."""

    epochs: int = 50
    batch_size: int = 16
    learning_rate: float = 0.01
    hidden_units: list[int] | int = field(default_factory=lambda: [32, 32])
    dropout: float = 0.1
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    validation_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                "hyperparameter 'validation_fraction' must be in [0, 1),"
                f" got {self.validation_fraction}"
            )
        # Checked here: Keras would take a negative learning rate and train backwards, and
        # tf.data's "Batch size must be greater than zero" does not say whose size it is.
        if self.batch_size < 1:
            raise ValueError(
                f"hyperparameter 'batch_size' must be at least 1, got {self.batch_size}"
            )
        if self.learning_rate <= 0:
            raise ValueError(
                f"hyperparameter 'learning_rate' must be positive, got {self.learning_rate}"
            )

    @property
    def layer_sizes(self) -> list[int]:
        """``hidden_units`` as a list: one int means one hidden layer."""
        return [self.hidden_units] if isinstance(self.hidden_units, int) else self.hidden_units


@dataclass(frozen=True)
class Classifier:
    """The Keras network (softmax over classes) and the class name of each output."""

    network: keras.Model
    class_names: np.ndarray


@contextmanager
def _rejected_as(hyperparameter: str) -> Iterator[None]:
    """Put the hyperparameter's name in front of what Keras says about its value."""
    try:
        yield
    except ValueError as exc:
        raise ValueError(f"hyperparameter {hyperparameter!r}: {exc}") from exc


class _LogMetrics(keras.callbacks.Callback):
    """One line per metric per epoch: Keras' ``loss`` and ``val_loss`` as ``train:loss``..."""

    def __init__(self, log_metric: Callable[[str, float], None]) -> None:
        super().__init__()
        self.log_metric = log_metric

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for name, value in sorted((logs or {}).items()):
            if name.startswith("val_"):
                self.log_metric(f"validation:{name.removeprefix('val_')}", float(value))
            else:
                self.log_metric(f"train:{name}", float(value))


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


def _network(
    normalization: keras.layers.Normalization, n_features: int, n_classes: int, hp: Hyperparameters
) -> keras.Sequential:
    network = keras.Sequential([keras.Input(shape=(n_features,)), normalization], name="mlp")
    for units in hp.layer_sizes:
        with _rejected_as("hidden_units"):
            network.add(keras.layers.Dense(units, activation="relu"))
        with _rejected_as("dropout"):
            network.add(keras.layers.Dropout(hp.dropout, seed=hp.seed))
    network.add(keras.layers.Dense(n_classes, activation="softmax"))
    return network


def train(
    features: np.ndarray,
    labels: np.ndarray,
    hp: Hyperparameters,
    log_metric: Callable[[str, float], None],
) -> Classifier:
    keras.utils.set_random_seed(hp.seed)
    class_names, targets = np.unique(labels, return_inverse=True)
    inputs = features.astype(np.float32)
    train_rows, validation_rows = _split(
        targets, hp.validation_fraction, np.random.default_rng(hp.seed)
    )
    if not len(train_rows):
        raise ValueError(
            f"hyperparameter 'validation_fraction' of {hp.validation_fraction}"
            " leaves no rows to train on"
        )
    # The scaling is learnt from the training split only and saved as part of the model.
    normalization = keras.layers.Normalization()
    normalization.adapt(inputs[train_rows])
    network = _network(normalization, inputs.shape[1], len(class_names), hp)
    network.compile(
        optimizer=OPTIMIZERS[hp.optimizer](learning_rate=hp.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    # tf.data pipelines rather than NumPy arrays: Keras would slice the arrays into tensors
    # again every epoch, which costs more than the training itself on a data set this small.
    training_data = (
        tf.data.Dataset.from_tensor_slices((inputs[train_rows], targets[train_rows]))
        .shuffle(len(train_rows), seed=hp.seed)
        .batch(hp.batch_size)
    )
    validation_data = (
        tf.data.Dataset.from_tensor_slices(
            (inputs[validation_rows], targets[validation_rows])
        ).batch(hp.batch_size)
        if len(validation_rows)
        else None
    )
    # Keras hands control back to Python after every batch, so SIGTERM stops it promptly.
    network.fit(
        training_data,
        epochs=hp.epochs,
        validation_data=validation_data,
        callbacks=[_LogMetrics(log_metric)],
        shuffle=False,  # The pipeline shuffles, every epoch.
        verbose=0,
    )
    return Classifier(network=network, class_names=class_names)


def save(model: Classifier, model_dir: Path) -> None:
    model.network.save(model_dir / MODEL_FILE)
    (model_dir / CLASS_NAMES_FILE).write_text(json.dumps(model.class_names.tolist()) + "\n")


def _size_thread_pools(threads: int) -> None:
    """Size TensorFlow's thread pools for one server worker, and let GPU memory grow.

    Only possible before TensorFlow's runtime starts, which it has already done when a
    process loads the model it has just trained (as the tests do).
    """
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        log.info("TensorFlow is already running: its thread pools keep their size")


def load(model_dir: Path) -> Classifier:
    _size_thread_pools(threads_per_worker())
    # No optimizer, loss or metrics: the server only runs the network forward.
    network = keras.models.load_model(model_dir / MODEL_FILE, compile=False)
    class_names = json.loads((model_dir / CLASS_NAMES_FILE).read_text())
    return Classifier(network=network, class_names=np.asarray(class_names))


def predict(model: Classifier, features: np.ndarray) -> np.ndarray:
    if np.isnan(features).any():
        row = int(np.isnan(features).any(axis=1).argmax())
        raise ValueError(f"features must not be NaN (row {row + 1}): this model has no imputation")
    # One compiled forward pass in inference mode (dropout off), returning a NumPy array.
    probabilities = model.network.predict_on_batch(features.astype(np.float32))
    return model.class_names[np.argmax(probabilities, axis=1)]
