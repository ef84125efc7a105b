"""Benchmark: the test suite's peak disk use, sampled while it runs.

Runs `python -m pytest` (what CI runs) with its temporary directory in a fresh folder and,
every second, measures (a) the bytes that folder holds on disk and (b) how much the free
space of its file system has dropped since the start (which also counts what the tests write
elsewhere, and anything else the machine writes meanwhile). Writes the peaks, what is left at
the end and the suite's result to benchmarks/results/suite_disk.md.

    python benchmarks/suite_disk.py [--interval S] [-- PYTEST ARGS]
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

REPO = Path(__file__).resolve().parents[1]


def disk_bytes(folder: Path) -> int:
    """Bytes the files under `folder` take on disk (allocated blocks, as `du`)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:  # removed while we walked
                pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "suite_disk.md"))
    ap.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="visdecode-suite-disk-"))
    basetemp = work / "basetemp"
    cmd = [sys.executable, "-m", "pytest", "-q", f"--basetemp={basetemp}", *args.pytest_args]
    used0 = shutil.disk_usage(work).used
    peak_tmp = peak_fs = 0
    start = time.perf_counter()
    with open(work / "pytest.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            peak_tmp = max(peak_tmp, disk_bytes(basetemp))
            peak_fs = max(peak_fs, shutil.disk_usage(work).used - used0)
            time.sleep(args.interval)
    seconds = time.perf_counter() - start
    left = disk_bytes(basetemp)
    summary = (work / "pytest.log").read_text().strip().splitlines()[-1]
    shutil.rmtree(work)
    gib = 2**30
    text = f"""# Test suite: peak disk use

`python benchmarks/suite_disk.py` ran `{" ".join(["python -m pytest", *args.pytest_args])}`
(with `--basetemp` in a fresh folder) and sampled its disk use every {args.interval:g} s.

| measure | value |
|---|---:|
| peak size of pytest's temporary directory | {peak_tmp / gib:.2f} GiB |
| peak drop in free space of its file system | {peak_fs / gib:.2f} GiB |
| left in it at the end (session-wide fixtures) | {left / 2**20:.0f} MiB |
| suite wall time | {seconds / 60:.1f} min |

pytest said: `{summary}`

A passed test's `tmp_path` is removed when the test ends (`tmp_path_retention_policy =
"failed"` in pyproject.toml); a failed test's is kept. Session-wide fixtures are removed at
the end of a passing run when pytest chose the folder itself (without `--basetemp`). Machine: {platform.node()},
{os.cpu_count()} CPUs, Python {platform.python_version()}. Samples can miss a peak shorter
than the interval; the file-system figure also counts other writers on the machine.
"""
    Path(args.out).write_text(text)
    print(text)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
