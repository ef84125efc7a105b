"""Benchmark: the positive, null-alignment and permutation controls, through the workflow.

Runs the repository's Snakefile twice from nothing, each in a fresh working directory, on the
default configuration with more seeds (the paper's five) and only the tables as targets:

- the planted world (`synthetic.world.human_judgements: perceptual`, the default) with both
  workflow controls on (`controls.permutation` and `controls.null_alignment`): the positive
  control (aligned minus unaligned top-1), the permutation control and the random-direction
  null (results/tables/controls.csv);
- the null world (`human_judgements: nuisance`): the same images and EEG, the simulated humans
  judging by the clutter the EEG does not carry; alignment must not help.

Writes benchmarks/results/controls.md: per regime, the aligned and unaligned top-1 (mean over
subjects x seeds), their paired difference with its run-to-run standard deviation, the paired
t-test over subjects (stats.csv), and the permutation runs against the central 99% interval of
chance. The thresholds of tests/test_controls.py come from these numbers.

    python benchmarks/controls.py [--cores N] [--seeds 7 42 ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

EEG = "things-eeg2-synthetic"
REPO = Path(__file__).resolve().parents[1]
TABLES = ["results/tables/retrieval.csv", "results/tables/stats.csv"]


def workflow(work: Path, cfg: dict, targets: list[str], cores: str) -> float:
    if work.exists():
        shutil.rmtree(work)
    (work / "config").mkdir(parents=True)
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(work), "--configfile", str(work / "config" / "config.yaml"),
        "--cores", cores, *targets,
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def paired(work: Path) -> pd.DataFrame:
    """Per regime: aligned and unaligned top-1 and their per-run paired difference."""
    table = pd.read_csv(work / "results" / "tables" / "retrieval.csv")
    stats = pd.read_csv(work / "results" / "tables" / "stats.csv")
    rows = []
    for regime, d in table.groupby("regime"):
        wide = d.pivot_table(index=["subject", "seed"], columns="alignment", values="top1")
        diff = wide["aligned"] - wide["unaligned"]
        t = stats[(stats.regime == regime) & (stats.metric == "top1")].iloc[0]
        rows.append(
            {
                "regime": regime,
                "runs": len(diff),
                "aligned": wide["aligned"].mean(),
                "unaligned": wide["unaligned"].mean(),
                "difference": diff.mean(),
                "difference sd (runs)": diff.std(ddof=1),
                "smallest difference": diff.min(),
                "largest difference": diff.max(),
                "t-test p (subjects)": t.t_p,
            }
        )
    return pd.DataFrame(rows).round(4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", default="all")
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 42, 191, 2025, 96723])
    ap.add_argument("--keep", help="run in this directory and keep it (default: a temp dir)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "controls.md"))
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="visdecode-controls-"))
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    base["seeds"] = args.seeds
    base["decode"] = [EEG]  # the controls are measured on the synthetic EEG world
    eeg = base["datasets"][EEG]

    planted = {**base, "controls": {"permutation": True, "null_alignment": True}}
    null = yaml.safe_load(yaml.safe_dump(base))
    null["datasets"][EEG]["world"]["human_judgements"] = "nuisance"
    walls = {
        "planted": workflow(root / "planted", planted,
                            [*TABLES, "results/tables/controls.csv"], args.cores),
        "null": workflow(root / "null", null, TABLES, args.cores),
    }  # fmt: skip
    positive, negative = paired(root / "planted"), paired(root / "null")
    controls = pd.read_csv(root / "planted" / "results" / "tables" / "controls.csv")
    controls = controls[
        ["control", "regime", "image_encoder", "reference", "n_runs", "n_queries", "n_way",
         "top1", "reference_top1", "difference", "chance_low", "chance_high", "p", "verdict"]
    ]  # fmt: skip

    world = eeg["world"]
    lines = [
        "# Controls benchmark: positive, null alignment, permutation (through the workflow)",
        "",
        f"- machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"Python {platform.python_version()}",
        f"- command: `python benchmarks/controls.py --cores {args.cores}`",
        f"- default world ({world['n_train_concepts']} x {world['images_per_concept']} training "
        f"images, {world['n_test_concepts']} test images), subjects {eeg['subjects']}, seeds "
        f"{args.seeds}, brain encoder {eeg['brain_encoders']}, regimes {eeg['regimes']}, "
        f"recipe {base['train']['recipes']['nice']}, validation by "
        f"{base['train']['val_split']}, selection by {base['train']['selection']}",
        f"- wall time: planted world with the permutation control {walls['planted']:.0f} s, "
        f"null world {walls['null']:.0f} s",
        "",
        "Top-1 of 100-way retrieval (fractions; chance 0.01). Difference: aligned minus "
        "unaligned, per run (subject x seed), then averaged.",
        "",
        "## Positive control: the planted world",
        "",
        positive.to_markdown(index=False),
        "",
        "## Null-alignment control: `human_judgements: nuisance`",
        "",
        negative.to_markdown(index=False),
        "",
        "## Permutation and random-direction controls (results/tables/controls.csv)",
        "",
        "`controls.permutation: true` (reference: chance; passes inside the central 99% "
        "interval, Bonferroni-widened over the rows) and `controls.null_alignment: true` "
        "(null_synth_resnet18_glocal, the aligned transform's directions randomised, against "
        "the unaligned encoder; passes when not better, fails when better with one-sided "
        "paired p < 0.05, else undetermined).",
        "",
        controls.round(4).to_markdown(index=False),
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
