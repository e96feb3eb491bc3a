"""Your model: the one file to edit to bring your own (LightGBM).

The training runner (``training.py``) and the model server (``inference.py``) call only what
is defined here, so changing the objective, the features or the library means editing this
file and nothing else:

- ``Hyperparameters``: the hyperparameters a training job accepts, named as LightGBM names
  them, each with its type, default, bounds and help (``hyperparameter(...)``). That one
  declaration checks the job's ``hyperparameters.json`` (an unknown name, a wrong type or a
  value out of bounds fails the job with a message naming it; so does a value LightGBM
  itself rejects, ``boosting="sideways"``) and is the README's table (``make docs``).
  ``validation_fraction`` and ``seed`` are read by the runner too: it holds that share of the
  training rows out for validation when the job has no ``validation`` channel.
- ``METRICS``: the metrics training reports, with their help. Every iteration prints
  ``train:multi_logloss`` and ``validation:multi_logloss`` through ``job.log_metric``, the
  end ``train:accuracy`` / ``validation:accuracy``: one ``name=value`` line each, which
  ``python -m <package> metric-definitions`` turns into SageMaker ``MetricDefinitions``.
  LightGBM's own messages go to the log (stderr), so stdout holds the metrics alone.
- ``train(data, hp, job)``: boost with ``lightgbm.train`` and return the model. The classes
  are the labels of ``data.train`` and ``data.validation`` together. A callback after each
  iteration (``Iterations``) logs the metrics, applies early stopping and calls
  ``job.checkpoint``: every ``checkpoint_every`` iterations, and at once on a stop
  (SIGTERM), the booster and the early-stopping state go to a checkpoint. A restarted job
  (``job.resume``) boosts the remaining iterations on top of it (``init_model=``) and ends
  with the very model of a job never stopped: LightGBM rebuilds the scores of the rows from
  the restored trees exactly, and ``feature_fraction``'s sampling is reseeded from the
  iteration number. Bagging (``bagging_fraction`` < 1 with ``bagging_freq`` > 0, and
  ``boosting="rf"``) is the exception: LightGBM's bagging generator cannot be reseeded from
  Python, so a resumed job draws other bags and ends with a different (as good) model.
- Distributed training (``distributed.py``): with several hosts (``job.cluster``) each
  boosts on its share of the rows (``job.shard``) with LightGBM's data-parallel tree
  learner, which sums the histograms over LightGBM's own network. The hosts agree on the
  classes, on the checkpoint they resume from (the first host's) and, every iteration, on
  whether to stop (one host's SIGTERM stops them all after the same iteration).
- ``save(model, model_dir)`` / ``load(model_dir)``: the booster in LightGBM's text model
  format (``model.txt``, readable by later LightGBM releases and by LightGBM in any
  language) and the class names (``classes.json``). ``load`` runs once per server worker;
  each worker predicts with its share of the CPUs (``threads_per_worker()``).
- ``predict(model, features)``: one ``Booster.predict`` call for a whole batch of rows. A
  missing value (NaN) is what LightGBM calls missing and is scored as such.

GPU: the ``lightgbm`` wheel from PyPI trains on the CPU, or on a GPU through OpenCL
(``device_type="gpu"``) when the image has an OpenCL runtime; CUDA (``device_type="cuda"``)
needs LightGBM built from source with CUDA. ``train`` tries ``cuda`` then ``gpu`` when the
container sees an NVIDIA GPU, and uses the CPU when neither works, so the same file serves
both kinds of image. The server predicts on the CPU either way.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np

from . import distributed
from .channels import TrainingData
from .environment import cpu_count, gpu_count, threads_per_worker
from .hyperparameters import hyperparameter
from .job import Job

log = logging.getLogger(__name__)

MODEL_FILE = "model.txt"
CLASSES_FILE = "classes.json"
PROGRESS_FILE = "early_stopping.json"  # In checkpoints: the best iteration so far.
WATCHED = ("validation", "multi_logloss")  # What early stopping watches.

METRICS = {
    "train:multi_logloss": "Multiclass log loss on the training rows, every iteration.",
    "validation:multi_logloss": "Multiclass log loss on the validation rows, every iteration.",
    "train:accuracy": "Accuracy on the training rows, after training.",
    "validation:accuracy": "Accuracy on the validation rows, after training.",
}


@dataclass(frozen=True)
class Hyperparameters:
    """Named as LightGBM names them; see its "Parameters" page."""

    num_iterations: int = hyperparameter(
        100, "Boosting iterations (one tree per class each).", ge=1
    )
    learning_rate: float = hyperparameter(0.1, "Shrinks each new tree.", gt=0)
    num_leaves: int = hyperparameter(31, "Most leaves a tree has.", ge=2, le=131072)
    max_depth: int = hyperparameter(-1, "Deepest a tree grows; -1 or 0: no limit.", ge=-1)
    min_data_in_leaf: int = hyperparameter(20, "Fewest training rows in a leaf.", ge=0)
    feature_fraction: float = hyperparameter(
        1.0, "Share of the features each tree sees.", gt=0, le=1
    )
    bagging_fraction: float = hyperparameter(
        1.0, "Share of the rows in each bag (with bagging_freq > 0).", gt=0, le=1
    )
    bagging_freq: int = hyperparameter(0, "Iterations between two bags; 0: no bagging.", ge=0)
    lambda_l2: float = hyperparameter(0.0, "L2 regularisation of the leaf values.", ge=0)
    boosting: str = hyperparameter(
        "gbdt", "gbdt: gradient boosting; rf: a random forest (needs bagging)."
    )
    early_stopping_round: int | None = hyperparameter(
        None,
        "Stop after this many iterations without a better validation loss; null: never.",
        ge=1,
    )
    verbosity: int = hyperparameter(-1, "LightGBM's messages: -1 fatal only ... 2 debug.", ge=-1)
    num_threads: int = hyperparameter(
        0, "CPU threads; 0: every CPU of the container (small data trains faster on few).", ge=0
    )
    validation_fraction: float = hyperparameter(
        0.2,
        "Training rows held out for validation when there is no validation channel.",
        ge=0,
        lt=1,
    )
    seed: int = hyperparameter(0, "Seeds the sampling and the validation split.", ge=0)
    checkpoint_every: int = hyperparameter(
        10, "Iterations between two checkpoints (a stop checkpoints at once).", ge=1
    )


@dataclass(frozen=True)
class Classifier:
    """A booster, the class names its outputs stand for, and the threads it predicts with."""

    booster: lightgbm.Booster
    classes: np.ndarray
    num_threads: int
    best_iteration: int = 0  # The best iteration so far (1-based); 0: none yet.
    best_score: float | None = None


class Iterations:
    """After every iteration: metrics, early stopping, the stop the hosts agree on, a checkpoint.

    Early stopping's state (best iteration and score) goes into the checkpoints with the
    booster: a resumed job carries on counting.
    """

    def __init__(
        self, hp: Hyperparameters, job: Job, model: Classifier, hosts: distributed.Hosts
    ) -> None:
        self.hp = hp
        self.job = job
        self.model = model
        self.hosts = hosts

    def __call__(self, env: lightgbm.callback.CallbackEnv) -> None:
        results = env.evaluation_result_list or []
        for data_name, metric_name, value, *_ in results:
            self.job.log_metric(f"{data_name}:{metric_name}", value)
        done = env.iteration + 1
        model = replace(self.model, booster=env.model)
        for data_name, metric_name, value, *_ in results:
            if (data_name, metric_name) == WATCHED and (
                model.best_score is None or value < model.best_score
            ):
                model = replace(model, best_iteration=done, best_score=float(value))
        self.model = model
        self.job.checkpoint(
            done,
            lambda directory: save_state(model, directory),
            every=self.hp.checkpoint_every,
            stopping=self.hosts.agree_to_stop(self.job),
        )
        if early_stopped(model, done, self.hp):
            raise lightgbm.callback.EarlyStopException(model.best_iteration - 1, results)


def early_stopped(model: Classifier, done: int, hp: Hyperparameters) -> bool:
    """``early_stopping_round`` iterations have gone by since the best one."""
    if hp.early_stopping_round is None or not model.best_iteration:
        return False
    return done - model.best_iteration >= hp.early_stopping_round


def reseed_feature_fraction(seed: int) -> Any:
    """A callback seeding ``feature_fraction``'s sampling from the iteration number."""

    def reseed(env: lightgbm.callback.CallbackEnv) -> None:
        env.model.reset_parameter({"feature_fraction_seed": seed + env.iteration})

    reseed.before_iteration = True  # type: ignore[attr-defined]
    return reseed


