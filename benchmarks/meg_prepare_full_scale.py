"""Benchmark: preparing one full-scale THINGS-MEG participant, ours against the published way.

Generates a participant in ds004212's exact format at full size (27,048 epochs x 271 sensors x
281 samples, float32 on disk, about 8 GB in 4 parts, the real session/run/trial design; random
values: preparation's cost does not depend on them), then prepares it two ways, each in its own
process, measuring wall time and peak resident memory:

- ours: `visdecode.datasets.things_meg.prepare` (lazy chunked reading, the common HDF5 file);
- published (AlignVis's notebook): `mne.read_epochs(preload=True)`, every epoch's data as
  float64, the training and test arrays built per split in float64, pickled.

The published way needs about 16.5 GB for the preloaded epochs alone, so at full size it runs
under a memory cap (`--cap-gb`) and its failure is the result; both ways are also run side by
side on the first part only (a quarter of the participant), where both finish, for the speed
ratio. Writes benchmarks/results/meg_prepare_full_scale.md.

    python benchmarks/meg_prepare_full_scale.py [--root DIR] [--keep] [--cap-gb 20]
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FULL = dict(n_sessions=12, n_runs=10, n_train_concepts=1654, n_test_concepts=200, n_catch=200)

PUBLISHED = """
import pickle, sys
import mne, numpy as np
first, out = sys.argv[1], sys.argv[2]
epochs = mne.read_epochs(first, preload=True, verbose="error")
epochs.crop(0.0, 1.0)
data = epochs.get_data(copy=False)  # float64
meta = epochs.metadata
concept = meta.image_path.str.rsplit("/", n=1).str[-1].str.rsplit("_", n=1).str[0]
test_concepts = set(concept[meta.trial_type == "test"])
train = (meta.trial_type == "exp") & ~concept.isin(test_concepts)
test = meta.trial_type == "test"
splits = {
    "train": data[train.to_numpy()],  # float64, as published
    "test": data[test.to_numpy()],
}
with open(out, "wb") as f:
    pickle.dump(splits, f, protocol=4)
"""

OURS = """
import sys
from visdecode.datasets.things_meg import prepare
prepare.run(sys.argv[1], int(sys.argv[2]), sys.argv[3])
"""


def generate(root: Path, participant: int, n_parts: int, limit: int | None, design: dict) -> int:
    """The participant's files (epochs in `n_parts` parts, CSV); `limit`: its first epochs only."""
    from visdecode.datasets.things_meg import format as fmt
    from visdecode.datasets.things_meg import synth

    cfg = synth.WorldConfig(**design)
    table = synth.schedule(cfg, synth.image_table(cfg), participant)
    events = synth.events(cfg, table, participant)
    if limit:
        table, events = table.iloc[:limit].reset_index(drop=True), events[:limit]
    info = fmt.make_info()

    def data(a: int, b: int) -> np.ndarray:
        rng = np.random.default_rng([participant, a])
        return rng.standard_normal((b - a, len(info["ch_names"]), fmt.N_TIMES), dtype=np.float32)

    first = fmt.epochs_path(root, participant)
    synth.write_epochs(first, info, events, table, data, n_parts)
    csv = fmt.attributes_path(root, participant)
    csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv, index=False)
    return len(table)


WATCH = """
import resource, subprocess, sys, time
cap = float(sys.argv[1])
def limit():
    if cap:
        resource.setrlimit(resource.RLIMIT_AS, (int(cap * 2**30),) * 2)
start = time.perf_counter()
done = subprocess.run([sys.executable, "-c", *sys.argv[2:]], preexec_fn=limit,
                      capture_output=True, text=True)
wall = time.perf_counter() - start
sys.stderr.write(done.stderr)
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)
"""


def measure(code: str, *args: str, cap_gb: float | None = None) -> dict:
    """Wall time, peak RSS and exit status of `code` in a fresh Python process (watched by a
    fresh process of its own, so the peak is that run's alone)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, "-c", WATCH, str(cap_gb or 0), code, *args], env=env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    wall, peak_kib, rc = done.stdout.split()
    error = (done.stderr.strip().splitlines() or ["killed, no message"])[-1] if int(rc) else ""
    return {"seconds": float(wall), "peak_gb": int(peak_kib) / 2**20, "ok": int(rc) == 0,
            "error": error}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", help="work folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--cap-gb", type=float, default=20.0, help="memory cap of the published way")
    ap.add_argument(
        "--out", default=str(REPO / "benchmarks" / "results" / "meg_prepare_full_scale.md")
    )
    ap.add_argument("--quick", action="store_true", help="a small design, to try the script")
    args = ap.parse_args()
    design = dict(FULL, n_sessions=2, n_runs=2, n_train_concepts=60, n_test_concepts=20,
                  n_catch=5) if args.quick else FULL  # fmt: skip
    total = design["n_sessions"] * (
        design["n_train_concepts"] + 2 * design["n_test_concepts"] + design["n_catch"]
    )
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="visdecode-meg-"))
    rows = []
    try:
        for label, limit, n_parts in (("a quarter (first part)", total // 4, 1),
                                      ("full participant", None, 4)):  # fmt: skip
            data = root / label.split()[0]
            start = time.perf_counter()
            n = generate(data, 1, n_parts, limit, design)
            size = sum(p.stat().st_size for p in data.rglob("*.fif")) / 1e9
            made = time.perf_counter() - start
            # each run reads files the page cache may hold: ours first, then published, then ours
            ours = [measure(OURS, str(data), "1", str(data / f"ours{i}.h5")) for i in (0,)]
            cap = args.cap_gb if limit is None else None
            published = measure(PUBLISHED, str(data / "derivatives/preprocessed/preprocessed_P1-epo.fif"),
                                str(data / "published.pkl"), cap_gb=cap)  # fmt: skip
            ours.append(measure(OURS, str(data), "1", str(data / "ours1.h5")))
            slow = max(ours, key=lambda r: r["seconds"])
            rows.append((label, n, n_parts, size, made, ours, published, slow))
            if not args.keep:
                shutil.rmtree(data)
    finally:
        if not args.keep and not args.root:
            shutil.rmtree(root, ignore_errors=True)

    lines = [
        "# THINGS-MEG preparation of one participant: ours vs the published way",
        "",
        f"- machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}",
        "- command: `python benchmarks/meg_prepare_full_scale.py`",
        f"- the published way's memory cap at full size: {args.cap_gb:g} GB (RLIMIT_AS)",
        "",
        "| input | epochs | parts | GB on disk | ours: s (two runs) | ours: peak GB | "
        "published: s | published: peak GB | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, n, n_parts, size, _, ours, pub, slow in rows:
        speed = f"{pub['seconds'] / slow['seconds']:.1f}x" if pub["ok"] else "-"
        pub_s = f"{pub['seconds']:.1f}" if pub["ok"] else f"failed after {pub['seconds']:.0f} s"
        times = " / ".join(f"{r['seconds']:.1f}" for r in ours)
        peak = max(r["peak_gb"] for r in ours)
        lines.append(
            f"| {label} | {n} | {n_parts} | {size:.2f} | {times} | {peak:.2f} | {pub_s} | "
            f"{pub['peak_gb']:.2f} | {speed} |"
        )
    failed = [r for r in rows if not r[6]["ok"]]
    for label, *_, pub, _ in failed:
        lines += ["", f"The published way on the {label}: `{pub['error'][:200]}`."]
    lines += [
        "",
        "Peak memory is the process's maximum resident set (ru_maxrss). The speed-up compares "
        "the slower of our two runs with the published run on the same files.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
