"""Disk, memory and time of the stages after preprocessing at full THINGS-EEG2 scale.

The real data cannot be had here, so the inputs are synthetic arrays of the real sizes: one
subject's preprocessed HDF5 (16,540 x 4 x 63 x 250 and 200 x 80 x 63 x 250 float32, as the
preprocess stage writes it) and a 768-d embedding file of 16,540 + 200 images. Each stage runs as
the workflow runs it (`visdecode train|evaluate|attribution`), under /usr/bin/time for its peak
RSS. Training runs `--epochs` epochs (default 1) of the published NICE recipe (batch 128); a full
run's time is then the per-epoch time x epochs, plus the one-off load. Preprocessing and
embedding are measured by preprocess_full_scale.py and embed_speed.py.

    python benchmarks/paper_scale.py [--epochs 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST, CH, T, DIM = 16540, 200, 63, 250, 768


def write_inputs(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    brain = folder / "sub-01.h5"
    with h5py.File(brain, "w") as f:
        for name, n, reps in (("train", N_TRAIN, 4), ("test", N_TEST, 80)):
            d = f.create_dataset(name, (n, reps, CH, T), "<f4")
            for start in range(0, n, 500):
                stop = min(start + 500, n)
                d[start:stop] = rng.standard_normal((stop - start, reps, CH, T), np.float32)
            f[f"{name}_codes"] = np.arange(1, n + 1)
        f["ch_names"] = np.array([f"E{i}" for i in range(CH)], dtype=h5py.string_dtype())
        f["times"] = np.arange(T) / 250.0
        f.attrs["sfreq"] = 250.0
    emb = folder / "embeddings.h5"
    with h5py.File(emb, "w") as f:
        f["train"] = rng.standard_normal((N_TRAIN, DIM), np.float32)
        f["test"] = rng.standard_normal((N_TEST, DIM), np.float32)
        f.attrs["encoder"], f.attrs["dim"] = "benchmark", DIM
    return brain, emb


def timed(args: list[str]) -> tuple[float, float]:
    """(wall s, peak RSS GB) of one `visdecode` stage."""
    cmd = ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "visdecode.cli", *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} failed:\n{r.stderr[-3000:]}")
    wall, kb = r.stderr.strip().splitlines()[-1].split()
    return float(wall), int(kb) / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/paper_scale.md"))
    a = p.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        brain, emb = write_inputs(tmp)
        log = [f"inputs written in {time.perf_counter() - start:.0f} s"]
        sizes = {"brain": brain.stat().st_size / 1e9, "embeddings": emb.stat().st_size / 1e9}
        recipe = json.dumps({"epochs": a.epochs, "batch_size": 128, "lr": 2e-4, "patience": 30})
        run = tmp / "run"
        rows = []
        wall, peak = timed([
            "train", "--brain", str(brain), "--embeddings", str(emb), "--brain-encoder", "nice",
            "--seed", "7", "--out-dir", str(run), "--recipe", recipe, "--threads", str(a.threads),
        ])  # fmt: skip
        metrics = pd.read_csv(run / "metrics.csv")
        epoch_s = float(metrics["seconds"].mean())
        rows.append((f"train (NICE, {a.epochs} epoch{'s' * (a.epochs > 1)})", wall, peak))
        model = run / "model.pt"
        wall_e, peak_e = timed([
            "evaluate", "--model", str(model), "--brain", str(brain), "--embeddings", str(emb),
            "--out", str(tmp / "retrieval.json"),
        ])  # fmt: skip
        rows.append(("evaluate (200-way)", wall_e, peak_e))
        wall_a, peak_a = timed([
            "attribution", "--model", str(model), "--brain", str(brain), "--embeddings",
            str(emb), "--out", str(tmp / "attribution.h5"),
        ])  # fmt: skip
        rows.append(("attribution", wall_a, peak_a))
        run_bytes = sum(f.stat().st_size for f in run.rglob("*") if f.is_file())
    out = [
        "# Stages after preprocessing at full THINGS-EEG2 scale (synthetic arrays)",
        "",
        f"- machine: {os.cpu_count()} cores, {platform.machine()}, CPU only, "
        f"{a.threads} torch threads",
        f"- preprocessed HDF5 of one subject: {sizes['brain']:.2f} GB; 768-d embeddings: "
        f"{sizes['embeddings'] * 1000:.0f} MB; one trained run's folder: {run_bytes / 1e6:.1f} MB",
        f"- NICE, batch 128: {epoch_s:.1f} s per epoch (metrics.csv); the rest of the train "
        "stage's wall time is loading, normalising and averaging the repetitions once",
        "",
        "| stage | wall (s) | peak RSS (GB) |",
        "|---|---:|---:|",
        *[f"| {name} | {w:.1f} | {m:.2f} |" for name, w, m in rows],
        "",
        *log,
        "",
        f"Reproduce: `python benchmarks/paper_scale.py --epochs {a.epochs} --threads {a.threads}`",
    ]
    Path(a.out).write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
