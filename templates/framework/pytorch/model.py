"""Your model: the one file to edit to bring your own (PyTorch).

The training runner (``training.py``) and the model server (``inference.py``) call only what
is defined here, so replacing the MLP with your own network means editing this file and
nothing else:

- ``Hyperparameters``: the hyperparameters a training job accepts, each with its type,
  default, bounds and help (``hyperparameter(...)``). That one declaration checks the job's
  ``hyperparameters.json`` (an unknown name, a wrong type or a value out of bounds fails the
  job with a message naming it) and is the README's table (``make docs``).
  ``validation_fraction`` and ``seed`` are read by the runner too: it holds that share of the
  training rows out for validation when the job has no ``validation`` channel.
- ``METRICS``: the metrics training reports, with their help. Each ``job.log_metric(name,
  value)`` prints one ``name=value`` line, every epoch; ``python -m <package>
  metric-definitions`` prints the SageMaker ``MetricDefinitions`` that read them.
- ``train(data, hp, job)``: build the network, fit it and return it with what predicting
  needs (a ``Classifier``). ``data.train`` and ``data.validation`` (``None`` when there is
  none) hold ``features`` (float64, rows x features) and ``labels`` (the first column).
  After every epoch ``job.checkpoint`` saves, each ``checkpoint_every`` epochs and when the
  job is stopped (SIGTERM), the network's ``state_dict``, the optimizer's state and the
  epoch; a restarted job resumes from the newest one (``job.resume``). Every random draw of
  an epoch (shuffling, dropout) is seeded from ``seed`` and the epoch, so a resumed job ends
  with the very network of a job never stopped (bit for bit on the CPU).
- Distributed training (``distributed.py``): with several hosts (``job.cluster``), or
  several GPUs (one process each, ``processes_per_host``), every process trains a
  ``DistributedDataParallel`` copy of the network on its share of the rows, in one
  ``torch.distributed`` process group. The classes and, when each host holds other rows
  (ShardedByS3Key), the feature scaling are combined across processes; they agree after
  every epoch on whether to stop. The first process logs the (cluster-wide) metrics,
  writes the checkpoints and returns the network that the runner saves.
- ``save(model, model_dir)`` / ``load(model_dir)``: the network's ``state_dict`` goes to
  ``model.pt`` (``torch.save``), with the feature scaling fitted on the training rows as
  buffers; ``model.json`` holds the class names and the layer sizes that rebuild the network
  before ``load_state_dict``. ``load`` runs once per server worker and gives PyTorch that
  worker's share of the CPUs.
- ``predict(model, features)``: one forward pass, in inference mode, for a whole batch (in
  chunks of ``PREDICT_CHUNK_ROWS`` rows for a huge one). A NaN feature is a ValueError,
  which the server answers with 400.

The network runs on the GPU when PyTorch sees one (``torch.cuda.is_available()``) and on the
CPU otherwise, with no change here.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from . import distributed
from .channels import TrainingData
from .environment import threads_per_worker
from .hyperparameters import hyperparameter
from .job import Job, TrainingStopped

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "model.json"
STATE_FILE = "state.pt"  # In a checkpoint: network, optimizer, epoch.
# Rows per forward pass when predicting: a 100 MB batch-transform payload stays in memory.
PREDICT_CHUNK_ROWS = 65_536
# CPU threads for training. Batches of a network this small are too small to share out:
# more threads only wait for each other, badly so on a busy CPU. Raise it for a larger one.
TRAINING_THREADS = 1

METRICS = {
    "epoch": "The epoch just finished, counted from 1.",
    "train:loss": "Mean cross-entropy over the epoch's training batches.",
    "train:accuracy": "Accuracy over the epoch's training batches.",
    "validation:loss": "Cross-entropy on the validation rows, after the epoch.",
    "validation:accuracy": "Accuracy on the validation rows, after the epoch.",
}


@dataclass(frozen=True)
class Hyperparameters:
    """Named as PyTorch users name them; see ``torch.optim`` and ``torch.nn``."""

    epochs: int = hyperparameter(50, "Passes over the training rows.", ge=1)
    batch_size: int = hyperparameter(16, "Rows per batch, in each training process.", ge=1)
    lr: float = hyperparameter(0.01, "Learning rate.", gt=0)
    optimizer: Literal["adam", "sgd"] = hyperparameter(
        "adam", "torch.optim.Adam or torch.optim.SGD."
    )
    momentum: float = hyperparameter(0.9, "SGD momentum factor (SGD only).", ge=0)
    nesterov: bool = hyperparameter(False, "Nesterov momentum (SGD only).")
    weight_decay: float = hyperparameter(0.0, "L2 penalty on the weights.", ge=0)
    hidden_layers: list[int] = hyperparameter(
        [32, 32], "Units of each hidden ReLU layer; [] is a linear model.", ge=1
    )
    dropout: float = hyperparameter(
        0.1, "Dropout probability after each hidden layer.", ge=0, lt=1
    )
    validation_fraction: float = hyperparameter(
        0.2,
        "Training rows held out for validation when there is no validation channel.",
        ge=0,
        lt=1,
    )
    seed: int = hyperparameter(
        0, "Seeds the weights, the shuffling, the dropout and the validation split.", ge=0
    )
    checkpoint_every: int = hyperparameter(
        10, "Epochs between two checkpoints (a stop checkpoints at once).", ge=1
    )
    processes_per_host: int | None = hyperparameter(
        None, "Training processes on each host; null: one per GPU, else one.", ge=1
    )


class MLP(nn.Module):
    """Standardise the features, then ReLU layers with dropout, then one logit per class."""

    def __init__(
        self, n_features: int, hidden_layers: list[int], n_classes: int, dropout: float
    ) -> None:
        super().__init__()
        # Fitted on the training rows; buffers travel in the state_dict with the weights.
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        layers: list[nn.Module] = []
        width = n_features
        for units in hidden_layers:
            layers += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(dropout)]
            width = units
        layers.append(nn.Linear(width, n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - self.mean) / self.scale)


@dataclass
class Classifier:
    """The network, and what turns its outputs into class names."""

    network: MLP
    classes: np.ndarray  # The class of each output, in order.
    architecture: dict[str, Any]  # MLP's arguments: rebuilds the network at load.
    threads: int | None = None  # CPU threads for predicting, set at load.


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(data: TrainingData, hp: Hyperparameters, job: Job) -> Classifier:
    """Train in this process, with one more process per extra GPU, and hosts alike."""
    return distributed.run(functools.partial(fit, data, hp), job, hp.processes_per_host)


def fit(
    data: TrainingData,
    hp: Hyperparameters,
    place: distributed.Place,
    job: Job | None,
    stop: threading.Event,
) -> Classifier:
    """One training process; ``job`` is None in the extra local ones: they save nothing."""
    torch.set_num_threads(TRAINING_THREADS)
    target = place.device()
    # Each host holds other rows (ShardedByS3Key): they count differently and must be
    # combined across hosts; replicated rows are the same everywhere.
    sharded = place.hosts > 1 and not data.replicated
    labels = [data.train.labels]
    if data.validation is not None:
        labels.append(data.validation.labels)
    classes = distributed.shared_classes(place, np.unique(np.concatenate(labels)))
    x = torch.as_tensor(data.train.features, dtype=torch.float32)
    y = torch.as_tensor(np.searchsorted(classes, data.train.labels), dtype=torch.long)

    architecture = {
        "n_features": x.shape[1],
        "hidden_layers": list(hp.hidden_layers),
        "n_classes": len(classes),
        "dropout": hp.dropout,
    }
    torch.manual_seed(hp.seed)  # The initial weights (DDP hands rank 0's to every rank).
    network = MLP(**architecture)
    mean, scale = scaling(data.train.features, place, sharded)
    network.mean.copy_(mean)
    network.scale.copy_(scale)
    network.to(target)
    optimizer = make_optimizer(network, hp)

    def write_state(directory: Path) -> None:
        state = {
            "epoch": epoch,
            "network": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "classes": classes.tolist(),
            "architecture": architecture,
        }
        torch.save(state, directory / STATE_FILE)

    # The first process reads the checkpoint and hands it to the others.
    resumed = distributed.first_process(place, lambda: job.resume(read_state) if job else None)
    epoch = 0
    if resumed is not None:
        epoch, state = resumed
        if state["classes"] != classes.tolist() or state["architecture"] != architecture:
            raise ValueError(
                f"the checkpoint for epoch {epoch} is of another network"
                f" ({state['architecture']}, classes {state['classes']}) than this job's"
                f" ({architecture}, classes {classes.tolist()}): delete it or keep the"
                " hyperparameters and data it was trained with"
            )
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])

    trainer = distributed.data_parallel(network, place)
    sampler = distributed.sampler(TensorDataset(x, y), place, sharded, hp.seed)
    batches = DataLoader(TensorDataset(x, y), batch_size=hp.batch_size, sampler=sampler)
    validation = None
    if data.validation is not None:
        codes = np.searchsorted(classes, data.validation.labels)
        validation = (
            torch.as_tensor(data.validation.features, dtype=torch.float32, device=target),
            torch.as_tensor(codes, dtype=torch.long, device=target),
        )
    while epoch < hp.epochs:
        epoch += 1
        sampler.set_epoch(epoch)  # The epoch's shuffle: seed + epoch.
        torch.manual_seed(epoch_seed(hp.seed, epoch, place.rank))  # The epoch's dropout.
        trainer.train()
        # Summed over the rows: loss, correct, rows; then the same for validation; then stop.
        totals = torch.zeros(7, dtype=torch.float64, device=target)
        with distributed.even_batches(trainer, place, sharded):
            for x_batch, y_batch in batches:
                x_batch, y_batch = x_batch.to(target), y_batch.to(target)
                optimizer.zero_grad()
                logits = trainer(x_batch)
                loss = nn.functional.cross_entropy(logits, y_batch)
                loss.backward()
                optimizer.step()
                totals[0] += loss.detach() * len(y_batch)
                totals[1] += (logits.argmax(dim=1) == y_batch).sum()
                totals[2] += len(y_batch)
        if validation is not None:
            network.eval()
            with torch.inference_mode():
                logits = network(validation[0])
                totals[3] += nn.functional.cross_entropy(logits, validation[1], reduction="sum")
                totals[4] += (logits.argmax(dim=1) == validation[1]).sum()
                totals[5] += len(validation[1])
        totals[6] = float(stop.is_set())
        distributed.add_up(place, totals)  # One collective an epoch: metrics, stop agreed on.
        stopping = bool(totals[6] > 0)
        if job is not None and place.rank == 0:
            log_metrics(job, epoch, totals.tolist())
        if job is not None:
            job.checkpoint(epoch, write_state, every=hp.checkpoint_every, stopping=stopping)
        elif stopping:
            raise TrainingStopped(f"stopped with the other processes after epoch {epoch}")
    network.eval()
    return Classifier(network, classes, architecture)


def log_metrics(job: Job, epoch: int, totals: list[float]) -> None:
    loss, correct, rows, validation_loss, validation_correct, validation_rows, _ = totals
    job.log_metric("epoch", epoch)
    job.log_metric("train:loss", loss / rows)
    job.log_metric("train:accuracy", correct / rows)
    if validation_rows:
        job.log_metric("validation:loss", validation_loss / validation_rows)
        job.log_metric("validation:accuracy", validation_correct / validation_rows)


def scaling(
    features: np.ndarray, place: distributed.Place, sharded: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of the training rows; of every host's rows when sharded."""
    target = place.device()
    x = torch.as_tensor(features, dtype=torch.float64, device=target)
    count = torch.tensor(float(len(x)), dtype=torch.float64, device=target)
    total = x.sum(dim=0)
    if sharded:
        distributed.add_up(place, count, total)
    mean = total / count
    squares = ((x - mean) ** 2).sum(dim=0)
    if sharded:
        distributed.add_up(place, squares)
    std = (squares / (count - 1)).sqrt() if count > 1 else torch.ones_like(mean)
    return mean.float(), torch.where(std > 0, std, torch.ones_like(std)).float()


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The torch seed of one epoch in one process: the same on every run, unlike elsewhere."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def read_state(directory: Path) -> dict[str, Any]:
    # weights_only: tensors and plain containers, never arbitrary pickled code.
    return torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)


