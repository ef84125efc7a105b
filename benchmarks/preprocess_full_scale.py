"""Benchmark: preprocessing one full-size THINGS-EEG2 subject, ours vs the published steps.

1. Generates one subject at the real scale in the real format (4 sessions; 16,540 training
   images x 4 repetitions; 200 test images x 80; 63 channels at 1000 Hz; ~9 GB float64).
2. Times, each in its own process under GNU time (wall time, peak RSS):
   - ours on the whole subject (`visdecode preprocess`);
   - ours on session 1 only (`--sessions 1`), before and after the published steps (the
     machine's speed drifts; the slower run is compared);
   - the plain published implementation (tests/published.py: MNE epochs and resampling,
     sklearn's Ledoit-Wolf in loops, scipy's matrix power) on session 1, the same input.
3. Writes benchmarks/results/preprocess_full_scale.md.

    python benchmarks/preprocess_full_scale.py [--root DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FULL = dict(
    seed=0, n_subjects=1, n_train_concepts=1654, images_per_concept=10, n_test_concepts=200
)

PUBLISHED = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
import published
from visdecode.datasets.things_eeg2 import format as fmt
from visdecode.datasets.things_eeg2 import preprocess
params = preprocess.Params()
parts = []
for part, reps in (("training", params.train_reps), ("test", params.test_reps)):
    codes, data, times = published.epoch_partition(fmt.raw_path({root!r}, 1, 1, part), params, reps)
    parts.append(data)
parts = published.mvnn(parts, params.mvnn, params.cov_fit)
print("published shapes", [p.shape for p in parts])
"""


def timed(cmd: list[str], label: str) -> dict:
    """Run cmd under GNU time; return wall seconds and peak RSS (GB)."""
    fmt_file = Path(f"/tmp/visdecode-time-{os.getpid()}.txt")
    start = time.perf_counter()
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(fmt_file), *cmd], check=True)
    wall = time.perf_counter() - start
    rss_gb = int(fmt_file.read_text().split()[-1]) / 1024**2
    fmt_file.unlink()
    print(f"{label}: {wall:.1f} s, peak RSS {rss_gb:.2f} GB", flush=True)
    return {"label": label, "wall_s": wall, "peak_rss_gb": rss_gb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/visdecode-full-scale")
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/preprocess_full_scale.md"))
    args = ap.parse_args()
    root = Path(args.root)
    if not shutil.which("/usr/bin/time"):
        sys.exit("GNU time (/usr/bin/time) is needed: apt-get install time")

    from visdecode.datasets.things_eeg2 import synth
    from visdecode.datasets.things_eeg2 import format as fmt

    cfg = synth.WorldConfig.from_dict(FULL)
    if not fmt.raw_path(root, 1, 4, "test").is_file():
        t0 = time.perf_counter()
        synth.write_images_atomic(root, cfg, render=False)
        synth.write_subject(root, 1, cfg)
        print(f"generated in {time.perf_counter() - t0:.0f} s", flush=True)
    sizes = {p.name + "/" + p.parent.name: p.stat().st_size for p in (root / "raw_eeg").rglob("*.npy")}
    largest = max(sizes.values()) / 1024**3
    total = sum(sizes.values()) / 1024**3

    visdecode = [sys.executable, "-m", "visdecode.cli", "preprocess", "--raw-dir", str(root),
                 "--subject", "1"]  # fmt: skip
    one_session = [*visdecode, "--out", str(root / "ours-1session.h5"), "--sessions", "1"]
    rows = [  # ours on session 1 before and after the published steps: the machine's speed
        # drifts over minutes, and the slower of the two runs is the one compared
        timed(one_session, "ours, session 1 (before)"),
        timed([sys.executable, "-c", PUBLISHED.format(tests=str(REPO / "tests"), root=str(root))],
              "published, session 1"),  # fmt: skip
        timed(one_session, "ours, session 1 (after)"),
        timed([*visdecode, "--out", str(root / "ours-subject.h5")], "ours, whole subject"),
    ]
    pub1, ours4 = rows[1], rows[3]
    ours1 = max(rows[0], rows[2], key=lambda r: r["wall_s"])
    out_size = (root / "ours-subject.h5").stat().st_size / 1024**3
    lines = [
        "# Preprocessing one full-size THINGS-EEG2 subject",
        "",
        f"- machine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}; synthetic subject in the real format, 4 sessions, "
        f"raw {total:.1f} GB float64, largest session file {largest:.2f} GB",
        "- each step in its own process; wall time and peak resident memory (GNU time)",
        "",
        "| step | wall (s) | peak RSS (GB) | peak RSS / largest raw file |",
        "|---|---:|---:|---:|",
        *[
            f"| {r['label']} | {r['wall_s']:.1f} | {r['peak_rss_gb']:.2f} | "
            f"{r['peak_rss_gb'] / largest:.2f} |"
            for r in rows
        ],
        "",
        f"- same input (session 1, both partitions, epochs + MVNN), ours' slower run: ours is "
        f"**{pub1['wall_s'] / ours1['wall_s']:.1f}x faster** (target: 20x) and uses "
        f"{pub1['peak_rss_gb'] / ours1['peak_rss_gb']:.1f}x less memory than the published steps",
        f"- peak memory, whole subject: {ours4['peak_rss_gb'] / largest:.2f}x the largest raw "
        "session file (target: at most 1.5x); one raw file is open at a time and only a block "
        f"of its samples is in memory; threads: {os.cpu_count()} (the default, every CPU)",
        f"- whole subject: {ours4['wall_s']:.0f} s; the published steps, extrapolated from "
        f"one session x 4 (not run: it would need ~4x the time), ~{4 * pub1['wall_s']:.0f} s "
        "before the session merge",
        f"- output {out_size:.2f} GB float32 (published: float64 pickles, ~10 GB)",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    for f in ("ours-1session.h5", "ours-subject.h5"):
        (root / f).unlink(missing_ok=True)
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
