"""What is particular to this project's model (PyTorch); the rest of the suite is generic.

The constants at the top are what the generic tests need to know about the model.
"""

from __future__ import annotations

import json
import multiprocessing
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from {{ cookiecutter.package_name }} import model, training
from {{ cookiecutter.package_name }}.channels import Dataset, TrainingData, stratified_split
from {{ cookiecutter.package_name }}.checkpoints import Checkpoints
from {{ cookiecutter.package_name }}.cluster import Cluster
from {{ cookiecutter.package_name }}.environment import Paths, cpu_count
from {{ cookiecutter.package_name }}.job import Job, TrainingStopped

from . import support
from .support import SAMPLE_DATA, SAMPLE_FEATURES, SAMPLE_LABELS, run_hosts

# Quick to train: the model the suite trains once and serves.
QUICK_HYPERPARAMETERS = {"epochs": "30"}
# Slow to train (minutes), for stopping a job part-way: it checks for a stop every epoch.
LONG_HYPERPARAMETERS = {"epochs": "100000", "optimizer": '"sgd"', "checkpoint_every": "1000"}
# A value of the right type that the library itself rejects, and what the failure says.
LIBRARY_REJECTED = (
    {"optimizer": "sgd", "nesterov": "true", "momentum": "0"},
    "Nesterov momentum requires a momentum",
)
# Several checkpoints' worth: the resume test stops it after its second checkpoint.
RESUME_HYPERPARAMETERS = {"epochs": "12", "checkpoint_every": "2"}
# Every epoch draws its shuffle and dropout from the seed and the epoch, and the checkpoint
# holds the weights and Adam's state: on the CPU a resumed job is bit for bit the same.
RESUME_TOLERANCE = 0.0
# Distributed runs, kept short: every process (host) starts its own PyTorch.
HOSTS_TIMEOUT = 120


def fingerprint(classifier: model.Classifier) -> np.ndarray:
    """What must match between two models: class probabilities over the sample data."""
    inputs = torch.as_tensor(SAMPLE_FEATURES, dtype=torch.float32)
    with torch.inference_mode():
        return classifier.network(inputs).softmax(dim=1).cpu().numpy()


def sample_data(validation_fraction: float = 0.2) -> TrainingData:
    rows = Dataset(SAMPLE_FEATURES, SAMPLE_LABELS)
    if not validation_fraction:
        return TrainingData(rows)
    return TrainingData(*stratified_split(rows, validation_fraction, seed=0))


class Metrics(list[tuple[str, float]]):
    """A ``log_metric`` that keeps what it is given."""

    def __call__(self, name: str, value: float) -> None:
        self.append((name, value))

    def names(self) -> list[str]:
        return [name for name, _ in self]

    def epochs(self) -> list[float]:
        return [value for name, value in self if name == "epoch"]


def new_job(base: Path, metrics: Metrics | None = None) -> Job:
    """A single-host job whose checkpoints (all of them kept) go under ``base``."""
    checkpoints = Checkpoints(base / "checkpoints", keep=1000)
    return Job(Paths(base), Cluster(), checkpoints, metrics if metrics is not None else Metrics())


def stop_during_epoch(job: Job, epoch: int) -> None:
    """SIGTERM's effect (``job.stop``) while ``epoch`` runs (as the one before it logs)."""
    metrics = job.log_metric

    def log_metric(name: str, value: float) -> None:
        metrics(name, value)
        if (name, value) == ("epoch", epoch - 1):
            job.stop.set()

    job.log_metric = log_metric


def state_of(classifier: model.Classifier) -> list[torch.Tensor]:
    return list(classifier.network.state_dict().values())


def accuracy(model_dir: Path) -> float:
    predictions = model.predict(model.load(model_dir), SAMPLE_FEATURES)
    return float(np.mean(predictions == SAMPLE_LABELS))


