"""Training recipe and retrieval scoring against independent yardsticks."""

import csv

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from visdecode import brain_data, evaluate, train
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


def names(partition: str, n: int, per_concept: int = 4) -> tuple[list[str], list[str]]:
    """Stimulus identities and concepts of n toy images, `per_concept` images a concept."""
    concepts = [f"{partition}{i // per_concept:03d}" for i in range(n)]
    return [f"{partition}/{c}/{i:04d}.jpg" for i, c in enumerate(concepts)], concepts


def write_brain(path, train, test) -> None:
    """A preprocessed file: epochs plus each condition's stimulus and concept."""
    with h5py.File(path, "w") as f:
        f["train"], f["test"] = train.astype(np.float32), test.astype(np.float32)
        for part, x in (("train", train), ("test", test)):
            brain_data.write_stimuli(f, part, *names(part, len(x)))


def write_embeddings(path, train, test, encoder="toy") -> None:
    with h5py.File(path, "w") as f:
        f["train"], f["test"] = train, test
        for part, x in (("train", train), ("test", test)):
            f[f"{part}_files"] = names(part, len(x))[0]
        f.attrs["encoder"] = encoder


@pytest.fixture
def learnable(tmp_path):
    """Brain data that linearly encode the image embeddings, plus noise."""
    rng = np.random.default_rng(0)
    n_train, n_test, dim = 240, 20, 16
    emb = rng.normal(size=(n_train + n_test, dim)).astype(np.float32)
    mix = rng.normal(size=(dim, 8, 100))
    brain = np.einsum("nd,dct->nct", emb, mix)[:, None] + rng.normal(size=(len(emb), 4, 8, 100))
    write_brain(tmp_path / "brain.h5", brain[:n_train], brain[n_train:])
    write_embeddings(tmp_path / "emb.h5", emb[:n_train], emb[n_train:])
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


@pytest.mark.parametrize("selection", ["loss", "top1"])
def test_best_weights_are_the_ones_saved(learnable, selection):
    """The checkpoint's validation loss, recomputed, is that of the best epoch in
    metrics.csv: the lowest loss, or the highest top-1 (ties: the lowest loss among them)."""
    recipe = train.Recipe(epochs=8, batch_size=32, lr=3e-3, patience=8)
    info = train.run(learnable / "brain.h5", learnable / "emb.h5", "nice", 5, learnable / "r",
                     recipe, selection=selection)  # fmt: skip
    metrics = pd.read_csv(learnable / "r" / "metrics.csv")
    if selection == "top1":
        metrics = metrics[metrics.val_top1 == metrics.val_top1.max()]
    assert info["best_epoch"] == metrics.epoch[metrics.val_loss.idxmin()]
    model, _ = train.load_model(learnable / "r" / "model.pt", torch.device("cpu"))
    data = train.TrainingSet.load(
        [learnable / "brain.h5"], learnable / "emb.h5", torch.device("cpu")
    )
    _, val = train.split_images(data.concepts, recipe.val_fraction, 5, "concept")
    assert len(val) == info["n_val_images"]
    scale = torch.load(learnable / "r" / "model.pt", weights_only=True)["logit_scale"]
    groups = train.validation_groups(val, data.concepts, "concept")
    loss, _ = train.validate(model, data, groups, scale)
    assert loss == pytest.approx(metrics.val_loss.min(), rel=1e-5)


class KnowsTheConcept(torch.nn.Module):
    """A 'brain encoder' whose output is its input: brains that carry the concept only."""

    def forward(self, x, subject=None):
        return x.flatten(1)


