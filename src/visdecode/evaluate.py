"""Stage `evaluate`: zero-shot n-way retrieval over the test images, and the tidy table.

Per run: every test query (brain data averaged over all its repetitions) is scored against the
gallery of test-image embeddings by cosine similarity; top-k = the true image ranks within the
first k. n-way < number of test images draws, per query, n-1 random distractors (seeded), as
is usual.

Ties never count for the model: the accuracy is the expectation over random tie-breaking. A
query whose true image has g distractors scoring strictly higher and e scoring equal is a
top-k hit with probability clip((k - g) / (e + 1), 0, 1), so constant (all-equal) similarities
give exactly chance, never more. Non-finite similarities (a model that outputs NaN or inf) stop
the run with one line; no result is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from visdecode import brain_data, train
from visdecode.errors import InputError
from visdecode.io import atomic_path

TABLE_COLUMNS = [
    "dataset", "modality", "regime", "subject", "brain_encoder", "image_encoder", "alignment",
    "pair", "seed", "n_way", "top1", "top5",
]  # fmt: skip


def topk_accuracy(sim: np.ndarray, ks=(1, 5), n_way: int | None = None, seed: int = 0) -> dict:
    """sim (queries, gallery) with query i matching gallery item i; ties broken at random, in
    expectation (module docstring). Non-finite similarities raise ValueError."""
    sim = np.asarray(sim)
    n = sim.shape[0]
    n_way = n if n_way is None else n_way
    if n_way > n:
        raise ValueError(f"n_way {n_way} exceeds the {n} test images")
    if not np.isfinite(sim).all():
        raise ValueError(f"{np.size(sim) - np.isfinite(sim).sum()} similarities are not finite")
    true = np.diag(sim)[:, None]
    if n_way == n:
        others = ~np.eye(n, dtype=bool)
    else:
        others = np.zeros((n, n), dtype=bool)
        np.put_along_axis(others, distractors(n, n_way, seed), True, axis=1)
    greater = ((sim > true) & others).sum(axis=1)
    equal = ((sim == true) & others).sum(axis=1)
    return {
        f"top{k}": float(np.clip((k - greater) / (equal + 1), 0, 1).mean()) for k in ks
    }


def distractors(n: int, n_way: int, seed: int) -> np.ndarray:
    """(n, n_way - 1): per query i, n_way - 1 distinct gallery items other than i, drawn
    uniformly (the first of a seeded random order of the others)."""
    order = np.random.default_rng(seed).permuted(
        np.broadcast_to(np.arange(n - 1), (n, n - 1)), axis=1
    )
    pick = order[:, : n_way - 1]
    return pick + (pick >= np.arange(n)[:, None])  # skip the query's own image


def load_run(
    model_path: Path | str, brain: Path | str, embeddings: Path | str, device=None, x=None
):
    """A trained run with its test data: (model, info, queries x, subject index, test-image
    embeddings w, in the order of `brain`'s test conditions, centred with the vector stored
    with the model and L2-normalised); `x`, when given, is `brain`'s test queries already
    loaded (brain_data.load_averaged). A model trained leave-one-subject-out meets `brain`'s
    subject for the first time: subject index -1 (for ATM-S, the mean of the learned subject
    tokens)."""
    device = device or torch.device("cpu")
    model, info = train.load_model(model_path, device)
    emb = brain_data.load_embeddings(embeddings)
    encoder = str(emb["attrs"].get("encoder"))
    if encoder != info["image_encoder"]:
        raise InputError(
            f"{embeddings}: embeddings of '{encoder}', but {model_path} was trained on those "
            f"of '{info['image_encoder']}'; give that encoder's embeddings"
        )
    trained, given = info.get("image_weights_sha256", ""), str(emb["attrs"].get("weights_sha256", ""))
    if trained and given and trained != given:
        raise InputError(
            f"{embeddings}: embeddings of other weights (SHA-256 {given[:12]}...) than "
            f"{model_path} was trained with ({trained[:12]}...); train the run again"
        )
    stimuli, _ = brain_data.read_stimuli(brain, "test")
    rows = brain_data.match(stimuli, emb["test_files"], brain, embeddings)
    w = brain_data.unit(emb["test"][rows], info["image_centre"])
    if x is None:
        x = torch.from_numpy(brain_data.load_averaged(brain, "test"))
    x = x.to(device)
    subject = torch.full((len(x),), -1 if info.get("regime") == "inter" else 0, device=device)
    return model, info, x, subject, torch.from_numpy(w).to(device)


def retrieve(
    model_path: Path | str, brain: Path | str, embeddings: Path | str, x=None
) -> np.ndarray:
    """Cosine similarities (test queries x test images) for one trained run."""
    model, _, x, subject, w = load_run(model_path, brain, embeddings, x=x)
    return (train.embed_brain(model, x, subject) @ w.T).numpy()


def run(
    model_path: Path | str,
    brain: Path | str,
    embeddings: Path | str,
    out: Path | str,
    meta: dict,
    n_way: int | None = None,
) -> dict:
    sim = retrieve(model_path, brain, embeddings)
    n_way = sim.shape[0] if n_way is None else n_way
    if not np.isfinite(sim).all():
        raise InputError(
            f"{model_path}: {np.size(sim) - np.isfinite(sim).sum()} of {sim.size} test "
            f"similarities are not finite (the model outputs NaN or inf on {brain}); no result "
            "written: retrain the run, and check its metrics.csv and the preprocessed data"
        )
    result = {
        **meta,
        "modality": brain_data.modality(brain),
        "n_way": n_way,
        "n_queries": sim.shape[0],
        **topk_accuracy(sim, n_way=n_way, seed=meta.get("seed", 0)),
    }
    with atomic_path(out) as tmp, open(tmp, "w") as fh:
        json.dump(result, fh, indent=1)
    return result


def table(run_files: list[Path | str], pairs: list[dict], out: Path | str) -> pd.DataFrame:
    """One row per run and pair membership: the tidy retrieval table."""
    rows = []
    for path in run_files:
        with open(path) as fh:
            res = json.load(fh)
        for pair in pairs:
            for alignment in ("aligned", "unaligned"):
                if pair[alignment] == res["image_encoder"]:
                    rows.append({**res, "alignment": alignment, "pair": pair["name"]})
    df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    df["regime"] = df["regime"].fillna("intra")
    df = df.sort_values(
        ["dataset", "regime", "pair", "brain_encoder", "subject", "alignment", "seed"]
    )
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
    return df