def test_hyperparameters_reach_torch(
    job: Paths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[dict[str, Any]] = []
    sgd = torch.optim.SGD

    def recording_sgd(params: Any, **settings: Any) -> torch.optim.SGD:
        made.append(settings)
        return sgd(params, **settings)

    monkeypatch.setattr(torch.optim, "SGD", recording_sgd)
    job.hyperparameters.write_text(
        json.dumps(
            {
                "optimizer": '"sgd"',
                "lr": "0.05",
                "momentum": "0.5",
                "nesterov": "True",
                "weight_decay": "0.001",
                "hidden_layers": "[8, 4]",
                "dropout": "0.3",
                "epochs": "3",
            }
        )
    )
    assert training.main() == 0
    assert made == [{"lr": 0.05, "momentum": 0.5, "nesterov": True, "weight_decay": 0.001}]
    printed = capsys.readouterr().out.splitlines()
    assert [line for line in printed if line.startswith("epoch=")] == [
        f"epoch={epoch:.1f}" for epoch in (1, 2, 3)
    ]
    network = model.load(job.model).network
    linear = [m for m in network.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(4, 8), (8, 4), (4, 3)]
    assert {m.p for m in network.modules() if isinstance(m, torch.nn.Dropout)} == {0.3}


def test_the_model_is_a_state_dict_and_a_json_of_what_rebuilds_it(trained: Paths) -> None:
    assert zipfile.is_zipfile(trained.model / "model.pt")  # torch.save's format
    state = torch.load(trained.model / "model.pt", weights_only=True)
    config = json.loads((trained.model / "model.json").read_text())
    assert config["classes"] == ["setosa", "versicolor", "virginica"]
    network = model.MLP(**config["architecture"])
    network.load_state_dict(state)  # strict: every tensor has its place, none is missing
    assert {"mean", "scale"} <= set(state)


def test_load_gives_an_eval_network_on_the_available_device(trained: Paths) -> None:
    network = model.load(trained.model).network
    assert not network.training
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert {p.device.type for p in network.parameters()} == {expected}


def test_load_gives_torch_the_workers_share_of_the_cpus(
    trained: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", str(cpu_count() * 4))
        assert model.load(trained.model).threads == torch.get_num_threads() == 1
        monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "1")
        assert model.load(trained.model).threads == torch.get_num_threads() == cpu_count()
    finally:
        torch.set_num_threads(before)


def test_training_runs_on_its_own_thread_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = torch.get_num_threads()
    try:
        for threads in (2, 1):
            monkeypatch.setattr(model, "TRAINING_THREADS", threads)
            hp = model.Hyperparameters(epochs=1)
            model.train(sample_data(), hp, new_job(tmp_path / str(threads)))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_predict_is_one_forward_pass_in_inference_mode(trained: Paths) -> None:
    classifier = model.load(trained.model)
    passes: list[tuple[int, bool, bool]] = []
    classifier.network.register_forward_hook(
        lambda module, args, _: passes.append(
            (len(args[0]), torch.is_inference_mode_enabled(), module.training)
        )
    )
    rows = np.tile([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]], (500, 1))
    predictions = model.predict(classifier, rows)
    assert passes == [(1000, True, False)]
    assert predictions.shape == (1000,)
    assert list(predictions[:2]) == ["setosa", "virginica"]


def test_large_batches_go_through_in_fixed_chunks(
    trained: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    classifier = model.load(trained.model)
    rows = np.tile([[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]], (500, 1))
    whole = model.predict(classifier, rows)
    passes: list[int] = []
    classifier.network.register_forward_hook(lambda _, args, __: passes.append(len(args[0])))
    monkeypatch.setattr(model, "PREDICT_CHUNK_ROWS", 400)
    assert model.predict(classifier, rows).tolist() == whole.tolist()
    assert passes == [400, 400, 200]


def test_nan_features_are_refused_naming_the_row(trained: Paths) -> None:
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.3, np.nan, 6.0, 2.5]])
    with pytest.raises(ValueError, match="row 2 has NaN"):
        model.predict(model.load(trained.model), rows)


