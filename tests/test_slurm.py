"""The pipeline through `snakemake --profile profiles/slurm` on a real single-node SLURM cluster
(Debian's slurmctld, slurmd and munge, started by .ci/slurm_cluster.sh without systemd, with a
GPU declared as a generic resource): every job but the targets runs as a SLURM job, GPU requests
are granted, memory requests follow the data, and the results equal a local run of the same
config. The fixture installs the packages where they are missing (root, apt) and stops exactly
the daemons it started."""

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from test_workflow import EEG, REPO, tiny_config

SCRIPT = REPO / ".ci" / "slurm_cluster.sh"
TARGETS = ["results/tables/retrieval.csv", "results/tables/stats.csv"]
LOCAL_RULES = {"all"}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    r = subprocess.run([str(SCRIPT), "install"], capture_output=True, text=True)
    assert r.returncode == 0, f"installing SLURM failed: {r.stderr[-2000:]}"
    folder = tmp_path_factory.mktemp("slurm")
    before = set(subprocess.run(["pgrep", "-f", "munged|slurmctld|slurmd"],
                                capture_output=True, text=True).stdout.split())  # fmt: skip
    r = subprocess.run([str(SCRIPT), "start", str(folder)], capture_output=True, text=True)
    pidfiles = [folder / "munge" / "munged.pid", folder / "slurmctld.pid", folder / "slurmd.pid"]
    pids = [int(p.read_text()) for p in pidfiles if p.exists()]
    try:
        assert r.returncode == 0, r.stderr[-3000:]
        assert len(pids) == 3 and all(alive(p) for p in pids)
        path = f"{folder / 'bin'}:{os.environ['PATH']}"
        yield {**os.environ, "SLURM_CONF": str(folder / "slurm.conf"), "PATH": path}
    finally:
        subprocess.run([str(SCRIPT), "stop", str(folder)], check=True)
        assert not [p for p in pids if alive(p)]
        after = set(subprocess.run(["pgrep", "-f", "munged|slurmctld|slurmd"],
                                   capture_output=True, text=True).stdout.split())  # fmt: skip
        assert after <= before  # nothing of ours left; daemons that were there before untouched


def config() -> dict:
    cfg = tiny_config()
    cfg.update(decode=[EEG], seeds=[7])  # the EEG world alone keeps it under 10 minutes
    cfg["datasets"][EEG]["regimes"] = ["intra"]
    cfg["figures"]["attribution_regime"] = "intra"
    cfg["resources"]["gpu"] = 1  # embed and train ask SLURM for a GPU
    cfg["train"]["recipes"]["nice"].update(epochs=4, patience=4)  # under 10 minutes in all
    return cfg


def workdir(path: Path) -> Path:
    (path / "config").mkdir(parents=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config()))
    return path


def command(path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(path), "--configfile", str(path / "config/config.yaml"),
            *args, *TARGETS]  # fmt: skip


