"""Training recipe and retrieval scoring against independent yardsticks."""

import csv

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from visdecode import evaluate, train
from visdecode.errors import InputError


def test_infonce_equals_a_plain_computation():
    torch.manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    w = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    scale = torch.tensor(np.log(1 / 0.04))
    logits = (v @ w.T / 0.04).double().numpy()

    def ce(lg):  # mean over rows of -log softmax at the diagonal
        lg = lg - lg.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(lg).sum(1)) - np.diag(lg)))

    expected = (ce(logits) + ce(logits.T)) / 2
    assert train.symmetric_infonce(v, w, scale).item() == pytest.approx(expected, rel=1e-5)


def test_topk_equals_brute_force():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(30, 30)) + 1.5 * np.eye(30)
    order = np.argsort(-sim, axis=1)
    for k in (1, 5):
        expected = np.mean([i in order[i, :k] for i in range(30)])
        assert evaluate.topk_accuracy(sim, ks=(k,))[f"top{k}"] == pytest.approx(expected)
    perfect = evaluate.topk_accuracy(np.eye(10) + 0.01)
    assert perfect == {"top1": 1.0, "top5": 1.0}


def test_topk_with_fewer_ways_is_easier_and_seeded():
    sim = np.random.default_rng(1).normal(size=(50, 50)) + 0.5 * np.eye(50)
    full = evaluate.topk_accuracy(sim)["top1"]
    a = evaluate.topk_accuracy(sim, n_way=5, seed=3)["top1"]
    assert a == evaluate.topk_accuracy(sim, n_way=5, seed=3)["top1"]
    assert a > full


def test_split_is_seeded_and_disjoint():
    tr, va = train.split_indices(100, 0.1, 7)
    assert len(va) == 10 and len(set(tr) | set(va)) == 100 and not set(tr) & set(va)
    assert np.array_equal(va, train.split_indices(100, 0.1, 7)[1])
    assert not np.array_equal(va, train.split_indices(100, 0.1, 42)[1])


@pytest.fixture
def learnable(tmp_path):
    """Brain data that linearly encode the image embeddings, plus noise."""
    rng = np.random.default_rng(0)
    n_train, n_test, dim = 240, 20, 16
    emb = rng.normal(size=(n_train + n_test, dim)).astype(np.float32)
    mix = rng.normal(size=(dim, 8, 100))
    brain = np.einsum("nd,dct->nct", emb, mix)[:, None] + rng.normal(size=(len(emb), 4, 8, 100))
    with h5py.File(tmp_path / "brain.h5", "w") as f:
        f["train"] = brain[:n_train].astype(np.float32)
        f["test"] = brain[n_train:].astype(np.float32)
    with h5py.File(tmp_path / "emb.h5", "w") as f:
        f["train"], f["test"] = emb[:n_train], emb[n_train:]
        f.attrs["encoder"] = "toy"
    return tmp_path


def test_training_learns_and_is_deterministic(learnable):
    recipe = train.Recipe(epochs=6, batch_size=32, lr=1e-3, patience=3)
    runs = []
    for name in ("a", "b"):
        train.run(learnable / "brain.h5", learnable / "emb.h5", "nice", 7, learnable / name, recipe)
        with open(learnable / name / "metrics.csv") as fh:
            runs.append(list(csv.DictReader(fh)))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(runs[0]) == strip(runs[1])  # same seed, same machine: identical metrics
    assert list(runs[0][0]) == list(train.METRIC_FIELDS)
    losses = [float(r["train_loss"]) for r in runs[0]]
    assert losses[-1] < losses[0]
    result = evaluate.run(
        learnable / "a" / "model.pt", learnable / "brain.h5", learnable / "emb.h5",
        learnable / "a" / "retrieval.json", {"seed": 7},
    )  # fmt: skip
    assert result["n_way"] == 20
    assert result["top5"] > 5 / 20  # above chance


def test_learnable_temperature_is_optimised(learnable):
    recipe = train.Recipe(epochs=3, batch_size=32, lr=5e-2, patience=3)
    train.run(learnable / "brain.h5", learnable / "emb.h5", "nice", 1, learnable / "t", recipe)
    with open(learnable / "t" / "metrics.csv") as fh:
        temps = [float(r["temperature"]) for r in csv.DictReader(fh)]
    assert temps[-1] != pytest.approx(0.04, rel=1e-3)
    fixed = train.Recipe(epochs=2, batch_size=32, learn_temperature=False)
    train.run(learnable / "brain.h5", learnable / "emb.h5", "nice", 1, learnable / "f", fixed)
    with open(learnable / "f" / "metrics.csv") as fh:
        assert all(float(r["temperature"]) == pytest.approx(0.04) for r in csv.DictReader(fh))


