"""The whole workflow, end to end, on a tiny synthetic config in a temporary directory."""

import re
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
    cfg["seeds"] = [7]
    cfg["train"]["recipes"]["nice"].update(epochs=15, patience=15)
    cfg["train"]["threads"] = 1
    cfg["figures"]["dpi"] = 100
    return cfg


def snakemake(workdir: Path, *args: str, config: str = "config.yaml") -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(workdir / "config" / config),
        "--cores", "2", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)


def job_counts(log: str) -> dict[str, int]:
    """The first "Job stats" table of a Snakemake log: rule -> number of jobs."""
    table = log.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def variant(workdir: Path, name: str, change) -> str:
    """A copy of the tiny config with `change(cfg)` applied, as config/<name>.yaml."""
    cfg = tiny_config()
    change(cfg)
    (workdir / "config" / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return f"{name}.yaml"


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
        "dataset", "modality", "regime", "subject", "brain_encoder", "image_encoder",
        "alignment", "pair", "seed", "n_way", "top1", "top5",
    ]  # fmt: skip
    assert set(table.modality) == {"eeg"}  # as the preprocessing recorded it
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


# pixel sizes at dpi 100 for 2 regimes x 1 brain encoder x 1 pair (layouts in figures.py)
FIGURE_SIZES = {
    "retrieval_aligned_vs_unaligned": (720, 520),
    "retrieval_per_subject": (720, 720),
    "temporal_importance": (720, 240),
    "spectral_importance": (720, 240),
    "spatial_importance": (720, 250),
    "topk_retrieval": (720, 540),  # 5.41 inches, truncated
    "training_curves": (720, 460),
}


@pytest.fixture(scope="module")
def complete(finished) -> Path:
    done = snakemake(finished)  # the default target: every table and figure
    assert done.returncode == 0, done.stderr[-3000:]
    done = snakemake(finished, "--report", "results/report.html")
    assert done.returncode == 0, done.stderr[-3000:]
    return finished


def test_figure_is_a_real_image(finished):
    with Image.open(finished / FIGURE) as img:
        assert img.format == "PNG" and img.size == FIGURE_SIZES[Path(FIGURE).stem]
        pixels = np.asarray(img.convert("L"), dtype=float)
    assert pixels.std() > 10  # not blank


