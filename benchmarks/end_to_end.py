"""Benchmark: the default workflow from nothing, `snakemake --cores all`, wall time and results.

Runs the repository's Snakefile with the default config in a fresh working directory (nothing
cached), then writes the wall time, each rule's time (from its benchmark file) and the
retrieval summary to benchmarks/results/end_to_end.md.

    python benchmarks/end_to_end.py [--cores N] [--keep DIR]
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

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", default="all")
    ap.add_argument("--keep", help="run in this directory and keep it (default: a temp dir)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "end_to_end.md"))
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="visdecode-e2e-"))
    if work.exists():
        shutil.rmtree(work)
    (work / "config").mkdir(parents=True)
    shutil.copy(REPO / "config" / "config.yaml", work / "config" / "config.yaml")
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(work), "--cores", args.cores,
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([*cmd, "--report", "results/report.html"], check=True)
    report_s = time.perf_counter() - start
    report_mb = (work / "results" / "report.html").stat().st_size / 1e6

    rules = []
    for tsv in sorted((work / "results" / "benchmarks").rglob("*.tsv")):
        row = pd.read_csv(tsv, sep="\t").iloc[0]
        rel = tsv.relative_to(work / "results" / "benchmarks")
        rules.append({"job": str(rel.with_suffix("")), "s": row["s"], "max_rss_mb": row["max_rss"]})
    table = pd.read_csv(work / "results" / "tables" / "retrieval.csv")
    summary = (
        table.groupby(["dataset", "n_way", "regime", "pair", "brain_encoder", "alignment"])[
            ["top1", "top5"]
        ]
        .agg(["mean", "std"])
        .mul(100)
        .round(1)
    )
    ways = table.groupby("dataset").n_way.first()
    ways_text = "; ".join(f"{d}: {n}-way, chance top-1 {100 / n:.1f}%" for d, n in ways.items())
    lines = [
        "# End-to-end benchmark: `snakemake --cores all` on the default (synthetic) config",
        "",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        f"- cores given to Snakemake: {args.cores}",
        f"- **wall time: {wall:.0f} s ({wall / 60:.1f} min)**, from an empty working directory",
        f"- then `snakemake --report results/report.html`: {report_s:.0f} s, {report_mb:.1f} MB",
        f"- runs: {len(table)} rows in results/tables/retrieval.csv; {ways_text}",
        "",
        "## Retrieval (%; mean and s.d. over subjects and seeds), per data set",
        "",
        summary.to_markdown(),
        "",
        "## Aligned vs unaligned: paired tests over subjects (results/tables/stats.csv)",
        "",
        "The headline figure's stars are `figures.significance_test`'s corrected p.",
        "",
        pd.read_csv(work / "results" / "tables" / "stats.csv")[
            ["dataset", "regime", "brain_encoder", "pair", "metric", "n_subjects",
             "mean_difference", "t", "t_p", "t_p_corrected", "wilcoxon_p_corrected"]
        ].to_markdown(index=False),
        "",
        "## Jobs (Snakemake benchmark files)",
        "",
        pd.DataFrame(rules).to_markdown(index=False, floatfmt=".1f"),
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
