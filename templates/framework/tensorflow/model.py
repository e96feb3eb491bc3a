"""Your model: the one file to edit to bring your own (TensorFlow / Keras 3).

The training runner (``training.py``) and the model server (``inference.py``) call only what
is defined here, so replacing the small Keras MLP with your own network means editing this
file and nothing else:

- ``Hyperparameters``: the hyperparameters a training job accepts, named as Keras names
  them, each with its type, default, bounds and help (``hyperparameter(...)``). That one
  declaration checks the job's ``hyperparameters.json`` (an unknown name, a wrong type or a
  value out of bounds fails the job with a message naming it; so does a value Keras itself
  rejects, ``activation="cube"``) and is the README's table (``make docs``).
  ``validation_fraction`` and ``seed`` are read by the runner too: it holds that share of the
  training rows out for validation when the job has no ``validation`` channel.
- ``METRICS``: the metrics training reports, with their help. A callback turns Keras'
  per-epoch logs into ``job.log_metric`` calls (``loss`` becomes ``train:loss``,
  ``val_accuracy`` ``validation:accuracy``): one ``name=value`` line each, which ``python
  -m <package> metric-definitions`` turns into SageMaker ``MetricDefinitions``. A metric you
  add to ``compile`` is printed once it is declared here. ``fit`` runs with ``verbose=0``,
  so Keras' progress bars stay out of the log.
- ``train(data, hp, job)``: build, compile and fit a Keras model and return it with its
  class names (a ``Classifier``). ``data.train`` and ``data.validation`` (``None`` when
  there is none) hold ``features`` (float64, rows x features) and ``labels`` (the first
  column); the classes are the labels of both. A ``keras.layers.Normalization`` layer
  adapted on the training rows does the feature scaling inside the model, so the saved file
  needs nothing beside it to score raw rows.
- Checkpoints: after each epoch a callback calls ``job.checkpoint``, which every
  ``checkpoint_every`` epochs, and at once when SageMaker stops the job (SIGTERM, after
  which it raises ``TrainingStopped`` out of ``fit``), writes the model file (weights, the
  Normalization layer's statistics, the optimizer with its step count and moments) and the
  state of the Dropout layers' random generators. A restarted job loads the newest one
  (``job.resume``) and fits the remaining epochs. Each epoch's order of the rows is shuffled
  from ``seed`` and the epoch number alone (``tf.random.experimental.stateless_shuffle``),
  so a resumed job ends with the very network of a job never stopped, bit for bit on the
  same machine.
- Several instances: each host trains the same model on all the rows and the first host
  saves it. To share the work, wrap the model's construction in
  ``tf.distribute.MultiWorkerMirroredStrategy`` with a ``TF_CONFIG`` made from
  ``job.cluster`` (its hosts, rank and port) and fit on ``job.shard(data)``.
- ``save(model, model_dir)`` / ``load(model_dir)``: the native Keras format (``model.keras``,
  a zip of the architecture, the weights and the optimizer state) plus ``class_names.json``.
  ``load`` runs once per server worker: it sizes TensorFlow's thread pools with
  ``threads_per_worker()`` first, since TensorFlow fixes them when its runtime starts, and
  then runs the network on a batch of one row and one of two. Keras traces its forward pass
  on the first call of each batch shape, and after the second shape it traces one for any
  batch size: without this, the first two requests a worker served would take 40-70 ms
  more.
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
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .channels import TrainingData
from .environment import threads_per_worker
from .hyperparameters import hyperparameter
from .job import Job

# Before TensorFlow is imported: Keras 3 on its TensorFlow backend, and TensorFlow's C++
# logging without its INFO lines (warnings and errors still show). The environment wins.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# Keras keeps its settings in ~/.keras, or in /tmp/.keras for a user whose home it cannot
# write (a serverless endpoint's): under TMPDIR then, with what the server writes.
os.environ.setdefault("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
if not os.access(os.path.dirname(os.environ["KERAS_HOME"]), os.W_OK):
    os.environ["KERAS_HOME"] = os.path.join(tempfile.gettempdir(), ".keras")

import keras
import tensorflow as tf

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
CLASS_NAMES_FILE = "class_names.json"
RANDOM_STATE_FILE = "random_state.json"  # In checkpoints only: what model.keras leaves out.

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}

METRICS = {
    "train:loss": "Cross-entropy on the training rows, averaged over each epoch.",
    "train:accuracy": "Accuracy on the training rows, averaged over each epoch.",
    "validation:loss": "Cross-entropy on the validation rows, after each epoch.",
    "validation:accuracy": "Accuracy on the validation rows, after each epoch.",
}


@dataclass(frozen=True)
class Hyperparameters:
    """Named as Keras names them: ``fit``'s arguments, the layers', the optimizer's."""

    epochs: int = hyperparameter(50, "Passes over the training rows.", ge=1)
    batch_size: int = hyperparameter(16, "Rows per gradient step.", ge=1)
    learning_rate: float = hyperparameter(0.01, "The optimizer's step size.", gt=0)
    hidden_units: list[int] | int = hyperparameter(
        [32, 32], "Units of each hidden layer; one number: one hidden layer.", ge=1
    )
    activation: str = hyperparameter("relu", "The hidden layers' Keras activation function.")
    dropout: float = hyperparameter(0.1, "Share of units each hidden layer drops.", ge=0, lt=1)
    optimizer: Literal["adam", "sgd", "rmsprop"] = hyperparameter("adam", "The Keras optimizer.")
    validation_fraction: float = hyperparameter(
        0.2,
        "Training rows held out for validation when there is no validation channel.",
        ge=0,
        lt=1,
    )
    seed: int = hyperparameter(
        0, "Seeds the weights, the shuffles, the dropout and the validation split.", ge=0
    )
    checkpoint_every: int = hyperparameter(
        10, "Epochs between two checkpoints (a stop checkpoints at once).", ge=1
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
                name = f"validation:{name.removeprefix('val_')}"
            else:
                name = f"train:{name}"
            if name in METRICS:
                self.log_metric(name, float(value))


class _Checkpoint(keras.callbacks.Callback):
    """``job.checkpoint`` after each epoch: saves every ``every`` epochs and stops on SIGTERM.

    ``TrainingStopped`` (a ``BaseException``) goes up through ``fit``, which stops there.
    """

    def __init__(self, job: Job, every: int, write: Callable[[Path], None]) -> None:
        super().__init__()
        self.job, self.every, self.write = job, every, write

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.job.checkpoint(epoch + 1, self.write, every=self.every)  # Keras counts from 0.


def _network(n_features: int, n_classes: int, hp: Hyperparameters) -> keras.Sequential:
    network = keras.Sequential([keras.Input(shape=(n_features,)), keras.layers.Normalization()])
    for number, units in enumerate(hp.layer_sizes):
        with _rejected_as("activation"):
            network.add(keras.layers.Dense(units, activation=hp.activation))
        # A seed per layer: the same one would drop the same units in every layer.
        network.add(keras.layers.Dropout(hp.dropout, seed=hp.seed + number))
    network.add(keras.layers.Dense(n_classes, activation="softmax"))
    return network


def _random_states(network: keras.Model) -> list[keras.Variable]:
    """The state of each random generator in the network (the Dropout layers' masks)."""
    return [variable for variable in network.variables if variable.name == "seed_generator_state"]


def _batches(
    inputs: np.ndarray, targets: np.ndarray, hp: Hyperparameters, first: int
) -> tf.data.Dataset:
    """The batches of the epochs after ``first``, each epoch's rows in an order drawn from
    ``seed`` and its number alone: a resumed job sees the batches of one never stopped."""

    def epoch(number: tf.Tensor) -> tf.data.Dataset:
        seed = tf.stack([tf.constant(hp.seed, tf.int64), number])
        order = tf.random.experimental.stateless_shuffle(tf.range(len(targets)), seed=seed)
        shuffled = (tf.gather(inputs, order), tf.gather(targets, order))
        return tf.data.Dataset.from_tensor_slices(shuffled).batch(hp.batch_size)

    return tf.data.Dataset.range(first, hp.epochs).flat_map(epoch)


def new_classifier(data: TrainingData, class_names: np.ndarray, hp: Hyperparameters) -> Classifier:
    keras.utils.set_random_seed(hp.seed)  # The initial weights.
    network = _network(data.train.features.shape[1], len(class_names), hp)
    # The scaling is learnt from the training rows only and saved as part of the model.
    network.layers[0].adapt(data.train.features.astype(np.float32))
    network.compile(
        optimizer=OPTIMIZERS[hp.optimizer](learning_rate=hp.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return Classifier(network=network, class_names=class_names)


def train(data: TrainingData, hp: Hyperparameters, job: Job) -> Classifier:
    labels = data.train.labels
    if data.validation is not None:
        labels = np.concatenate([labels, data.validation.labels])
    class_names = np.unique(labels)
    resumed = job.resume(read_checkpoint)
    done, model = resumed if resumed else (0, new_classifier(data, class_names, hp))
    if not np.array_equal(model.class_names, class_names):
        raise ValueError(
            f"the checkpoint's classes {model.class_names.tolist()} are not the data's"
            f" {class_names.tolist()}"
        )
    inputs = data.train.features.astype(np.float32)
    targets = np.searchsorted(class_names, data.train.labels)
    validation = None
    if data.validation is not None:
        validation = tf.data.Dataset.from_tensor_slices(
            (
                data.validation.features.astype(np.float32),
                np.searchsorted(class_names, data.validation.labels),
            )
        ).batch(hp.batch_size)
    if done < hp.epochs:
        # One fit for every epoch left; Keras hands control back to Python after every
        # batch, so a SIGTERM is seen at the end of the epoch it comes in.
        model.network.fit(
            _batches(inputs, targets, hp, done),
            initial_epoch=done,
            epochs=hp.epochs,
            steps_per_epoch=math.ceil(len(targets) / hp.batch_size),
            validation_data=validation,
            callbacks=[
                _LogMetrics(job.log_metric),
                _Checkpoint(job, hp.checkpoint_every, lambda path: write_checkpoint(model, path)),
            ],
            shuffle=False,  # _batches shuffles, every epoch.
            verbose=0,
        )
    return model


def write_checkpoint(model: Classifier, directory: Path) -> None:
    """The model file (optimizer included) and the random generators' states beside it."""
    save(model, directory)
    states = [state.numpy().tolist() for state in _random_states(model.network)]
    (directory / RANDOM_STATE_FILE).write_text(json.dumps(states) + "\n")


def read_checkpoint(directory: Path) -> Classifier:
    network = keras.saving.load_model(directory / MODEL_FILE)  # Compiled, optimizer and all.
    states = json.loads((directory / RANDOM_STATE_FILE).read_text())
    for state, value in zip(_random_states(network), states, strict=True):
        state.assign(value)
    class_names = json.loads((directory / CLASS_NAMES_FILE).read_text())
    return Classifier(network=network, class_names=np.asarray(class_names))


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
    for rows in (1, 2):  # Trace the forward pass now, for every batch size (see above).
        network.predict_on_batch(np.zeros((rows, *network.input_shape[1:]), np.float32))
    class_names = json.loads((model_dir / CLASS_NAMES_FILE).read_text())
    return Classifier(network=network, class_names=np.asarray(class_names))


def predict(model: Classifier, features: np.ndarray) -> np.ndarray:
    if np.isnan(features).any():
        row = int(np.isnan(features).any(axis=1).argmax())
        raise ValueError(f"features must not be NaN (row {row + 1}): this model has no imputation")
    # One compiled forward pass in inference mode (dropout off), returning a NumPy array.
    probabilities = model.network.predict_on_batch(features.astype(np.float32))
    return model.class_names[np.argmax(probabilities, axis=1)]
