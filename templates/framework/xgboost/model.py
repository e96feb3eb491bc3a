"""Your model: the one file to edit to bring your own (XGBoost).

The training runner (``training.py``) and the model server (``inference.py``) call only what
is defined here, so changing the objective, the features or the library means editing this
file and nothing else:

- ``Hyperparameters``: the hyperparameters a training job accepts, named as XGBoost names
  them, each with its type, default, bounds and help (``hyperparameter(...)``). That one
  declaration checks the job's ``hyperparameters.json`` (an unknown name, a wrong type or a
  value out of bounds fails the job with a message naming it; so does a value XGBoost itself
  rejects, ``grow_policy="sideways"``) and is the README's table (``make docs``).
  ``validation_fraction`` and ``seed`` are read by the runner too: it holds that share of the
  training rows out for validation when the job has no ``validation`` channel.
- ``METRICS``: the metrics training reports, with their help. Every round prints
  ``train:mlogloss`` and ``validation:mlogloss`` through ``job.log_metric``, the end
  ``train:accuracy`` / ``validation:accuracy``: one ``name=value`` line each, which
  ``python -m <package> metric-definitions`` turns into SageMaker ``MetricDefinitions``.
- ``train(data, hp, job)``: boost round by round (``Booster.update``) and return the model.
  The classes are the labels of ``data.train`` and ``data.validation`` together. After each
  round ``after_round`` logs the metrics, applies early stopping and calls
  ``job.checkpoint``: every ``checkpoint_every`` rounds, and at once on a stop (SIGTERM), the
  booster goes to a checkpoint. A restarted job (``job.resume``) boosts the remaining rounds
  on top of it and ends with the very booster of a job never stopped, bit for bit:
  ``seed_per_iteration`` seeds the row and column sampling (``subsample``,
  ``colsample_bytree``) from the round number, not from a generator a restart would reset.
  Early stopping carries over a restart: its best round and score are attributes of the
  booster, saved with it. (``xgboost.train`` would do the boosting, but before XGBoost 3.3,
  the only release for Python 3.10 and 3.11, its rounds count from 0 again on a restart and
  the column sampler keeps a generator of its own in the process: ``boost`` passes the round
  number itself and starts each round with a fresh sampler.)
- Distributed training (``distributed.py``): with several hosts (``job.cluster``) they join
  XGBoost's collective and each boosts on its share of the rows (``job.shard``), summing
  each round's histograms, so every host grows the same trees. They agree on the classes,
  on the checkpoint they resume from (the first host's) and, every round, on whether to
  stop (one host's SIGTERM stops them all after the same round).
- ``save(model, model_dir)`` / ``load(model_dir)``: the booster in XGBoost's own UBJSON
  format (``model.ubj``, readable by later XGBoost releases and by XGBoost in any language)
  and the class names (``classes.json``). ``load`` runs once per server worker and gives
  each worker's booster its share of the CPUs (``threads_per_worker()``).
- ``predict(model, features)``: one ``inplace_predict`` call for a whole batch of rows. A
  missing value (NaN) is what XGBoost calls missing: each split sends it down the branch it
  keeps for missing values.

GPU: ``train`` uses ``device="cuda"`` when the container sees an NVIDIA GPU and the installed
XGBoost was built with CUDA, ``cpu`` otherwise. On Linux, ``pyproject.toml`` installs
``xgboost-cpu``, XGBoost's CPU-only build (about 23 MB installed, against about 90 MB plus
NVIDIA's NCCL package for the full one). For a GPU image, replace both XGBoost lines there
with ``"xgboost>=3.2,<4",``: that wheel carries its CUDA code (the driver comes from the GPU
instance), so neither the base image nor this file changes. The server predicts on the CPU
either way.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import xgboost

from . import distributed
from .channels import TrainingData
from .environment import cpu_count, gpu_count, threads_per_worker
from .hyperparameters import hyperparameter
from .job import Job

log = logging.getLogger(__name__)

MODEL_FILE = "model.ubj"  # The extension selects XGBoost's UBJSON format.
CLASSES_FILE = "classes.json"
# XGBoost reports a parameter by its main name; these hyperparameters use its other name.
REPORTED_AS = {"learning_rate": "eta", "min_split_loss": "gamma"}
WATCHED = "validation:mlogloss"  # What early stopping watches.

METRICS = {
    "train:mlogloss": "Multiclass log loss on the training rows, every round.",
    "validation:mlogloss": "Multiclass log loss on the validation rows, every round.",
    "train:accuracy": "Accuracy on the training rows, after training.",
    "validation:accuracy": "Accuracy on the validation rows, after training.",
}


@dataclass(frozen=True)
class Hyperparameters:
    """Named as XGBoost names them; see its "XGBoost Parameters" page."""

    num_round: int = hyperparameter(100, "Boosting rounds (one tree per class each).", ge=1)
    eta: float = hyperparameter(0.3, "Learning rate: shrinks each new tree.", ge=0)
    max_depth: int = hyperparameter(6, "Deepest a tree grows; 0: no limit.", ge=0)
    min_child_weight: float = hyperparameter(1.0, "Least hessian weight a child node needs.", ge=0)
    subsample: float = hyperparameter(1.0, "Share of the rows each tree sees.", gt=0, le=1)
    colsample_bytree: float = hyperparameter(
        1.0, "Share of the features each tree sees.", gt=0, le=1
    )
    gamma: float = hyperparameter(0.0, "Least loss reduction a split needs.", ge=0)
    reg_lambda: float = hyperparameter(
        1.0, "L2 regularisation of the leaf weights (XGBoost's lambda).", ge=0
    )
    grow_policy: str = hyperparameter(
        "depthwise", "depthwise: split the nodes nearest the root; lossguide: the best split."
    )
    early_stopping_rounds: int | None = hyperparameter(
        None, "Stop after this many rounds without a better validation loss; null: never.", ge=1
    )
    nthread: int = hyperparameter(
        0, "CPU threads; 0: every CPU of the container (small data trains faster on few).", ge=0
    )
    validation_fraction: float = hyperparameter(
        0.2,
        "Training rows held out for validation when there is no validation channel.",
        ge=0,
        lt=1,
    )
    seed: int = hyperparameter(0, "Seeds the row and column sampling and the split.", ge=0)
    checkpoint_every: int = hyperparameter(
        10, "Rounds between two checkpoints (a stop checkpoints at once).", ge=1
    )


@dataclass(frozen=True)
class Classifier:
    """A booster and the class names its outputs stand for."""

    booster: xgboost.Booster
    classes: np.ndarray


def after_round(
    booster: xgboost.Booster,
    metrics: dict[str, float],
    hp: Hyperparameters,
    job: Job,
    classes: np.ndarray,
) -> bool:
    """Metrics, early stopping, the stop the hosts agree on, a checkpoint; True: stop boosting.

    Early stopping keeps its state in the booster's attributes (``best_iteration``,
    ``best_score``), which are saved with it: a resumed job carries on counting.
    """
    for name, value in metrics.items():
        job.log_metric(name, value)
    done = booster.num_boosted_rounds()
    watched = metrics.get(WATCHED)
    if watched is not None:
        best = booster.attr("best_score")
        if best is None or watched < float(best):
            booster.set_attr(best_score=repr(watched), best_iteration=str(done - 1))
    job.checkpoint(
        done,
        lambda directory: save(Classifier(booster, classes), directory),
        every=hp.checkpoint_every,
        stopping=distributed.agree_to_stop(job),
    )
    return early_stopped(booster, hp)


def scores(evaluation: str) -> dict[str, float]:
    """``{"train:mlogloss": 0.52}`` from ``Booster.eval_set``'s ``"[3]\ttrain-mlogloss:0.52"``."""
    pairs = (item.rsplit(":", 1) for item in evaluation.split("\t")[1:])
    return {name.replace("-", ":", 1): float(value) for name, value in pairs}