def test_validation_scores_within_its_problems():
    """Brains that know each image's concept but nothing finer: by concept (galleries of one
    image per concept) validation top-1 is perfect; by image, among a concept's 5 images, a
    tie-aware chance of 1/5. A constant model scores chance in each problem, never more."""
    torch.manual_seed(0)
    n_concepts, per = 20, 5
    concepts = np.repeat(np.arange(n_concepts), per)
    concept_vec = torch.nn.functional.normalize(torch.randn(n_concepts, 16), dim=1)
    w = torch.nn.functional.normalize(concept_vec[concepts] + 0.3 * torch.randn(100, 16), dim=1)
    x = concept_vec[concepts][:, None, :].clone()
    data = train.TrainingSet(x, torch.arange(100), torch.zeros(100, dtype=torch.long), w, 1,
                             concepts)  # fmt: skip
    _, val = train.split_images(concepts, 0.2, 3)  # 4 concepts, 20 images
    scale = torch.tensor(np.log(25.0))
    by_concept = train.validation_groups(val, concepts, "concept")
    assert [len(g) for g in by_concept] == [4] * 5
    assert train.validate(KnowsTheConcept(), data, by_concept, scale)[1] == 1.0
    by_image = train.validation_groups(val, concepts, "image")
    # by image each query also meets its concept's 4 other images, ranked by their noise alone
    top1_image = train.validate(KnowsTheConcept(), data, by_image, scale)[1]
    assert 0.05 < top1_image < 0.6

    class Constant(torch.nn.Module):
        def forward(self, x, subject=None):
            return torch.ones(len(x), 16)

    assert train.validate(Constant(), data, by_concept, scale)[1] == pytest.approx(1 / 4)
    assert train.validate(Constant(), data, by_image, scale)[1] == pytest.approx(1 / 20)


def test_validation_never_improving_keeps_the_first_epoch(learnable):
    """With a learning rate of 0 nothing improves after epoch 1: training stops after
    `patience` more epochs and keeps epoch 1's weights, under either criterion."""
    recipe = train.Recipe(epochs=10, batch_size=32, lr=0.0, patience=2, learn_temperature=False)
    for selection in ("top1", "loss"):
        out = learnable / selection
        info = train.run(learnable / "brain.h5", learnable / "emb.h5", "nice", 1, out, recipe,
                         selection=selection)  # fmt: skip
        metrics = pd.read_csv(out / "metrics.csv")
        assert info["best_epoch"] == 1 and list(metrics.epoch) == [1, 2, 3]
        # (batch-norm statistics still move: the loss worsens, top-1 stays at chance)
        assert metrics.val_loss.is_monotonic_increasing and metrics.val_top1.nunique() == 1


def test_validation_by_concept_asks_the_test_question():
    """By concept, each validation problem holds one image of every validation concept, as
    the test's gallery does; by image, one problem holds them all."""
    concepts = np.repeat(np.arange(10), [3, 3, 2, 3, 3, 1, 3, 3, 3, 3])
    val = np.flatnonzero(np.isin(concepts, [1, 2, 5, 7]))  # 3 + 2 + 1 + 3 images
    groups = train.validation_groups(val, concepts, "concept")
    assert [len(g) for g in groups] == [4, 3, 2]  # the 3rd images of concepts 1 and 7
    for g in groups:
        assert len(np.unique(concepts[g])) == len(g)  # never two images of one concept
    assert sorted(np.concatenate(groups)) == sorted(val)  # every image scored once
    assert [g.tolist() for g in train.validation_groups(val, concepts, "image")] == [val.tolist()]
    # an image left alone in its problem (no other concept has that many) is not scored
    lone = train.validation_groups(np.flatnonzero(np.isin(concepts, [1, 5])), concepts, "concept")
    assert [g.tolist() for g in lone] == [[3, 14]]


def test_leave_one_subject_out(learnable):
    """Two training subjects share the images; the held-out subject is seen only at test
    time, as subject -1. Validation holds out the same images for every training subject."""
    rng = np.random.default_rng(9)
    with h5py.File(learnable / "brain.h5") as f:
        train_x, test_x = f["train"][:], f["test"][:]
    for s in (2, 3):
        noise = [rng.normal(size=x.shape).astype(np.float32) for x in (train_x, test_x)]
        write_brain(learnable / f"brain{s}.h5", train_x + noise[0], test_x + noise[1])
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


def test_leave_one_subject_out_batches_hold_repeated_images(learnable):
    """Of three subjects, the model for held-out subject 1 trains on 2 and 3, so each image has
    two rows and one batch can hold both. They are positives for one another: the batch's
    loss is the multi-positive yardstick, not CLIP's loss with an image as its own negative."""
    with h5py.File(learnable / "brain.h5") as f:
        train_x, test_x = f["train"][:], f["test"][:]
    for s in (2, 3):
        write_brain(learnable / f"brain{s}.h5", train_x * s, test_x * s)
    data = train.TrainingSet.load(
        [learnable / f"brain{s}.h5" for s in (2, 3)], learnable / "emb.h5", torch.device("cpu")
    )
    tr, _ = train.split_images(data.concepts, 0.1, 7)
    rows = data.rows(tr)
    order = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(7))]
    batches = [order[i : i + 64] for i in range(0, len(order), 64)]
    repeats = [len(b) - len(torch.unique(data.image[b])) for b in batches]
    assert sum(repeats) > 0  # repeated images in a batch do occur
    idx = batches[int(np.argmax(repeats))]
    torch.manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(len(idx), data.w.shape[1]), dim=1)
    image = data.image[idx]
    scale = torch.tensor(np.log(1 / 0.04))
    loss = train.symmetric_infonce(v, data.w[image], scale, image).item()
    assert loss == pytest.approx(multi_positive(v, data.w[image], image, 0.04), rel=1e-5)
    assert loss != pytest.approx(train.symmetric_infonce(v, data.w[image], scale).item(), rel=1e-3)