def test_every_epoch_logs_its_metrics(tmp_path: Path) -> None:
    metrics = Metrics()
    model.train(sample_data(), model.Hyperparameters(epochs=3), new_job(tmp_path, metrics))
    per_epoch = ["train:loss", "train:accuracy", "validation:loss", "validation:accuracy"]
    assert metrics.names() == ["epoch", *per_epoch] * 3
    assert metrics.epochs() == [1, 2, 3]
    assert set(metrics.names()) == set(model.METRICS)
    metrics.clear()
    hp = model.Hyperparameters(epochs=2)
    model.train(sample_data(validation_fraction=0), hp, new_job(tmp_path / "no-val", metrics))
    assert metrics.names() == ["epoch", "train:loss", "train:accuracy"] * 2


def test_standardisation_is_fitted_on_the_training_rows(tmp_path: Path) -> None:
    data = sample_data()
    network = model.train(data, model.Hyperparameters(epochs=1), new_job(tmp_path)).network
    expected = torch.as_tensor(data.train.features.mean(axis=0), dtype=torch.float32)
    assert torch.allclose(network.mean.cpu(), expected)
    expected = torch.as_tensor(data.train.features.std(axis=0, ddof=1), dtype=torch.float32)
    assert torch.allclose(network.scale.cpu(), expected)


def test_classes_come_from_training_and_validation_labels(tmp_path: Path) -> None:
    data = sample_data()
    only_two = data.train.rows(data.train.labels != "virginica")
    classifier = model.train(
        TrainingData(only_two, data.validation), model.Hyperparameters(epochs=1), new_job(tmp_path)
    )
    assert classifier.classes.tolist() == ["setosa", "versicolor", "virginica"]


def test_training_is_deterministic_with_the_seed(tmp_path: Path) -> None:
    first, second, other = (
        model.train(
            sample_data(), model.Hyperparameters(epochs=3, seed=seed), new_job(tmp_path / name)
        )
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    )
    assert all(map(torch.equal, state_of(first), state_of(second)))
    assert not all(map(torch.equal, state_of(first), state_of(other)))