def save_state(model: Classifier, directory: Path) -> None:
    """A checkpoint: every iteration of the booster, the classes, early stopping's state."""
    model.booster.save_model(directory / MODEL_FILE, num_iteration=-1)
    (directory / CLASSES_FILE).write_text(json.dumps(model.classes.tolist()) + "\n")
    progress = {"best_iteration": model.best_iteration, "best_score": model.best_score}
    (directory / PROGRESS_FILE).write_text(json.dumps(progress) + "\n")


def read_state(directory: Path) -> dict[str, Any]:
    return {
        "model": (directory / MODEL_FILE).read_text(),
        "classes": json.loads((directory / CLASSES_FILE).read_text()),
        **json.loads((directory / PROGRESS_FILE).read_text()),
    }


def device_type() -> str:
    """``cuda`` or ``gpu`` when this LightGBM build can train on the GPU here, else ``cpu``."""
    if not gpu_count():
        return "cpu"
    for candidate in ("cuda", "gpu"):
        probe = lightgbm.Dataset(np.arange(40.0).reshape(20, 2), label=np.arange(20) % 2)
        try:
            lightgbm.train({"device_type": candidate, "verbosity": -1}, probe, num_boost_round=1)
        except lightgbm.basic.LightGBMError as exc:
            log.info("LightGBM cannot train with device_type=%s here: %s", candidate, exc)
            continue
        return candidate
    return "cpu"