@pytest.mark.parametrize("name", ["atms", "eegnet", "eegconformer"])
def test_every_brain_encoder_trains_deterministically(learnable, name):
    recipe = train.Recipe(epochs=3, batch_size=32, lr=1e-3, patience=3)
    metrics = []
    for run in ("a", "b"):
        train.run(learnable / "brain.h5", learnable / "emb.h5", name, 3, learnable / run, recipe)
        metrics.append(pd.read_csv(learnable / run / "metrics.csv").drop(columns="seconds"))
    pd.testing.assert_frame_equal(metrics[0], metrics[1])  # bit-identical on CPU
    assert np.isfinite(metrics[0].to_numpy()).all() and len(metrics[0]) == 3


def test_best_weights_are_the_ones_saved(learnable):
    """The checkpoint's validation loss, recomputed, is the lowest in metrics.csv."""
    recipe = train.Recipe(epochs=8, batch_size=32, lr=3e-3, patience=8)
    info = train.run(
        learnable / "brain.h5", learnable / "emb.h5", "nice", 5, learnable / "r", recipe
    )
    metrics = pd.read_csv(learnable / "r" / "metrics.csv")
    assert info["best_epoch"] == int(metrics.val_loss.idxmin()) + 1
    model, _ = train.load_model(learnable / "r" / "model.pt", torch.device("cpu"))
    data = train.TrainingSet.load(
        [learnable / "brain.h5"], learnable / "emb.h5", torch.device("cpu")
    )
    _, val = train.split_indices(len(data.w), recipe.val_fraction, 5)
    scale = torch.load(learnable / "r" / "model.pt", weights_only=True)["logit_scale"]
    loss, _ = train.validate(model, data, val, scale)
    assert loss == pytest.approx(metrics.val_loss.min(), rel=1e-5)


def test_leave_one_subject_out(learnable):
    """Two training subjects share the images; the held-out subject is seen only at test
    time, as subject -1. Validation holds out the same images for every training subject."""
    rng = np.random.default_rng(9)
    with h5py.File(learnable / "brain.h5") as f:
        train_x, test_x = f["train"][:], f["test"][:]
    for s in (2, 3):
        with h5py.File(learnable / f"brain{s}.h5", "w") as f:
            f["train"] = train_x + rng.normal(size=train_x.shape).astype(np.float32)
            f["test"] = test_x + rng.normal(size=test_x.shape).astype(np.float32)
    data = train.TrainingSet.load(
        [learnable / "brain2.h5", learnable / "brain3.h5"],
        learnable / "emb.h5",
        torch.device("cpu"),
    )
    assert data.x.shape == (480, 8, 100) and data.n_subjects == 2
    assert torch.equal(data.image[:240], data.image[240:]) and data.subject[240:].eq(1).all()
    assert data.rows(np.array([3, 7])).tolist() == [3, 7, 243, 247]
    recipe = train.Recipe(epochs=4, batch_size=32, lr=1e-3, patience=4)
    info = train.run(
        [learnable / "brain2.h5", learnable / "brain3.h5"], learnable / "emb.h5", "atms", 7,
        learnable / "loso", recipe, regime="inter", test_subject=1,
    )  # fmt: skip
    assert info["regime"] == "inter" and info["n_subjects"] == 2
    result = evaluate.run(
        learnable / "loso" / "model.pt", learnable / "brain.h5", learnable / "emb.h5",
        learnable / "loso" / "retrieval.json", {"seed": 7, "regime": "inter"},
    )  # fmt: skip
    assert result["regime"] == "inter" and 0 <= result["top1"] <= 1


def test_mismatched_brain_and_images_fail_clearly(learnable):
    with h5py.File(learnable / "emb.h5") as f, h5py.File(learnable / "few.h5", "w") as g:
        g["train"], g["test"] = f["train"][:10], f["test"][:]
        g.attrs["encoder"] = "toy"
    with pytest.raises(InputError, match="240 training conditions but .*few.h5 has 10 images"):
        train.run(learnable / "brain.h5", learnable / "few.h5", "nice", 1, learnable / "x")