def make_optimizer(network: nn.Module, hp: Hyperparameters) -> torch.optim.Optimizer:
    settings: dict[str, Any]
    if hp.optimizer == "sgd":
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.SGD
        settings = {
            "lr": hp.lr,
            "momentum": hp.momentum,
            "nesterov": hp.nesterov,
            "weight_decay": hp.weight_decay,
        }
    else:
        optimizer_class = torch.optim.Adam
        settings = {"lr": hp.lr, "weight_decay": hp.weight_decay}
    try:
        return optimizer_class(network.parameters(), **settings)
    except ValueError as exc:
        # torch.optim says "Nesterov momentum requires a momentum...": name what it got.
        given = ", ".join(f"{name}={value}" for name, value in settings.items())
        raise ValueError(f"{optimizer_class.__name__} rejected {given}: {exc}") from exc


def save(model: Classifier, model_dir: Path) -> None:
    torch.save(model.network.state_dict(), model_dir / WEIGHTS_FILE)
    config = {"classes": model.classes.tolist(), "architecture": model.architecture}
    (model_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def load(model_dir: Path) -> Classifier:
    # Several server workers run side by side: each gets its share of the CPUs.
    threads = threads_per_worker()
    torch.set_num_threads(threads)
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    network = MLP(**config["architecture"])
    target = device()
    # weights_only: tensors and plain containers, never arbitrary pickled code.
    state = torch.load(model_dir / WEIGHTS_FILE, map_location=target, weights_only=True)
    network.load_state_dict(state)
    network.to(target).eval()
    return Classifier(network, np.asarray(config["classes"]), config["architecture"], threads)


def predict(model: Classifier, features: np.ndarray) -> np.ndarray:
    if np.isnan(features).any():
        row = int(np.isnan(features).any(axis=1).argmax())
        raise ValueError(f"features must be numbers: row {row + 1} has NaN")
    if model.threads is not None and torch.get_num_threads() != model.threads:
        # PyTorch (OpenMP) keeps the CPU thread count per OS thread: a server thread that
        # ran torch code before load kept the old count.
        torch.set_num_threads(model.threads)
    network = model.network
    target = next(network.parameters()).device
    inputs = torch.as_tensor(features, dtype=torch.float32)
    with torch.inference_mode():
        codes = [
            network(chunk.to(target)).argmax(dim=1).cpu()
            for chunk in inputs.split(PREDICT_CHUNK_ROWS)
        ]
    return model.classes[torch.cat(codes).numpy()]