def multi_positive(v, w, image, temperature) -> float:
    """The yardstick, row by row: brain -> image over the batch's distinct images; image ->
    brain with every row of the image a positive (their probabilities summed)."""
    v, w, image = v.double().numpy(), w.double().numpy(), image.numpy()
    distinct = sorted(set(image.tolist()))
    cols = np.stack([w[list(image).index(d)] for d in distinct])
    logits = v @ cols.T / temperature  # rows x distinct images

    def log_softmax(x):
        x = x - x.max()
        return x - np.log(np.exp(x).sum())

    to_image = np.mean([-log_softmax(logits[i])[distinct.index(image[i])] for i in range(len(v))])
    to_brain = np.mean(
        [
            -np.log(np.exp(log_softmax(logits[:, j])[image == d]).sum())
            for j, d in enumerate(distinct)
        ]
    )
    return (to_image + to_brain) / 2


def test_repeated_images_are_positives_not_negatives():
    """Two rows per image, brain embeddings equal to the image's: with repeats as positives
    the loss goes to 0 as the temperature falls; CLIP's loss, which makes each row's twin a
    negative, cannot go below log 2."""
    torch.manual_seed(1)
    w = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    image = torch.arange(8).repeat(2)
    v, wr = w[image], w[image]
    scale = torch.tensor(np.log(1 / 0.01))
    assert train.symmetric_infonce(v, wr, scale, image).item() < 0.01
    assert train.symmetric_infonce(v, wr, scale).item() > np.log(2) - 1e-3
    # without repeats, the image-aware loss is CLIP's loss
    v = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    assert train.symmetric_infonce(v, w, scale, torch.arange(8)).item() == pytest.approx(
        train.symmetric_infonce(v, w, scale).item(), rel=1e-6
    )
    assert train.symmetric_infonce(v, w, scale, torch.tensor([5, 1, 7, 0, 2, 3, 6, 4])).item() == (
        pytest.approx(train.symmetric_infonce(v, w, scale).item(), rel=1e-6)
    )


def test_validation_by_concept_holds_out_whole_concepts():
    concepts = np.repeat([f"c{i:02d}" for i in range(30)], 10)
    tr, va = train.split_images(concepts, 0.1, 7, "concept")
    assert not set(concepts[tr]) & set(concepts[va])  # no concept on both sides
    assert len(set(concepts[va])) == 3 and len(va) == 30 and len(tr) + len(va) == 300
    again = train.split_images(concepts, 0.1, 7, "concept")[1]
    assert np.array_equal(va, again) and not np.array_equal(
        va, train.split_images(concepts, 0.1, 8)[1]
    )
    by_image = train.split_images(concepts, 0.1, 7, "image")
    assert np.array_equal(by_image[1], train.split_indices(300, 0.1, 7)[1])
    assert set(concepts[by_image[0]]) & set(concepts[by_image[1]])  # the published split leaks
    # at least 2 validation concepts, whatever their images
    assert len(train.split_images(np.arange(15).astype(str), 0.01, 0)[1]) == 2
    assert len(set(concepts[train.split_images(concepts, 0.01, 0)[1]])) == 2
    with pytest.raises(
        InputError, match="2 or more validation concepts and 2 or more training.*val_split: image"
    ):
        train.split_images(np.array(["a"] * 10 + ["b"] * 10), 0.1, 0)
    # a fraction that would leave nothing to train on keeps one concept at least
    tr, va = train.split_images(concepts, 0.99, 0)
    assert len(tr) == 10 and len(va) == 290
    with pytest.raises(InputError, match="3 training images leave 1 to train on after 2"):
        train.split_images(np.arange(3).astype(str), 0.1, 0, "image")