def test_a_checkpoint_every_n_epochs_holds_the_training_state(tmp_path: Path) -> None:
    job = new_job(tmp_path)
    hp = model.Hyperparameters(epochs=7, checkpoint_every=3)
    model.train(sample_data(), hp, job)
    assert job.checkpoints.steps() == [6, 3]
    saved = job.checkpoints.path(6) / model.STATE_FILE
    assert zipfile.is_zipfile(saved)  # torch.save's format
    state = torch.load(saved, weights_only=True)
    assert state["epoch"] == 6
    assert state["classes"] == ["setosa", "versicolor", "virginica"]
    network = model.MLP(**state["architecture"])
    network.load_state_dict(state["network"])
    batches = -(-len(sample_data().train) // hp.batch_size)
    assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {6.0 * batches}


def test_a_stop_ends_the_epoch_with_a_checkpoint_and_a_restart_resumes_after_it(
    tmp_path: Path,
) -> None:
    hp = model.Hyperparameters(epochs=5, checkpoint_every=10)
    whole = model.train(sample_data(), hp, new_job(tmp_path / "whole"))

    stopped = new_job(tmp_path / "stopped")
    stop_during_epoch(stopped, 3)
    with pytest.raises(TrainingStopped, match="after step 3"):
        model.train(sample_data(), hp, stopped)
    assert stopped.checkpoints.steps() == [3]  # Not a multiple of 10: written for the stop.

    metrics = Metrics()
    restarted = new_job(tmp_path / "stopped", metrics)
    resumed = model.train(sample_data(), hp, restarted)
    assert metrics.epochs() == [4, 5]
    assert all(map(torch.equal, state_of(resumed), state_of(whole)))


def test_a_checkpoint_of_another_network_is_refused(tmp_path: Path) -> None:
    model.train(
        sample_data(), model.Hyperparameters(epochs=2, checkpoint_every=1), new_job(tmp_path)
    )
    other = model.Hyperparameters(epochs=4, hidden_layers=[8])
    with pytest.raises(ValueError, match="the checkpoint for epoch 2 is of another network"):
        model.train(sample_data(), other, new_job(tmp_path))


def test_two_hosts_train_one_model_with_ddp(tmp_path: Path) -> None:
    hosts = run_hosts(tmp_path, {"epochs": "30", "checkpoint_every": "10"}, timeout=HOSTS_TIMEOUT)
    for rank, (_, process) in enumerate(hosts):
        assert process.returncode == 0, process.stderr
        assert f"rank {rank} of world size 2 (host {rank + 1} of 2" in process.stderr
    (first, first_run), (second, second_run) = hosts
    assert sorted(p.name for p in first.model.iterdir()) == [
        "metadata.json",
        "model.json",
        "model.pt",
    ]
    assert not second.model.exists() or not any(second.model.iterdir())
    assert accuracy(first.model) > 0.85
    # One host writes the checkpoints and prints the (cluster-wide) metrics.
    assert Checkpoints(first.checkpoints).steps() == [30, 20]
    assert not Checkpoints(second.checkpoints).steps()
    assert first_run.stdout.count("epoch=") == 30
    assert "epoch=" not in second_run.stdout


def test_two_hosts_with_sharded_rows_of_uneven_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ShardedByS3Key: algo-1 gets 100 rows (two classes), algo-2 50 (the third)."""
    rows = SAMPLE_DATA.read_text().splitlines(keepends=True)
    layout = support.layout

    def sharded_layout(base: Path, hyperparameters: dict[str, str] | None = None) -> Paths:
        paths = layout(base, hyperparameters)
        mine = rows[:100] if base.name == "algo-1" else rows[100:]
        (paths.channel("training") / SAMPLE_DATA.name).write_text("".join(mine))
        config = {"training": {"ContentType": "text/csv", "S3DistributionType": "ShardedByS3Key"}}
        paths.input_data_config.write_text(json.dumps(config))
        return paths

    monkeypatch.setattr(support, "layout", sharded_layout)
    hps = {"epochs": "40", "validation_fraction": "0"}
    hosts = run_hosts(tmp_path, hps, timeout=HOSTS_TIMEOUT)
    for _, process in hosts:
        assert process.returncode == 0, process.stderr
    first = hosts[0][0]
    classifier = model.load(first.model)
    assert classifier.classes.tolist() == ["setosa", "versicolor", "virginica"]
    # The scaling is every host's rows', all-reduced: the same as one host with all of them.
    expected = torch.as_tensor(SAMPLE_FEATURES.mean(axis=0), dtype=torch.float32)
    assert torch.allclose(classifier.network.mean.cpu(), expected)
    assert accuracy(first.model) > 0.85


def test_several_processes_on_one_host(tmp_path: Path) -> None:
    """As on a host with 2 GPUs (here on the CPU, with gloo): 2 processes, one model."""
    hps = {"epochs": "30", "processes_per_host": "2"}
    [(paths, process)] = run_hosts(tmp_path, hps, hosts=1, timeout=HOSTS_TIMEOUT)
    assert process.returncode == 0, process.stderr
    for rank in (0, 1):
        assert f"rank {rank} of world size 2 (host 1 of 1, process {rank + 1} of 2" in (
            process.stderr
        )
    assert process.stdout.count("epoch=") == 30
    assert accuracy(paths.model) > 0.85


def test_several_processes_on_one_host_stop_together(tmp_path: Path) -> None:
    job = new_job(tmp_path)
    stop_during_epoch(job, 3)
    hp = model.Hyperparameters(epochs=50, processes_per_host=2)
    with pytest.raises(TrainingStopped, match="after step 3"):
        model.train(sample_data(), hp, job)
    assert job.checkpoints.steps() == [3]
    assert not multiprocessing.active_children()  # The spawned process ended too.
