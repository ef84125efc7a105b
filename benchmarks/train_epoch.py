"""Benchmark: one training epoch of NICE at full THINGS-EEG2 scale, ours vs the published path.

Input (random, same for both): 16,540 training conditions x 4 repetitions x 63 channels x 250
samples (float32), and 512-d image embeddings. One epoch = every condition once, batches of
128, symmetric InfoNCE, AdamW, gradient clipping, on this machine's CPU threads.

- published: tests/published.py's data path (a Dataset that normalises and averages each
  item's repetitions on every access, through a DataLoader) and the published NICE layout
  (temporal conv, then pooling);
- published data path + our NICE: to separate what the data path and the model each give;
- ours: `visdecode.train` (the repetitions normalised and averaged once, one float32 tensor,
  batches as index slices) and `visdecode.brain_encoders.NICE` (pooling before the filter).

The two models start from the same weights; before timing, the script checks that they give
the same loss on the same batch (eval mode). Results: benchmarks/results/train_epoch.md.

    python benchmarks/train_epoch.py [--conditions 16540] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from published import PublishedEEGDataset, PublishedNICE  # noqa: E402

from visdecode import brain_data, brain_encoders, train  # noqa: E402


def published_epoch(model, eeg, emb, recipe, device) -> float:
    loader = torch.utils.data.DataLoader(
        PublishedEEGDataset(eeg, emb), batch_size=recipe.batch_size, shuffle=True
    )
    scale = torch.tensor(math.log(1 / recipe.temperature), device=device)  # fixed, as published
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    model.train()
    t0 = time.perf_counter()
    for x, w in loader:
        x, w = x.to(device), w.to(device)
        v = nn.functional.normalize(model(x), dim=1)
        loss = train.symmetric_infonce(v, nn.functional.normalize(w, dim=1), scale)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def ours_epoch(model, eeg, emb, recipe, device) -> tuple[float, float]:
    """(seconds to build the on-device training set once, seconds for the epoch)."""
    t0 = time.perf_counter()
    x = torch.from_numpy(brain_data.normalise_repetitions(eeg).mean(axis=1)).to(device)
    n = len(x)
    data = train.TrainingSet(
        x, torch.arange(n, device=device), torch.zeros(n, dtype=torch.long, device=device),
        nn.functional.normalize(torch.from_numpy(emb).to(device), dim=1), 1,
    )  # fmt: skip
    setup = time.perf_counter() - t0
    scale = nn.Parameter(torch.tensor(math.log(1 / recipe.temperature), device=device))
    params = list(model.parameters()) + [scale]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    train.train_epoch(model, data, torch.arange(n, device=device), recipe, opt, params, scale, gen)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return setup, time.perf_counter() - t0


def same_function(published, ours, eeg, emb, device) -> float:
    """Max |loss difference| on one batch, both in eval mode, through both data paths."""
    ds = PublishedEEGDataset(eeg, emb)
    items = [ds[i] for i in range(64)]
    x_pub = torch.stack([a for a, _ in items]).to(device)
    x_ours = torch.from_numpy(brain_data.normalise_repetitions(eeg[:64]).mean(axis=1)).to(device)
    w = nn.functional.normalize(torch.from_numpy(emb[:64]).to(device), dim=1)
    scale = torch.tensor(math.log(25.0), device=device)
    with torch.no_grad():
        a = train.symmetric_infonce(
            nn.functional.normalize(published.eval()(x_pub), dim=1), w, scale
        )
        b = train.symmetric_infonce(nn.functional.normalize(ours.eval()(x_ours), dim=1), w, scale)
    return abs(a.item() - b.item())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conditions", type=int, default=16540)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/train_epoch.md"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(0)
    print(f"generating {a.conditions} x 4 x 63 x 250 float32 ...", flush=True)
    eeg = rng.standard_normal((a.conditions, 4, 63, 250), dtype=np.float32)
    emb = rng.standard_normal((a.conditions, 512), dtype=np.float32)
    recipe = train.Recipe(batch_size=128, lr=2e-4, temperature=0.04)

    torch.manual_seed(0)
    published = PublishedNICE().to(device)
    init = published.visdecode_state_dict()

    def fresh_ours():
        model = brain_encoders.build("nice", 63, 250, 512)
        model.load_state_dict(init)
        return model.to(device)

    diff = same_function(published, fresh_ours(), eeg, emb, device)
    print(f"same weights, same batch: |loss difference| = {diff:.2e}", flush=True)
    assert diff < 1e-4, diff

    times = {}
    print("published data path + published NICE ...", flush=True)
    times["published"] = published_epoch(published, eeg, emb, recipe, device)
    print(f"  {times['published']:.1f} s", flush=True)
    print("published data path + our NICE ...", flush=True)
    times["published_path_our_model"] = published_epoch(fresh_ours(), eeg, emb, recipe, device)
    print(f"  {times['published_path_our_model']:.1f} s", flush=True)
    print("ours ...", flush=True)
    setup, times["ours"] = ours_epoch(fresh_ours(), eeg, emb, recipe, device)
    print(f"  {times['ours']:.1f} s (+ {setup:.1f} s once to average and normalise)", flush=True)

    speedup = times["published"] / times["ours"]
    lines = [
        "# One training epoch of NICE at full THINGS-EEG2 scale",
        "",
        f"- machine: {platform.machine()}, {a.threads} threads, device {device}, "
        f"torch {torch.__version__}",
        f"- input: {a.conditions} conditions x 4 repetitions x 63 x 250 float32 (random), "
        "512-d targets; batch 128; AdamW, gradient clipping",
        f"- same weights, same batch, eval mode: |loss difference| {diff:.1e}",
        "",
        "| run | epoch (s) | speed-up |",
        "|---|---:|---:|",
        f"| published: per-item Dataset + DataLoader, published NICE | {times['published']:.1f} "
        "| 1.0x |",
        f"| published data path, our NICE | {times['published_path_our_model']:.1f} | "
        f"{times['published'] / times['published_path_our_model']:.1f}x |",
        f"| **ours**: one on-device tensor, index slices, our NICE | {times['ours']:.1f} | "
        f"**{speedup:.1f}x** |",
        "",
        f"Ours also spends {setup:.1f} s once per run (not per epoch) averaging and normalising "
        "the repetitions into the training tensor.",
        "",
        f"Reproduce: `python benchmarks/train_epoch.py --threads {a.threads}`",
    ]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