def test_no_weight_decay_on_temperature_biases_and_norms():
    model = train.brain_encoders.build("nice", 8, 100, 16)
    scale = torch.nn.Parameter(torch.tensor(3.0))
    opt, params = train.optimiser(model, scale, train.Recipe(weight_decay=0.1))
    decayed, free = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and free["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"])
    assert any(p is scale for p in free["params"]) and all(p.ndim < 2 for p in free["params"])
    names = {n for n, p in model.named_parameters() if any(p is q for q in free["params"])}
    assert any(n.endswith(".bias") for n in names) and any("norm" in n or ".1." in n for n in names)
    assert len(params) == len(list(model.parameters())) + 1


class Identity(torch.nn.Module):
    """A brain encoder whose output is its input (one learnable gain): already aligned."""

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(1))

    def forward(self, x, subject=None):
        return self.gain * x.flatten(1)


def test_learnable_temperature_is_clamped_at_clips_limit():
    """Brain embeddings equal to the image embeddings: the loss falls as the logit scale
    grows, so a fast optimiser drives it up; it stops at CLIP's 100 (temperature 0.01)."""
    torch.manual_seed(0)
    w = torch.nn.functional.normalize(torch.randn(64, 8), dim=1)
    data = train.TrainingSet(
        w[:, None, :].clone(), torch.arange(64), torch.zeros(64, dtype=torch.long), w, 1
    )
    recipe = train.Recipe(batch_size=16, lr=0.5, temperature=0.05)
    model = Identity()
    scale = torch.nn.Parameter(torch.tensor(np.log(1 / recipe.temperature), dtype=torch.float32))
    opt, params = train.optimiser(model, scale, recipe)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        train.train_epoch(model, data, torch.arange(64), recipe, opt, params, scale, gen)
    assert scale.item() == pytest.approx(np.log(100), rel=1e-6)
    with pytest.raises(InputError, match="temperature 0.005: use 0.01 to 1"):
        train.Recipe(temperature=0.005)


def test_non_finite_training_stops_with_one_line_and_no_model(learnable):
    with h5py.File(learnable / "brain.h5") as f:
        train_x, test_x = f["train"][:], f["test"][:]
    train_x[5, 0, 0, 0] = np.nan
    write_brain(learnable / "nan.h5", train_x, test_x)
    out = learnable / "broken"
    with pytest.raises(
        InputError, match=r"broken: training loss is not finite at epoch 1; no model"
    ):
        train.run(
            learnable / "nan.h5", learnable / "emb.h5", "nice", 1, out, train.Recipe(epochs=2)
        )
    assert not out.exists()
    # NaN only in a validation image: training runs, the validation loss never is finite
    data = train.TrainingSet.load(
        [learnable / "brain.h5"], learnable / "emb.h5", torch.device("cpu")
    )
    _, val = train.split_images(data.concepts, 0.1, 1)
    train_x[5, 0, 0, 0] = 0.0
    train_x[val[0], 1, 2, 3] = np.nan
    write_brain(learnable / "nan.h5", train_x, test_x)
    with pytest.raises(InputError, match=r"broken: validation loss is not finite at epoch 1;"):
        train.run(
            learnable / "nan.h5", learnable / "emb.h5", "nice", 1, out, train.Recipe(epochs=2)
        )
    assert not out.exists()


def test_degenerate_similarities_score_chance_or_less():
    """A model whose outputs are all equal scored 100% before ties counted against it."""
    n = 40
    for n_way in (None, 10):
        k_way = n_way or n
        flat = evaluate.topk_accuracy(np.zeros((n, n)), n_way=n_way, seed=3)
        assert flat == {"top1": pytest.approx(1 / k_way), "top5": pytest.approx(5 / k_way)}
        perfect = evaluate.topk_accuracy(np.eye(n), n_way=n_way, seed=3)
        assert perfect == {"top1": 1.0, "top5": 1.0}
        for bad in (np.nan, np.inf):
            sim = np.eye(n)
            sim[3, 7] = bad
            with pytest.raises(ValueError, match="1 similarities are not finite"):
                evaluate.topk_accuracy(sim, n_way=n_way)