@pytest.mark.parametrize("name", sorted(FIGURE_SIZES))
def test_every_figure_is_a_non_blank_png_and_a_pdf(complete, name):
    with Image.open(complete / f"results/figures/{name}.png") as img:
        assert img.format == "PNG" and img.size == FIGURE_SIZES[name]
        pixels = np.asarray(img.convert("L"), dtype=float)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.005
    pdf = (complete / f"results/figures/{name}.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and len(pdf) > 5000


def test_tables_summarise_the_runs(complete):
    runs = pd.read_csv(complete / "results/tables/retrieval.csv")
    summary = pd.read_csv(complete / "results/tables/summary.csv").set_index("regime")
    stats = pd.read_csv(complete / "results/tables/stats.csv")
    assert len(summary) == 2 and len(stats) == 4  # regimes (x metrics)
    for regime, d in runs.groupby("regime"):
        a, u = d[d.alignment == "aligned"].top1, d[d.alignment == "unaligned"].top1
        assert summary.loc[regime, "top1_difference"] == pytest.approx(a.mean() - u.mean())
    assert (stats.n_subjects == 2).all() and set(stats.correction) == {"holm"}


def test_attribution_recovers_the_planted_signal(complete):
    """The synthetic world's image information sits over occipito-parietal channels in the
    first half second, below 20 Hz; every trained model's attributions say so."""
    from visdecode import attribution

    files = sorted((complete / "results/runs").glob("*/intra/*/nice/*/seed-7/attribution.h5"))
    assert len(files) == 4  # subjects x image encoders
    for path in files:
        a = attribution.load(path)
        posterior = np.array([c.startswith(("O", "P")) for c in a["ch_names"]])
        assert a["spatial"][posterior].sum() > 1.6 * posterior.mean()
        assert a["temporal"][a["times"] < 0.5].sum() > 0.55
        assert a["spectral"][a["freqs"] < 20].sum() > 0.8
        assert a["temporal"].sum() == pytest.approx(1.0, rel=1e-5)


def test_report_is_self_contained_with_every_figure(complete):
    html = (complete / "results/report.html").read_text()
    for name in FIGURE_SIZES:
        assert f"{name}.png" in html
    for table in ("retrieval.csv", "summary.csv", "stats.csv", "config.yaml"):
        assert table in html
    assert "Grad-CAM" in html  # a caption
    assert 'src="http' not in html and 'href="http' not in html


def test_one_figure_rebuilds_alone(complete):
    for suffix in ("png", "pdf"):
        (complete / f"results/figures/spectral_importance.{suffix}").unlink()
    done = snakemake(complete, "results/figures/spectral_importance.png")
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "figure_spectral_importance" in log and "1 of 1 steps (100%) done" in log
    assert (complete / "results/figures/spectral_importance.pdf").exists()


def test_second_call_has_nothing_to_do(finished):
    again = snakemake(finished, FIGURE, "--dry-run")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_topk_choice_outside_the_config_fails_at_start_up(tmp_path):
    cfg = tiny_config()
    cfg["figures"]["topk"]["subject"] = 9
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    done = snakemake(tmp_path, "--dry-run")
    assert done.returncode == 1
    assert (
        "config: figures.topk.subject 09 is not among the configured subjects ['01', '02']; "
        "choose one of them or null" in done.stderr + done.stdout
    )
    assert not (tmp_path / "results").exists()


EXECUTION_CHANGES = {
    "preprocess.threads": lambda c: c["preprocess"].update(threads=1),
    "train.threads": lambda c: c["train"].update(threads=2),
    "embed.workers": lambda c: c["embed"].update(workers=2),
    "embed.compile": lambda c: c["embed"].update(compile=True),
    "embed.batch_size": lambda c: c["embed"].update(batch_size=16),
    "download.timeout": lambda c: c["download"].update(timeout=99),
    "download.retries": lambda c: c["download"].update(retries=0),
    "download.mirrors": lambda c: c["download"].update(mirrors=[]),
    "download.keep_archives": lambda c: c["download"].update(keep_archives=True),
    "weights_dir": lambda c: c.update(weights_dir="elsewhere/encoders"),
    "resources.gpu": lambda c: c["resources"].update(gpu=1),
}


@pytest.mark.parametrize("option", sorted(EXECUTION_CHANGES))
def test_execution_options_rerun_nothing(complete, option):
    """Changing how jobs run (threads, download settings, embedding workers, compile, the
    weights cache) changes no result, so nothing reruns."""
    done = snakemake(complete, "--dry-run", config=variant(complete, option, EXECUTION_CHANGES[option]))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Nothing to be done" in done.stdout + done.stderr, (done.stdout + done.stderr)[-3000:]


def test_a_result_option_reruns_what_it_feeds(complete):
    """A changed recipe reruns the training it feeds and what follows, nothing upstream."""
    done = snakemake(complete, "--dry-run", config=variant(
        complete, "lr", lambda c: c["train"]["recipes"]["nice"].update(lr=5e-4)))  # fmt: skip
    counts = job_counts(done.stdout + done.stderr)
    assert done.returncode == 0 and counts["train"] == 8 and counts["retrieval_table"] == 1
    assert not {"synth_eeg", "preprocess", "embed", "derive_embeddings"} & set(counts)


def test_one_regime_alone_builds_every_figure(complete):
    """regimes: [inter] alone: the figures' regime follows (no intra run is asked for)."""
    done = snakemake(complete, "--dry-run", "--printshellcmds", config=variant(
        complete, "inter", lambda c: c.update(regimes=["inter"])))  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-2000:]
    assert "/inter/sub-01/nice/synth_resnet18/seed-7/attribution.h5" in log
    assert "/intra/" not in log


def test_test_repetitions_come_from_the_world(tmp_path):
    """The recording design has one source: asking the preprocessing for more test
    repetitions than the synthetic world records is an error at start-up."""
    (tmp_path / "config").mkdir()
    name = variant(tmp_path, "many", lambda c: c["preprocess"].update(test_reps=6))
    done = snakemake(tmp_path, "--dry-run", config=name)
    assert done.returncode == 1
    assert "preprocess.test_reps 6 exceeds the 5 test repetitions per session" in done.stderr + done.stdout


def test_controls_join_the_dag_on_demand(complete):
    """controls.permutation trains every run again with the pairing shuffled; null_alignment
    derives null_<aligned> and trains it; controls.csv compares them (dry run on top of the
    finished real runs: only the control jobs are new)."""
    name = variant(complete, "controls", lambda c: c["controls"].update(permutation=True, null_alignment=True))
    done = snakemake(complete, "--dry-run", config=name)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-2000:]
    counts = job_counts(log)
    # permuted: 2 regimes x 2 subjects x 2 encoders; null: 2 regimes x 2 subjects x 1 encoder
    assert counts["train"] == 8 + 4 and counts["evaluate"] == 8 + 4
    assert counts["derive_embeddings"] == 1 and counts["controls_table"] == 1
    assert "results/controls/permutation/things-eeg2-synthetic/inter/sub-02/nice/synth_resnet18/seed-7/model.pt" in log
    assert "null_synth_resnet18_glocal.h5" in log
    assert "embed" not in counts and "preprocess" not in counts  # nothing upstream reruns


def test_null_alignment_without_a_transform_pair_fails_at_start_up(tmp_path):
    (tmp_path / "config").mkdir()
    reverse = [{"name": "rev", "aligned": "synth_resnet18", "unaligned": "synth_resnet18_glocal"}]
    name = variant(tmp_path, "rev", lambda c: (c.update(pairs=reverse), c["controls"].update(null_alignment=True)))
    done = snakemake(tmp_path, "--dry-run", config=name)
    assert done.returncode == 1
    assert "controls.null_alignment needs a pair whose aligned encoder is a transform" in done.stdout + done.stderr
