"""The whole workflow, end to end, on a tiny synthetic config in a temporary directory."""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FIGURE = "results/figures/retrieval_aligned_vs_unaligned.png"


def tiny_config() -> dict:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["synthetic"]["world"].update(
        n_train_concepts=60,
        n_test_concepts=20,
        test_reps_per_session=5,
        signal_uv=10.0,
        n_alignment_images=200,
        n_triplets=5000,
    )
    cfg["preprocess"]["test_reps"] = 5
    cfg["seeds"] = [7]
    cfg["train"]["recipes"]["nice"].update(epochs=15, patience=15)
    cfg["train"]["threads"] = 1
    return cfg


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(workdir / "config" / "config.yaml"),
        "--cores", "2", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "config").mkdir()
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    done = snakemake(workdir, FIGURE)  # the single-figure target builds what it needs
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def test_outputs_and_shapes(finished):
    cfg = tiny_config()
    with h5py.File(finished / "results/preprocessed/things-eeg2-synthetic/sub-01.h5") as f:
        assert f["train"].shape == (600, 4, 63, 250) and f["train"].dtype == np.float32
        assert f["test"].shape == (20, 20, 63, 250)
        assert len(f["ch_names"]) == 63 and f["times"].shape == (250,)
    for enc in ("synth_resnet18", "synth_resnet18_glocal"):
        with h5py.File(finished / f"results/embeddings/things-eeg2-synthetic/{enc}.h5") as f:
            assert f["train"].shape == (600, 512) and f["test"].shape == (20, 512)
            assert f.attrs["encoder"] == enc and len(f.attrs["weights_sha256"]) == 64
    run = finished / "results/runs/things-eeg2-synthetic/intra/sub-02/nice/synth_resnet18/seed-7"
    metrics = pd.read_csv(run / "metrics.csv")
    assert len(metrics) == cfg["train"]["recipes"]["nice"]["epochs"]
    assert {"train_loss", "val_loss", "val_top1", "temperature", "lr", "seconds"} <= set(metrics)
    assert (finished / "logs/preprocess/things-eeg2-synthetic/sub-01.log").stat().st_size > 0


def test_retrieval_table_is_tidy_and_above_chance(finished):
    table = pd.read_csv(finished / "results/tables/retrieval.csv")
    assert list(table.columns) == [
        "dataset", "regime", "subject", "brain_encoder", "image_encoder", "alignment", "pair",
        "seed", "n_way", "top1", "top5",
    ]  # fmt: skip
    assert len(table) == 2 * 2 * 2 * 1  # regimes x subjects x image encoders x seeds
    assert table.groupby("regime").size().to_dict() == {"inter": 4, "intra": 4}
    assert set(table.alignment) == {"aligned", "unaligned"}
    assert (table.n_way == 20).all()
    chance_top5 = 5 / 20
    assert table.top5.mean() > 2 * chance_top5
    assert table.top1.mean() > 3 * (1 / 20)


def test_leave_one_subject_out_trains_on_the_others_only(finished):
    runs = finished / "results/runs/things-eeg2-synthetic"
    for held_out, other in (("01", "02"), ("02", "01")):
        run = runs / f"inter/sub-{held_out}/nice/synth_resnet18_glocal/seed-7"
        info = yaml.safe_load((run / "config.yaml").read_text())
        assert info["regime"] == "inter" and info["test_subject"] == int(held_out)
        assert info["brains"] == [f"results/preprocessed/things-eeg2-synthetic/sub-{other}.h5"]
        result = yaml.safe_load((run / "retrieval.json").read_text())
        assert result["subject"] == int(held_out) and result["regime"] == "inter"


def test_figure_is_a_real_image(finished):
    with Image.open(finished / FIGURE) as img:
        assert img.format == "PNG" and img.width > 500 and img.height > 400
        pixels = np.asarray(img.convert("L"), dtype=float)
    assert pixels.std() > 10  # not blank


def test_second_call_has_nothing_to_do(finished):
    again = snakemake(finished, FIGURE, "--dry-run")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
