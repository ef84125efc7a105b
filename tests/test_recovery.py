"""A run killed mid-way (SIGKILL: a crash, the out-of-memory killer, a lost node), then started
again as the README says: Snakemake refuses on its stale lock, `--unlock` clears it, and the
rerun finishes what was left (jobs cut short are rerun: profiles/default has rerun-incomplete)
with tables equal to an uninterrupted run's."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from test_workflow import EEG, REPO, tiny_config

TABLES = ["results/tables/retrieval.csv", "results/tables/summary.csv", "results/tables/stats.csv"]


def workdir(path: Path) -> Path:
    cfg = tiny_config()
    cfg["decode"] = [EEG]
    cfg["datasets"][EEG]["regimes"] = ["intra"]
    cfg["train"]["recipes"]["nice"].update(epochs=4, patience=4)
    (path / "config").mkdir(parents=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return path


def command(path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(path), "--configfile", str(path / "config/config.yaml"),
            "--cores", "2", *args]  # fmt: skip


def run(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(path, *args, *TABLES), capture_output=True, text=True, cwd=path)


def test_killed_run_unlocks_and_finishes_as_if_never_killed(tmp_path):
    reference = workdir(tmp_path / "reference")
    done = run(reference)
    assert done.returncode == 0, done.stderr[-3000:]

    crashed = workdir(tmp_path / "crashed")
    shutil.copytree(reference / "data", crashed / "data")  # the same world, made once
    with (tmp_path / "killed.log").open("w") as log:
        job = subprocess.Popen(command(crashed, *TABLES), stdout=log, stderr=subprocess.STDOUT,
                               cwd=crashed, start_new_session=True)  # fmt: skip
        training = crashed / "logs" / "train"
        deadline = time.monotonic() + 600
        while not (training.exists() and any(training.rglob("*.log"))):  # a model is training
            assert job.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no training job started within 10 minutes"
            time.sleep(0.5)
        time.sleep(2)
        os.killpg(job.pid, signal.SIGKILL)  # Snakemake and its running jobs, with no warning
        job.wait()
    assert not (crashed / TABLES[0]).exists()
    assert list((crashed / ".snakemake" / "locks").iterdir())  # the lock outlives the crash
    incomplete = crashed / ".snakemake" / "incomplete"
    assert incomplete.is_dir() and any(incomplete.iterdir())  # a job was cut short

    again = run(crashed)
    assert again.returncode != 0
    assert "Directory cannot be locked" in again.stdout + again.stderr
    unlocked = subprocess.run(command(crashed, "--unlock"), capture_output=True, text=True,
                              cwd=crashed)  # fmt: skip
    assert unlocked.returncode == 0, unlocked.stderr[-2000:]
    finished = run(crashed)
    assert finished.returncode == 0, finished.stderr[-3000:]
    for table in TABLES:
        pd.testing.assert_frame_equal(pd.read_csv(crashed / table), pd.read_csv(reference / table))