def run(path: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(command(path, *args), capture_output=True, text=True, cwd=path, env=env)


def test_slurm_profile_matches_a_local_run(cluster, tmp_path):
    # the shipped profile with its placeholders filled in, and quicker status checks
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    text = yaml.safe_dump(profile)
    assert text.count("your_account") == 1 and "your_partition" in text
    profile["default-resources"].update(slurm_account="ci", slurm_partition="debug")
    for rule in profile["set-resources"].values():
        rule["slurm_partition"] = "debug"
    profile.update({"slurm-init-seconds-before-status-checks": 2, "latency-wait": 5,
                    "max-status-checks-per-second": 10})  # fmt: skip
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))

    # the local run goes on while the SLURM jobs wait for the scheduler's status checks
    local = workdir(tmp_path / "local")
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    with (tmp_path / "local.log").open("w") as log:
        local_run = subprocess.Popen(command(local, "--cores", "2"), stdout=log,
                                     stderr=subprocess.STDOUT, cwd=local, env=env)  # fmt: skip
        try:
            remote = workdir(tmp_path / "slurm")
            done = run(remote, "--profile", str(tmp_path / "profile"), env=cluster)
        finally:
            local_run.wait()
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert local_run.returncode == 0, (tmp_path / "local.log").read_text()[-3000:]

    # every job ran as a SLURM job, and each one completed
    ids = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", done.stderr)
    jobs = re.findall(r"^(?:local)?rule (\w+):", done.stderr, re.MULTILINE)
    remote_jobs = Counter(j for j in jobs if j not in LOCAL_RULES)
    world = "things_eeg2_synthetic"
    assert remote_jobs == {f"synth_images_{world}": 1, f"synth_encoders_{world}": 1, f"synth_eeg_{world}": 2,
                           "things_eeg2_image_set": 1, "embed": 1, "derive_embeddings": 1,
                           "things_eeg2_preprocess": 2, "train": 4, "evaluate": 4, "retrieval_table": 1,
                           "stats_table": 1}  # fmt: skip
    assert len(ids) == sum(remote_jobs.values())
    shown = {}
    for job_id in ids:
        out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True,
                             text=True, env=cluster).stdout  # fmt: skip
        fields = dict(re.findall(r"(\w+)=(\S+)", out))
        assert fields.get("JobState") == "COMPLETED", (job_id, out)
        shown[fields["JobName"], job_id] = fields
    by_rule = {}
    for (_, job_id), fields in shown.items():
        comment = fields.get("Comment", "")
        rule = re.match(r"rule_(\w+?)_wildcards|rule_(\w+)", comment)
        by_rule.setdefault(next(g for g in rule.groups() if g) if rule else "?", []).append(fields)
    # GPUs asked for by embedding and training, and granted: SLURM exported the allocated
    # GPU's index to the job, which the job's log shows; no GPU asked for elsewhere
    for rule in ("embed", "train"):
        assert by_rule.get(rule), f"no SLURM job for rule {rule}: {sorted(by_rule)}"
        assert all(f.get("TresPerJob") == "gres:gpu:1" for f in by_rule[rule]), by_rule[rule]
    for rule in ("things_eeg2_preprocess", "evaluate", f"synth_eeg_{world}", "derive_embeddings"):
        assert all("gpu" not in f.get("TresPerJob", "") for f in by_rule[rule])
    logs = [*(remote / "logs/embed").rglob("*.log"), *(remote / "logs/train").rglob("*.log")]
    assert len(logs) == 5  # one embed (the gLocal encoder is derived from its cache), 4 train
    for path in logs:
        assert "cpu (CUDA_VISIBLE_DEVICES=0)" in path.read_text(), path
        local_log = (local / path.relative_to(remote)).read_text()
        assert "cpu (CUDA_VISIBLE_DEVICES=unset)" in local_log, path
    # one CPU per thread of the rule (prepare.threads is 2 in the config)
    assert all(f["NumCPUs"] == "2" for f in by_rule["things_eeg2_preprocess"])
    # memory follows the data: preprocessing asks 1.3x its largest raw file plus 1 GB
    raw = sorted((remote / "data/things-eeg2-synthetic/raw_eeg/sub-01").rglob("*.npy"))
    want = int(1.3 * max(p.stat().st_size for p in raw) / 1e6 + 1000)
    mems = sorted(f["MinMemoryNode"] for f in by_rule["things_eeg2_preprocess"])
    assert f"{want}M" in mems, (want, mems)
    # and evaluation 0.85x the subject's preprocessed file plus 1 GB
    sizes = [(remote / f"results/preprocessed/things-eeg2-synthetic/sub-{s}.h5").stat().st_size
             for s in ("01", "02")]  # fmt: skip
    want = sorted(f"{int(0.85 * size / 1e6 + 1000)}M" for size in sizes for _ in range(2))
    assert sorted(f["MinMemoryNode"] for f in by_rule["evaluate"]) == want

    # the same results as the local run
    a = pd.read_csv(remote / "results/tables/retrieval.csv")
    b = pd.read_csv(local / "results/tables/retrieval.csv")
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(pd.read_csv(remote / TARGETS[1]), pd.read_csv(local / TARGETS[1]))
    for sub in ("01", "02"):
        rel = f"results/preprocessed/things-eeg2-synthetic/sub-{sub}.h5"
        with h5py.File(remote / rel) as f, h5py.File(local / rel) as g:
            np.testing.assert_array_equal(f["train"][:], g["train"][:])
    runs = sorted((local / "results/runs").rglob("metrics.csv"))
    assert len(runs) == 4
    for path in runs:
        m = pd.read_csv(path).drop(columns="seconds")
        m_remote = pd.read_csv(remote / path.relative_to(local)).drop(columns="seconds")
        pd.testing.assert_frame_equal(m, m_remote)
        assert len(m) == 4
