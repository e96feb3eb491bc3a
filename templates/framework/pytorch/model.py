"""Your model: the one file to edit to bring your own (PyTorch).

The training runner (``training.py``) and the model server (``inference.py``) call only what
is defined here, so replacing the MLP with your own network means editing this file and
nothing else:

- ``Hyperparameters``: the hyperparameters a training job accepts, typed, with defaults.
  SageMaker's ``hyperparameters.json`` is parsed and checked against it; an unknown name or
  a value of the wrong type fails the job with a message naming it.
- ``train(features, labels, hp, log_metric)``: build the network, fit it and return it with
  what predicting needs (a ``Classifier``). ``features`` is a float64 array (rows x
  features), ``labels`` the first CSV column. Report metrics with ``log_metric(name, value)``;
  each becomes one ``name=value`` line, every epoch, that a SageMaker ``MetricDefinitions``
  regex such as ``validation:accuracy=([0-9.]+)`` picks up. The loop is back in Python after
  every batch, so a stopped job (SIGTERM) ends at once.
- ``save(model, model_dir)`` / ``load(model_dir)``: the network's ``state_dict`` goes to
  ``model.pt`` (``torch.save``), with the feature scaling fitted on the training split as
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

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .environment import threads_per_worker

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "model.json"
# Rows per forward pass when predicting: a 100 MB batch-transform payload stays in memory.
PREDICT_CHUNK_ROWS = 65_536
# CPU threads for training. Batches of a network this small are too small to share out:
# more threads only wait for each other, badly so on a busy CPU. Raise it for a larger one.
TRAINING_THREADS = 1


@dataclass(frozen=True)
class Hyperparameters:
    """Named as PyTorch users name them; see ``torch.optim`` and ``torch.nn``."""

    epochs: int = 50
    batch_size: int = 16
    lr: float = 0.01
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9  # SGD only.
    weight_decay: float = 0.0
    hidden_layers: list[int] = field(default_factory=lambda: [32, 32])
    dropout: float = 0.1
    validation_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                "hyperparameter 'validation_fraction' must be in [0, 1),"
                f" got {self.validation_fraction}"
            )
        if self.epochs < 1:
            raise ValueError(f"hyperparameter 'epochs' must be at least 1, got {self.epochs}")
        if any(units < 1 for units in self.hidden_layers):
            raise ValueError(
                "hyperparameter 'hidden_layers' must list positive sizes,"
                f" got {self.hidden_layers}"
            )


class MLP(nn.Module):
    """Standardise the features, then ReLU layers with dropout, then one logit per class."""

    def __init__(
        self, n_features: int, hidden_layers: list[int], n_classes: int, dropout: float
    ) -> None:
        super().__init__()
        # Fitted on the training split; buffers travel in the state_dict with the weights.
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


def train(
    features: np.ndarray,
    labels: np.ndarray,
    hp: Hyperparameters,
    log_metric: Callable[[str, float], None],
) -> Classifier:
    torch.set_num_threads(TRAINING_THREADS)
    torch.manual_seed(hp.seed)  # Weight initialisation and dropout, on every device.
    target = device()
    classes, codes = np.unique(labels, return_inverse=True)
    x = torch.as_tensor(features, dtype=torch.float32)
    y = torch.as_tensor(codes, dtype=torch.long)
    train_rows, validation_rows = stratified_split(codes, hp.validation_fraction, hp.seed)
    x_train, y_train = x[train_rows], y[train_rows]
    x_val, y_val = x[validation_rows].to(target), y[validation_rows].to(target)

    architecture = {
        "n_features": x.shape[1],
        "hidden_layers": list(hp.hidden_layers),
        "n_classes": len(classes),
        "dropout": hp.dropout,
    }
    network = MLP(**architecture)
    std = x_train.std(dim=0) if len(x_train) > 1 else torch.ones(x.shape[1])
    network.mean.copy_(x_train.mean(dim=0))
    network.scale.copy_(torch.where(std > 0, std, torch.ones_like(std)))
    network.to(target)
    optimizer = make_optimizer(network, hp)
    loss_fn = nn.CrossEntropyLoss()
    batches = DataLoader(
        TensorDataset(x_train, y_train),
        batch_size=hp.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(hp.seed),
    )
    for epoch in range(1, hp.epochs + 1):
        network.train()
        loss_sum = torch.zeros((), device=target)
        correct = torch.zeros((), dtype=torch.long, device=target)
        for x_batch, y_batch in batches:
            x_batch, y_batch = x_batch.to(target), y_batch.to(target)
            optimizer.zero_grad()
            logits = network(x_batch)
            loss = loss_fn(logits, y_batch)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(y_batch)
            correct += (logits.argmax(dim=1) == y_batch).sum()
        log_metric("epoch", epoch)
        log_metric("train:loss", loss_sum.item() / len(train_rows))
        log_metric("train:accuracy", correct.item() / len(train_rows))
        if len(validation_rows):
            network.eval()
            with torch.inference_mode():
                logits = network(x_val)
                log_metric("validation:loss", loss_fn(logits, y_val).item())
                log_metric(
                    "validation:accuracy", (logits.argmax(dim=1) == y_val).float().mean().item()
                )
    network.eval()
    return Classifier(network, classes, architecture)


def stratified_split(
    codes: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers (training, validation), each class split in the same proportion."""
    rng = np.random.default_rng(seed)
    validation = [np.empty(0, dtype=np.int64)]
    for code in np.unique(codes):
        rows = rng.permutation(np.flatnonzero(codes == code))
        validation.append(rows[: min(round(len(rows) * fraction), len(rows) - 1)])
    validation_rows = np.sort(np.concatenate(validation))
    return np.setdiff1d(np.arange(len(codes)), validation_rows), validation_rows


def make_optimizer(network: nn.Module, hp: Hyperparameters) -> torch.optim.Optimizer:
    if hp.optimizer == "sgd":
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.SGD
        settings = {"lr": hp.lr, "momentum": hp.momentum, "weight_decay": hp.weight_decay}
    else:
        optimizer_class = torch.optim.Adam
        settings = {"lr": hp.lr, "weight_decay": hp.weight_decay}
    try:
        return optimizer_class(network.parameters(), **settings)
    except ValueError as exc:
        # torch.optim says "Invalid learning rate: -0.1": name the hyperparameters it got.
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
