"""What is particular to this project's model (PyTorch); the rest of the suite is generic.

The constants at the top are what the generic tests need to know about the model.
"""

from __future__ import annotations

import json
import zipfile
from typing import Any

import numpy as np
import pytest
import torch

from {{ cookiecutter.package_name }} import model, training
from {{ cookiecutter.package_name }}.environment import Paths, cpu_count

# Quick to train: the model the suite trains once and serves.
QUICK_HYPERPARAMETERS = {"epochs": "30"}
# Slow to train (minutes), for stopping a job part-way: back in Python after every batch.
LONG_HYPERPARAMETERS = {"epochs": "100000", "optimizer": '"sgd"'}
# A value of the right type that the library itself rejects, and what the failure says.
LIBRARY_REJECTED = ({"lr": "-0.1"}, "lr=-0.1")


class Metrics(list[tuple[str, float]]):
    """A ``log_metric`` that keeps what it is given."""

    def __call__(self, name: str, value: float) -> None:
        self.append((name, value))

    def names(self) -> list[str]:
        return [name for name, _ in self]


def state_of(classifier: model.Classifier) -> list[torch.Tensor]:
    return list(classifier.network.state_dict().values())


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
                "weight_decay": "0.001",
                "hidden_layers": "[8, 4]",
                "dropout": "0.3",
                "epochs": "3",
            }
        )
    )
    assert training.main() == 0
    assert made == [{"lr": 0.05, "momentum": 0.5, "weight_decay": 0.001}]
    printed = capsys.readouterr().out.splitlines()
    assert [line for line in printed if line.startswith("epoch=")] == [
        f"epoch={epoch:.6f}" for epoch in (1, 2, 3)
    ]
    network = model.load(job.model).network
    linear = [m for m in network.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(4, 8), (8, 4), (4, 3)]
    assert {m.p for m in network.modules() if isinstance(m, torch.nn.Dropout)} == {0.3}


@pytest.mark.parametrize(
    ("name", "value"), [("weight_decay", "-1"), ("dropout", "1.5"), ("batch_size", "0")]
)
def test_values_torch_rejects_fail_the_job_naming_them(job: Paths, name: str, value: str) -> None:
    job.hyperparameters.write_text(json.dumps({name: value}))
    assert training.main() == 1
    assert name in job.failure.read_text().splitlines()[0]


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
    trained: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    features, labels = training.read_csv_channel(trained, "training")
    before = torch.get_num_threads()
    try:
        for threads in (2, 1):
            monkeypatch.setattr(model, "TRAINING_THREADS", threads)
            model.train(features, labels, model.Hyperparameters(epochs=1), Metrics())
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


def test_every_epoch_logs_its_metrics(trained: Paths) -> None:
    features, labels = training.read_csv_channel(trained, "training")
    metrics = Metrics()
    model.train(features, labels, model.Hyperparameters(epochs=3), metrics)
    per_epoch = ["train:loss", "train:accuracy", "validation:loss", "validation:accuracy"]
    assert metrics.names() == ["epoch", *per_epoch] * 3
    assert [value for name, value in metrics if name == "epoch"] == [1, 2, 3]
    metrics.clear()
    model.train(features, labels, model.Hyperparameters(epochs=2, validation_fraction=0), metrics)
    assert metrics.names() == ["epoch", "train:loss", "train:accuracy"] * 2


def test_standardisation_is_fitted_on_the_training_split(trained: Paths) -> None:
    features, labels = training.read_csv_channel(trained, "training")
    hp = model.Hyperparameters(epochs=1, validation_fraction=0.0)
    everything = model.train(features, labels, hp, Metrics()).network.mean.cpu()
    assert torch.allclose(everything, torch.as_tensor(features.mean(axis=0), dtype=torch.float32))
    split = model.train(features, labels, model.Hyperparameters(epochs=1), Metrics())
    assert not torch.allclose(split.network.mean.cpu(), everything)


def test_the_split_is_stratified_and_seeded() -> None:
    codes = np.repeat([0, 1, 2], 50)
    train_rows, validation_rows = model.stratified_split(codes, 0.2, seed=0)
    assert np.bincount(codes[validation_rows]).tolist() == [10, 10, 10]
    assert sorted([*train_rows, *validation_rows]) == list(range(150))
    again = model.stratified_split(codes, 0.2, seed=0)[1]
    other = model.stratified_split(codes, 0.2, seed=1)[1]
    assert again.tolist() == validation_rows.tolist() != other.tolist()


def test_training_is_deterministic_with_the_seed(trained: Paths) -> None:
    features, labels = training.read_csv_channel(trained, "training")
    first, second, other = (
        model.train(features, labels, model.Hyperparameters(epochs=3, seed=seed), Metrics())
        for seed in (0, 0, 1)
    )
    assert all(map(torch.equal, state_of(first), state_of(second)))
    assert not all(map(torch.equal, state_of(first), state_of(other)))


def test_validation_fraction_is_checked(job: Paths) -> None:
    job.hyperparameters.write_text(json.dumps({"validation_fraction": "1.5"}))
    assert training.main() == 1
    assert "'validation_fraction' must be in [0, 1)" in job.failure.read_text().splitlines()[0]