@pytest.mark.parametrize("n_way", [None, 5])
def test_ties_count_as_random_tie_breaking(n_way):
    """Yardstick: the mean top-k over many random orders of the gallery, ties broken by a
    stable sort (so by that order)."""
    rng = np.random.default_rng(4)
    sim = rng.integers(0, 4, size=(12, 12)).astype(float)  # many ties, some with the true image
    got = evaluate.topk_accuracy(sim, ks=(1, 3), n_way=n_way, seed=5)
    n = len(sim)
    if n_way:  # the same distractors as the function draws (checked below)
        pick = evaluate.distractors(n, n_way, 5)
        galleries = [np.concatenate([[i], pick[i]]) for i in range(n)]
    else:
        galleries = [np.arange(n)] * n
    hits = {1: [], 3: []}
    for _ in range(3000):
        for i, gallery in enumerate(galleries):
            shuffled = rng.permutation(gallery)
            ranked = shuffled[np.argsort(-sim[i, shuffled], kind="stable")]
            rank = int(np.flatnonzero(ranked == i)[0])
            for k in hits:
                hits[k].append(rank < k)
    for k in (1, 3):
        assert got[f"top{k}"] == pytest.approx(np.mean(hits[k]), abs=0.01)
    assert 0 < got["top1"] < 1


def test_distractors_are_distinct_other_images_drawn_uniformly():
    n, n_way = 10, 4
    draws = np.stack([evaluate.distractors(n, n_way, seed) for seed in range(2000)])
    assert draws.shape == (2000, n, n_way - 1)
    assert all(len(set(row)) == n_way - 1 for row in draws.reshape(-1, n_way - 1))
    assert not (draws == np.arange(n)[None, :, None]).any()  # never the query's own image
    counts = np.stack([np.bincount(draws[:, i].ravel(), minlength=n) for i in range(n)])
    expected = 2000 * (n_way - 1) / (n - 1)  # each other image equally often
    others = counts[~np.eye(n, dtype=bool)]
    assert (
        np.abs(others - expected).max() < 5 * np.sqrt(expected) and (counts.diagonal() == 0).all()
    )
    assert np.array_equal(evaluate.distractors(n, n_way, 3), evaluate.distractors(n, n_way, 3))


def test_a_model_with_non_finite_output_writes_no_result(learnable):
    train.run(learnable / "brain.h5", learnable / "emb.h5", "nice", 1, learnable / "r",
              train.Recipe(epochs=1, batch_size=32))  # fmt: skip
    with h5py.File(learnable / "brain.h5") as f:
        train_x, test_x = f["train"][:], f["test"][:]
    test_x[2] = np.inf
    write_brain(learnable / "inf.h5", train_x, test_x)
    out = learnable / "r" / "retrieval.json"
    with pytest.raises(
        InputError, match=r"model.pt: .* test similarities are not finite .*no result"
    ):
        evaluate.run(
            learnable / "r" / "model.pt", learnable / "inf.h5", learnable / "emb.h5", out, {}
        )
    assert not out.exists()


def test_brain_rows_and_embeddings_join_by_stimulus_not_position(learnable):
    """The same embeddings, rows reordered (as another image listing would give): identical
    training and retrieval. Another image set's embeddings: one clear line."""
    recipe = train.Recipe(epochs=2, batch_size=32)
    with h5py.File(learnable / "emb.h5") as f:
        emb = {k: f[k][:] for k in ("train", "test")}
    order = {k: np.random.default_rng(1).permutation(len(v)) for k, v in emb.items()}
    with h5py.File(learnable / "shuffled.h5", "w") as f:
        for part in ("train", "test"):
            f[part] = emb[part][order[part]]
            f[f"{part}_files"] = np.array(names(part, len(emb[part]))[0])[order[part]].tolist()
        f.attrs["encoder"] = "toy"
    results = []
    for name in ("emb", "shuffled"):
        train.run(
            learnable / "brain.h5", learnable / f"{name}.h5", "nice", 3, learnable / name, recipe
        )
        results.append(evaluate.run(learnable / name / "model.pt", learnable / "brain.h5",
                                    learnable / f"{name}.h5", learnable / name / "r.json", {}))  # fmt: skip
    metrics = [
        pd.read_csv(learnable / n / "metrics.csv").drop(columns="seconds")
        for n in ("emb", "shuffled")
    ]
    pd.testing.assert_frame_equal(*metrics)
    assert results[0] == results[1]
    with h5py.File(learnable / "other.h5", "w") as f:
        f["train"], f["test"] = emb["train"], emb["test"]
        for part in ("train", "test"):
            f[f"{part}_files"] = [n.replace(".jpg", ".png") for n in names(part, len(emb[part]))[0]]
        f.attrs["encoder"] = "toy"
    with pytest.raises(
        InputError,
        match=r"brain.h5: 240 of its 240 stimuli have no embedding in .*other.h5 \(first: train/train000/0000.jpg\)",
    ):
        train.run(learnable / "brain.h5", learnable / "other.h5", "nice", 1, learnable / "x")
    assert not (learnable / "x").exists()