def early_stopped(booster: xgboost.Booster, hp: Hyperparameters) -> bool:
    """``early_stopping_rounds`` rounds have gone by since the best one."""
    best = booster.attr("best_iteration")
    if hp.early_stopping_rounds is None or best is None:
        return False
    return booster.num_boosted_rounds() - 1 - int(best) >= hp.early_stopping_rounds


def cuda_available() -> bool:
    """This XGBoost build can use CUDA and an NVIDIA GPU is mapped into the container."""
    return bool(xgboost.build_info().get("USE_CUDA")) and gpu_count() > 0


def rejected(exc: xgboost.core.XGBoostError, hp: Hyperparameters) -> ValueError | None:
    """The library's complaint about one parameter, naming it as ``Hyperparameters`` does."""
    message = str(exc).strip().splitlines()[0]
    found = re.search(r"Parameter (\w+)", message)
    if found is not None:
        name = REPORTED_AS.get(found[1], found[1])
    else:  # "Invalid Input: 'sideways', valid values are: ...": the value, not the name.
        strings = [f.name for f in fields(hp) if isinstance(getattr(hp, f.name), str)]
        named = [name for name in strings if f"'{getattr(hp, name)}'" in message]
        if not named:
            return None
        name = named[0]
    return ValueError(f"hyperparameter {name!r} rejected by XGBoost: {message}")