def rejected(exc: lightgbm.basic.LightGBMError, hp: Hyperparameters) -> ValueError | None:
    """The library's complaint about one parameter, naming it as ``Hyperparameters`` does."""
    message = str(exc).strip().splitlines()[0]
    found = re.match(r"Check failed: \((\w+)\)", message)
    if found is not None:
        check = message.split(" at ")[0]  # Without the C++ source location.
        return ValueError(f"hyperparameter {found[1]!r} rejected by LightGBM: {check}")
    # "Unknown boosting type sideways": the value, not the name.
    strings = [f.name for f in fields(hp) if isinstance(getattr(hp, f.name), str)]
    named = [name for name in strings if re.search(rf"\b{getattr(hp, name)}\b", message)]
    if not named:
        return None
    return ValueError(f"hyperparameter {named[0]!r} rejected by LightGBM: {message}")


def train(data: TrainingData, hp: Hyperparameters, job: Job) -> Classifier:
    lightgbm.register_logger(log)  # LightGBM's messages to stderr: stdout is for metrics.
    if hp.early_stopping_round is not None and data.validation is None:
        raise ValueError(
            "hyperparameter 'early_stopping_round' needs a validation set:"
            " add a validation channel or set validation_fraction above 0"
        )
    with distributed.hosts(job) as hosts:
        model = boost(data, hp, job, hosts)
    for name, rows in (("train", data.train), ("validation", data.validation)):
        if rows is not None:
            accuracy = np.mean(predict(model, rows.features) == rows.labels)
            job.log_metric(f"{name}:accuracy", float(accuracy))
    return model