def test_evaluation_centres_with_the_vector_stored_at_training(learnable):
    """Rebuilt embeddings whose training partition changed (here: shifted) cannot shift the
    test embeddings' centring: evaluation uses the model's own vector. Another encoder's
    embeddings are refused."""
    train.run(learnable / "brain.h5", learnable / "emb.h5", "nice", 2, learnable / "r",
              train.Recipe(epochs=2, batch_size=32))  # fmt: skip
    before = evaluate.retrieve(
        learnable / "r" / "model.pt", learnable / "brain.h5", learnable / "emb.h5"
    )
    with h5py.File(learnable / "emb.h5") as f:
        train_e, test_e = f["train"][:], f["test"][:]
    write_embeddings(learnable / "rebuilt.h5", train_e + 3.0, test_e)
    after = evaluate.retrieve(
        learnable / "r" / "model.pt", learnable / "brain.h5", learnable / "rebuilt.h5"
    )
    np.testing.assert_array_equal(before, after)
    ckpt = torch.load(learnable / "r" / "model.pt", weights_only=True)
    np.testing.assert_allclose(ckpt["image_centre"].numpy(), train_e.mean(0), rtol=1e-5, atol=1e-6)
    with h5py.File(learnable / "emb.h5", "a") as f:
        f.attrs["weights_sha256"] = "a" * 64
    train.run(learnable / "brain.h5", learnable / "emb.h5", "nice", 2, learnable / "s",
              train.Recipe(epochs=1, batch_size=32))  # fmt: skip
    with h5py.File(learnable / "rebuilt.h5", "a") as f:
        f.attrs["weights_sha256"] = "b" * 64
    with pytest.raises(
        InputError, match=r"rebuilt.h5: embeddings of other weights \(SHA-256 bbbbbbbbbbbb"
    ):
        evaluate.retrieve(
            learnable / "s" / "model.pt", learnable / "brain.h5", learnable / "rebuilt.h5"
        )
    write_embeddings(learnable / "clip.h5", train_e, test_e, encoder="clip_vitb32")
    with pytest.raises(
        InputError,
        match="embeddings of 'clip_vitb32', but .*model.pt was trained on those of 'toy'",
    ):
        evaluate.retrieve(
            learnable / "r" / "model.pt", learnable / "brain.h5", learnable / "clip.h5"
        )


def test_permutation_control_shuffles_the_pairing_only(learnable):
    cpu = torch.device("cpu")
    real = train.TrainingSet.load([learnable / "brain.h5"], learnable / "emb.h5", cpu)
    shuffled = train.TrainingSet.load([learnable / "brain.h5"], learnable / "emb.h5", cpu, 7)
    assert torch.equal(real.x, shuffled.x) and np.array_equal(real.concepts, shuffled.concepts)
    moved = (real.w != shuffled.w).any(1)
    assert moved.float().mean() > 0.9  # nearly every condition paired with another image
    key = lambda w: sorted(map(tuple, w.numpy().round(6)))  # noqa: E731
    assert key(real.w) == key(shuffled.w)  # the same embeddings, reassigned
    again = train.TrainingSet.load([learnable / "brain.h5"], learnable / "emb.h5", cpu, 7)
    assert torch.equal(again.w, shuffled.w)


@pytest.fixture(scope="module")
def three_subjects(tmp_path_factory, world_cfg):
    """A tiny synthetic world of 3 subjects, preprocessed, with its backbone's embeddings."""
    from visdecode import embed, image_sets
    from visdecode.datasets import synthetic_things
    from visdecode.datasets.things_eeg2 import format as things_eeg2
    from visdecode.datasets.things_eeg2 import preprocess, synth

    root = tmp_path_factory.mktemp("three")
    synth.write_images_atomic(root, world_cfg)
    synthetic_things.write_encoders(root)
    params = preprocess.Params(test_reps=world_cfg.test_reps_per_session)
    for s in (1, 2, 3):
        synth.write_subject(root, s, world_cfg)
        preprocess.run(root, s, root / f"sub-{s:02d}.h5", params, threads=2)
    image_sets.write(root / "images.tsv", things_eeg2.image_set(root / "images"), root, "")
    embed.run("synth_resnet18", root / "images.tsv", root / "encoders", root / "emb.h5")
    return root