def boost(data: TrainingData, hp: Hyperparameters, job: Job) -> Classifier:
    """The boosting itself, inside the collective when the job is distributed."""
    labels = [data.train.labels]
    if data.validation is not None:
        labels.append(data.validation.labels)
    # Every host's: sharded channels differ.
    classes = distributed.shared_classes(np.unique(np.concatenate(labels)))
    if len(classes) < 2:
        raise ValueError(f"the training data has a single class, {classes[0]!r}: need two")
    resumed = distributed.first_hosts(lambda: job.resume(load))  # The same on every host.
    done, booster = (resumed[0], resumed[1].booster) if resumed else (0, None)
    if booster is not None and early_stopped(booster, hp):
        done = hp.num_round  # Early stopping had ended the job: nothing left to boost.
    mine = job.shard(data)
    matrices = {"train": mine.train}
    if data.validation is not None:
        matrices["validation"] = data.validation  # Every host has it all: the same loss.
    evals = [
        (xgboost.DMatrix(rows.features, label=np.searchsorted(classes, rows.labels)), name)
        for name, rows in matrices.items()
    ]
    params = {
        "objective": "multi:softprob",
        "num_class": len(classes),
        "eval_metric": "mlogloss",
        "eta": hp.eta,
        "max_depth": hp.max_depth,
        "min_child_weight": hp.min_child_weight,
        "subsample": hp.subsample,
        "colsample_bytree": hp.colsample_bytree,
        "gamma": hp.gamma,
        "reg_lambda": hp.reg_lambda,
        "grow_policy": hp.grow_policy,
        "seed": hp.seed,
        # Sampling seeded by the round number: a resumed job draws what the whole one did.
        "seed_per_iteration": True,
        "tree_method": "hist",
        "device": "cuda" if cuda_available() else "cpu",
        "nthread": hp.nthread or cpu_count(),
    }
    log.info("XGBoost trains with device=%s", params["device"])
    try:
        booster = xgboost.Booster(params, [matrix for matrix, _ in evals], model_file=booster)
        for round_number in range(done, hp.num_round):
            # A fresh column sampler, seeded like the row sampling from the round number: what
            # XGBoost 3.3 and later do themselves (the generators are saved with the booster).
            booster.load_config(booster.save_config())
            booster.update(evals[0][0], iteration=round_number)
            evaluation = booster.eval_set(evals, round_number)  # In this order, every round.
            if after_round(booster, scores(evaluation), hp, job, classes):
                break
    except xgboost.core.XGBoostError as exc:
        error = rejected(exc, hp)
        if error is None:
            raise
        raise error from exc
    booster.reset()  # Lets go of the training data.
    return Classifier(booster, classes)


def train(data: TrainingData, hp: Hyperparameters, job: Job) -> Classifier:
    if hp.early_stopping_rounds is not None and data.validation is None:
        raise ValueError(
            "hyperparameter 'early_stopping_rounds' needs a validation set:"
            " add a validation channel or set validation_fraction above 0"
        )
    with distributed.communicator(job):
        model = boost(data, hp, job)
    best = model.booster.attr("best_iteration")
    if hp.early_stopping_rounds is not None and best is not None:
        kept = model.booster[: int(best) + 1]  # Keep the rounds up to the best.
        kept.set_attr(best_iteration=best, best_score=model.booster.attr("best_score"))
        model = Classifier(kept, model.classes)
    for name, rows in (("train", data.train), ("validation", data.validation)):
        if rows is not None:
            accuracy = np.mean(predict(model, rows.features) == rows.labels)
            job.log_metric(f"{name}:accuracy", float(accuracy))
    return model


def save(model: Classifier, model_dir: Path) -> None:
    model.booster.save_model(model_dir / MODEL_FILE)
    (model_dir / CLASSES_FILE).write_text(json.dumps(model.classes.tolist()) + "\n")


def load(model_dir: Path) -> Classifier:
    booster = xgboost.Booster()
    booster.load_model(model_dir / MODEL_FILE)
    # The server runs several workers side by side: each uses its share of the CPUs.
    booster.set_param({"nthread": threads_per_worker(), "device": "cpu"})
    classes = np.asarray(json.loads((model_dir / CLASSES_FILE).read_text()))
    return Classifier(booster, classes)


def predict(model: Classifier, features: np.ndarray) -> np.ndarray:
    probabilities = model.booster.inplace_predict(features)  # rows x classes
    return model.classes[np.argmax(probabilities, axis=1)]