def boost(
    data: TrainingData, hp: Hyperparameters, job: Job, hosts: distributed.Hosts
) -> Classifier:
    """The boosting itself, with the other hosts when the job is distributed."""
    labels = [data.train.labels] + ([data.validation.labels] if data.validation else [])
    # Every host's: sharded channels differ.
    classes = hosts.shared_classes(np.unique(np.concatenate(labels)))
    if len(classes) < 2:
        raise ValueError(f"the training data has a single class, {classes[0]!r}: need two")
    num_threads = hp.num_threads or cpu_count()
    state = hosts.first_hosts(job.resume(read_state))  # The same checkpoint on every host.
    done, model = 0, Classifier(None, classes, num_threads)  # type: ignore[arg-type]
    if state is not None:
        done, saved = state
        booster = lightgbm.Booster(model_str=saved["model"])
        model = Classifier(
            booster,
            np.asarray(saved["classes"]),
            num_threads,
            saved["best_iteration"],
            saved["best_score"],
        )
        if early_stopped(model, done, hp) or done >= hp.num_iterations:
            booster.best_iteration = model.best_iteration if hp.early_stopping_round else 0
            return model  # Nothing left to boost.
    mine = job.shard(data)
    train_set = lightgbm.Dataset(
        mine.train.features, label=np.searchsorted(model.classes, mine.train.labels)
    )
    valid_sets = {"train": train_set}
    if data.validation is not None:  # Every host has it all: the same loss everywhere.
        valid_sets["validation"] = lightgbm.Dataset(
            data.validation.features,
            label=np.searchsorted(model.classes, data.validation.labels),
            reference=train_set,
        )
    params = {
        "objective": "multiclass",
        "num_class": len(model.classes),
        "metric": "multi_logloss",
        "learning_rate": hp.learning_rate,
        "num_leaves": hp.num_leaves,
        "max_depth": hp.max_depth,
        "min_data_in_leaf": hp.min_data_in_leaf,
        "feature_fraction": hp.feature_fraction,
        "bagging_fraction": hp.bagging_fraction,
        "bagging_freq": hp.bagging_freq,
        "lambda_l2": hp.lambda_l2,
        "boosting": hp.boosting,
        "verbosity": hp.verbosity,
        "seed": hp.seed,
        "device_type": device_type(),
        "num_threads": num_threads,
        **distributed.network(job),
    }
    log.info("LightGBM trains with device_type=%s", params["device_type"])
    callbacks = [Iterations(hp, job, model, hosts)]
    if hp.feature_fraction < 1:
        callbacks.append(reseed_feature_fraction(hp.seed))
    try:
        booster = lightgbm.train(
            params,
            train_set,
            num_boost_round=hp.num_iterations - done,
            valid_sets=list(valid_sets.values()),
            valid_names=list(valid_sets),
            init_model=model.booster,
            callbacks=callbacks,
        )
    except lightgbm.basic.LightGBMError as exc:
        error = rejected(exc, hp)
        if error is None:
            raise
        raise error from exc
    final = callbacks[0].model
    # With early stopping, the model is the iterations up to the best one (save, predict).
    booster.best_iteration = final.best_iteration if hp.early_stopping_round else 0
    return replace(final, booster=booster)


def save(model: Classifier, model_dir: Path) -> None:
    # With early stopping, LightGBM saves the iterations up to the best one.
    model.booster.save_model(model_dir / MODEL_FILE)
    (model_dir / CLASSES_FILE).write_text(json.dumps(model.classes.tolist()) + "\n")


def load(model_dir: Path) -> Classifier:
    booster = lightgbm.Booster(model_file=model_dir / MODEL_FILE)
    classes = np.asarray(json.loads((model_dir / CLASSES_FILE).read_text()))
    # The server runs several workers side by side: each uses its share of the CPUs.
    return Classifier(booster, classes, num_threads=threads_per_worker())


def predict(model: Classifier, features: np.ndarray) -> np.ndarray:
    probabilities = model.booster.predict(features, num_threads=model.num_threads)
    return model.classes[np.argmax(probabilities, axis=1)]