def test_leave_one_subject_out_on_a_world_of_three(three_subjects, monkeypatch):
    """Held-out subject 1, trained on 2 and 3: every image has two rows, batches hold both
    copies of some images, and the run trains on them as positives, then meets subject 1."""
    root = three_subjects
    data = train.TrainingSet.load([root / "sub-02.h5", root / "sub-03.h5"], root / "emb.h5",
                                  torch.device("cpu"))  # fmt: skip
    assert data.n_subjects == 2 and len(data.x) == 2 * len(data.w)
    assert torch.equal(torch.bincount(data.image), torch.full((len(data.w),), 2))
    tr, _ = train.split_images(data.concepts, 0.1, 7)
    rows = data.rows(tr)
    idx = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(7))][:16]
    image = data.image[idx]
    assert len(torch.unique(image)) < len(image)  # a batch of 16 from 2 x 18 rows repeats
    v = torch.nn.functional.normalize(torch.randn(len(idx), data.w.shape[1]), dim=1)
    loss = train.symmetric_infonce(v, data.w[image], torch.tensor(np.log(25.0)), image).item()
    assert loss == pytest.approx(multi_positive(v, data.w[image], image, 0.04), rel=1e-5)
    # the run itself hands the loss each row's image, and its batches hold repeats
    calls, loss_fn = [], train.symmetric_infonce

    def spy(v, w, scale, image=None):
        calls.append(image)
        return loss_fn(v, w, scale, image)

    monkeypatch.setattr(train, "symmetric_infonce", spy)
    info = train.run([root / "sub-02.h5", root / "sub-03.h5"], root / "emb.h5", "nice", 7,
                     root / "loso", train.Recipe(epochs=3, batch_size=16, lr=1e-3),
                     regime="inter", test_subject=1)  # fmt: skip
    batches = [i for i in calls if i is not None]  # training batches (validation: no repeats)
    assert len(batches) == 3 * -(-2 * info["n_train_images"] // 16)
    assert any(len(torch.unique(i)) < len(i) for i in batches)
    assert info["n_subjects"] == 2 and info["brains"][0].endswith("sub-02.h5")
    result = evaluate.run(root / "loso" / "model.pt", root / "sub-01.h5", root / "emb.h5",
                          root / "loso" / "retrieval.json", {"regime": "inter"})  # fmt: skip
    assert result["n_queries"] == 6 and 0 <= result["top1"] <= 1


def test_a_lost_repetition_is_averaged_without_and_a_broken_one_is_not(tmp_path):
    """A repetition a data set could not keep is all NaN (THINGS-MEG): the average is that of
    the others, exactly; a single NaN sample is not a lost repetition and stays NaN (training
    and evaluation then stop); a condition with no repetition at all is refused."""
    rng = np.random.default_rng(0)
    test = rng.normal(size=(3, 4, 5, 20))
    test[1, 2] = np.nan  # lost
    write_brain(tmp_path / "a.h5", rng.normal(size=(2, 1, 5, 20)), test)
    x = brain_data.load_averaged(tmp_path / "a.h5", "test")
    kept = brain_data.normalise_repetitions(test[1, [0, 1, 3]].astype(np.float32)).mean(0)
    np.testing.assert_allclose(x[1], kept, rtol=1e-5)
    np.testing.assert_allclose(
        x[0], brain_data.normalise_repetitions(test[0].astype(np.float32)).mean(0), rtol=1e-5
    )
    test[2, 0, 1, 3] = np.nan  # broken, not lost
    write_brain(tmp_path / "b.h5", rng.normal(size=(2, 1, 5, 20)), test)
    x = brain_data.load_averaged(tmp_path / "b.h5", "test")
    assert np.isnan(x[2, 1]).all() and np.isfinite(x[:2]).all()
    test[0] = np.nan
    write_brain(tmp_path / "c.h5", rng.normal(size=(2, 1, 5, 20)), test)
    with pytest.raises(InputError, match=r"c.h5: test condition 0 has no repetition"):
        brain_data.load_averaged(tmp_path / "c.h5", "test")
