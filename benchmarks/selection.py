"""Benchmark: model selection by validation loss (published) vs validation top-1, on the
default synthetic world with validation by concept.

Builds the default world's preprocessed EEG and embeddings through the workflow (fresh working
directory), then trains intra-subject NICE with config.yaml's recipe for every subject x seed x
encoder of the pair twice, once per `train.selection`, and records each run's kept epoch and
test top-1 (100-way). Writes benchmarks/results/selection.md.

    python benchmarks/selection.py [--cores N] [--seeds 7 42 ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch
import yaml

from visdecode import evaluate, train

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", default="all")
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 42, 191, 2025, 96723])
    ap.add_argument("--keep", help="run in this directory and keep it (default: a temp dir)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "selection.md"))
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="visdecode-sel-"))
    if work.exists():
        shutil.rmtree(work)
    (work / "config").mkdir(parents=True)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    dataset = "things-eeg2-synthetic"  # measured on the synthetic EEG world
    cfg["decode"] = [dataset]
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    pair = cfg["pairs"][0]
    subjects = [f"{s:02d}" for s in cfg["datasets"][dataset]["subjects"]]
    brains = {s: f"results/preprocessed/{dataset}/sub-{s}.h5" for s in subjects}
    embeddings = {a: f"results/embeddings/{dataset}/{pair[a]}.h5" for a in ("aligned", "unaligned")}
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(work), "--configfile", str(work / "config" / "config.yaml"),
        "--cores", args.cores, *brains.values(), *embeddings.values(),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    recipe = train.Recipe(**cfg["train"]["recipes"]["nice"])
    rows = []
    for selection in ("loss", "top1"):
        for alignment, emb in embeddings.items():
            for s in subjects:
                for seed in args.seeds:
                    out = work / "runs" / selection / alignment / f"sub-{s}" / f"seed-{seed}"
                    info = train.run(work / brains[s], work / emb, "nice", seed, out, recipe,
                                     threads=torch.get_num_threads(), selection=selection,
                                     val_split=cfg["train"]["val_split"])  # fmt: skip
                    result = evaluate.run(out / "model.pt", work / brains[s], work / emb,
                                          out / "retrieval.json", {"seed": seed})  # fmt: skip
                    rows.append({"selection": selection, "alignment": alignment, "subject": s,
                                 "seed": seed, "kept_epoch": info["best_epoch"],
                                 "epochs_run": len(pd.read_csv(out / "metrics.csv")),
                                 "top1": result["top1"]})  # fmt: skip
    df = pd.DataFrame(rows)
    chance = 1 / result["n_way"]
    summary = (
        df.groupby(["selection", "alignment"])
        .agg(
            runs=("top1", "size"),
            top1_mean=("top1", "mean"),
            top1_sd=("top1", "std"),
            top1_min=("top1", "min"),
            kept_epoch_mean=("kept_epoch", "mean"),
            kept_epoch_min=("kept_epoch", "min"),
            near_chance_runs=("top1", lambda t: int((t < 5 * chance).sum())),
        )
        .round(3)
        .reset_index()
    )
    gain = df.pivot_table(index=["selection", "subject", "seed"], columns="alignment", values="top1")
    gain = (gain["aligned"] - gain["unaligned"]).groupby("selection").agg(["mean", "std", "min"])
    lines = [
        "# Model selection: validation loss vs validation top-1 (validation by concept)",
        "",
        f"- machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"Python {platform.python_version()}",
        f"- command: `python benchmarks/selection.py --cores {args.cores}`",
        f"- default world, subjects {cfg['datasets'][dataset]['subjects']}, seeds {args.seeds}, pair {pair['name']}, "
        f"intra-subject NICE, recipe {cfg['train']['recipes']['nice']}, validation by "
        f"{cfg['train']['val_split']}; {result['n_way']}-way test (chance {chance:.3f}); "
        f"near chance: top-1 below 5x chance",
        "",
        summary.to_markdown(index=False),
        "",
        "Aligned minus unaligned top-1, per subject x seed:",
        "",
        gain.round(3).to_markdown(),
        "",
        "Every run:",
        "",
        df.sort_values(["selection", "alignment", "subject", "seed"]).to_markdown(index=False),
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
