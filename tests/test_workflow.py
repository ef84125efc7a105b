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
EEG, MEG = "things-eeg2-synthetic", "things-meg-synthetic"
FIGURE = f"results/figures/{EEG}/retrieval_aligned_vs_unaligned.png"


def tiny_config() -> dict:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    # 2 subjects each; the EEG world in both regimes (the default run: 3 subjects, intra)
    cfg["datasets"][EEG].update(subjects=[1, 2], regimes=["intra", "inter"])
    cfg["datasets"][MEG].update(subjects=[1, 2])
    cfg["datasets"][EEG]["world"].update(
        n_train_concepts=60,
        n_test_concepts=20,
        test_reps_per_session=5,
        signal_uv=10.0,
        n_alignment_images=200,
        n_triplets=5000,
    )
    # a small MEG world, intra-subject (its leave-one-subject-out: tests/test_things_meg.py):
    # 2 participants x 3 sessions, 20-way
    cfg["datasets"][MEG]["world"].update(
        n_sessions=3,
        n_train_concepts=60,
        n_test_concepts=20,
        signal=8.0,
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
    # MEG: 60 concepts x 3 sessions' exp images once each; 20 test images, once a session;
    # 271 sensors, 0..1 s at 200 Hz; mismatched trials dropped, their repetitions NaN
    with h5py.File(finished / f"results/preprocessed/{MEG}/sub-02.h5") as f:
        n_train = f["train"].shape[0]  # less the exp trials of a mismatch (1 per run: 6)
        assert f["train"].shape[1:] == (1, 271, 201) and 180 - 6 <= n_train <= 180
        assert f["test"].shape == (20, 3, 271, 201)
        assert f.attrs["modality"] == "meg" and f["ch_loc"].shape == (271, 12)
    with h5py.File(finished / f"results/embeddings/{MEG}/synth_resnet18.h5") as f:
        assert f["test"].shape == (20, 512)


def test_retrieval_table_is_tidy_and_above_chance(finished):
    table = pd.read_csv(finished / "results/tables/retrieval.csv")
    assert list(table.columns) == [
        "dataset", "modality", "regime", "subject", "brain_encoder", "image_encoder",
        "alignment", "pair", "seed", "n_way", "top1", "top5",
    ]  # fmt: skip
    # a row per data set's run, its modality as its preparation recorded it
    assert table.groupby("dataset").modality.unique().map(list).to_dict() == {
        EEG: ["eeg"], MEG: ["meg"]
    }
    assert len(table) == (2 + 1) * 2 * 2 * 1  # (EEG's 2 regimes + MEG's 1) x subjects x ...
    assert table.groupby(["dataset", "regime"]).size().to_dict() == {
        (EEG, "inter"): 4, (EEG, "intra"): 4, (MEG, "intra"): 4
    }
    assert set(table.alignment) == {"aligned", "unaligned"}
    assert (table.n_way == 20).all()
    eeg, meg = table[table.dataset == EEG], table[table.dataset == MEG]
    assert eeg.top5.mean() > 2 * (5 / 20) and eeg.top1.mean() > 3 * (1 / 20)
    # the tiny MEG world trains on 180 single trials: above chance in each regime, not far
    # (measured: top-1 0.10-0.18, top-5 0.40-0.55 per regime and encoder, chance 0.05, 0.25)
    assert meg.top5.mean() > 1.3 * (5 / 20) and meg.top1.mean() > 1.2 * (1 / 20)


def test_leave_one_subject_out_trains_on_the_others_only(finished):
    for dataset in (EEG,):
        runs = finished / "results/runs" / dataset
        for held_out, other in (("01", "02"), ("02", "01")):
            run = runs / f"inter/sub-{held_out}/nice/synth_resnet18_glocal/seed-7"
            info = yaml.safe_load((run / "config.yaml").read_text())
            assert info["regime"] == "inter" and info["test_subject"] == int(held_out)
            assert info["brains"] == [f"results/preprocessed/{dataset}/sub-{other}.h5"]
            result = yaml.safe_load((run / "retrieval.json").read_text())
            assert result["subject"] == int(held_out) and result["regime"] == "inter"



def test_eeg_results_equal_the_stages_run_directly(finished, tmp_path):
    """The data-set layer changes no EEG number: the workflow's preprocessed file and one run's
    retrieval equal the package's stages called directly with the same options (the EEG
    pipeline's own yardsticks are tests/test_preprocess.py and test_train_evaluate.py)."""
    from dataclasses import fields

    from visdecode import evaluate, train
    from visdecode.datasets.things_eeg2 import preprocess

    cfg = tiny_config()
    options = {f.name: f.default for f in fields(preprocess.Params)}
    options.update(cfg["datasets"][EEG]["preprocess"], test_reps=5, n_sessions=4)
    options["baseline"] = tuple(options["baseline"])
    direct = tmp_path / "sub-01.h5"
    preprocess.run(finished / "data" / EEG, 1, direct, preprocess.Params(**options), threads=1)
    brain = finished / f"results/preprocessed/{EEG}/sub-01.h5"
    with h5py.File(brain) as got, h5py.File(direct) as want:
        for name in ("train", "test"):
            np.testing.assert_array_equal(got[name][:], want[name][:])
    embeddings = finished / f"results/embeddings/{EEG}/synth_resnet18_glocal.h5"
    run = tmp_path / "run"
    train.run([brain], embeddings, "nice", 7, run, train.Recipe(**cfg["train"]["recipes"]["nice"]),
              threads=1, regime="intra", val_split="concept", selection="top1")  # fmt: skip
    result = evaluate.run(run / "model.pt", brain, embeddings, run / "retrieval.json", meta={})
    want = yaml.safe_load((finished / f"results/runs/{EEG}/intra/sub-01/nice/synth_resnet18_glocal"
                           "/seed-7/retrieval.json").read_text())  # fmt: skip
    assert (result["top1"], result["top5"]) == (want["top1"], want["top5"])

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


@pytest.mark.parametrize("dataset", [EEG, MEG])
@pytest.mark.parametrize("name", sorted(FIGURE_SIZES))
def test_every_figure_is_a_non_blank_png_and_a_pdf(complete, name, dataset):
    # MEG runs one regime: its aligned-vs-unaligned figure has one row of panels
    size = (720, 260) if (dataset, name) == (MEG, "retrieval_aligned_vs_unaligned") else None
    with Image.open(complete / f"results/figures/{dataset}/{name}.png") as img:
        assert img.format == "PNG" and img.size == (size or FIGURE_SIZES[name])
        pixels = np.asarray(img.convert("L"), dtype=float)
    assert pixels.std() > 15 and (pixels < 128).mean() > 0.005  # MEG's one-regime grids: 18
    pdf = (complete / f"results/figures/{dataset}/{name}.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and len(pdf) > 5000


def test_tables_summarise_the_runs(complete):
    runs = pd.read_csv(complete / "results/tables/retrieval.csv")
    summary = pd.read_csv(complete / "results/tables/summary.csv").set_index(["dataset", "regime"])
    stats = pd.read_csv(complete / "results/tables/stats.csv")
    assert len(summary) == 3 and len(stats) == 6  # data sets' regimes (x metrics)
    for key, d in runs.groupby(["dataset", "regime"]):
        a, u = d[d.alignment == "aligned"].top1, d[d.alignment == "unaligned"].top1
        assert summary.loc[key, "top1_difference"] == pytest.approx(a.mean() - u.mean(), abs=5e-5)
    assert (stats.n_subjects == 2).all() and set(stats.correction) == {"holm"}


def test_attribution_recovers_the_planted_signal(complete):
    """The synthetic world's image information sits over occipito-parietal channels in the
    first half second, below 20 Hz; every trained model's attributions say so."""
    from visdecode import attribution

    files = sorted((complete / f"results/runs/{EEG}").glob("intra/*/nice/*/seed-7/attribution.h5"))
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
    assert EEG in html and MEG in html  # a section per data set
    for table in ("retrieval.csv", "summary.csv", "stats.csv", "config.yaml"):
        assert table in html
    assert "Grad-CAM" in html  # a caption
    assert 'src="http' not in html and 'href="http' not in html


def test_one_figure_rebuilds_alone(complete):
    for suffix in ("png", "pdf"):
        (complete / f"results/figures/{MEG}/spectral_importance.{suffix}").unlink()
    done = snakemake(complete, f"results/figures/{MEG}/spectral_importance.png")
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "figure_spectral_importance" in log and "1 of 1 steps (100%) done" in log
    assert (complete / f"results/figures/{MEG}/spectral_importance.pdf").exists()


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
        f"config: figures.topk.subject 09 is not among data set '{EEG}'s subjects "
        "['01', '02']; choose one of them or null" in done.stderr + done.stdout
    )
    assert not (tmp_path / "results").exists()


EXECUTION_CHANGES = {
    "prepare.threads": lambda c: c["prepare"].update(threads=1),
    "train.threads": lambda c: c["train"].update(threads=2),
    "embed.workers": lambda c: c["embed"].update(workers=2),
    "embed.compile": lambda c: c["embed"].update(compile=True),
    "embed.batch_size": lambda c: c["embed"].update(batch_size=16),
    "download.timeout": lambda c: c["download"].update(timeout=99),
    "download.retries": lambda c: c["download"].update(retries=0),
    "datasets.mirrors": lambda c: c["datasets"][MEG].update(mirrors=[]),
    "datasets.unused": lambda c: c["datasets"].update(other={"kind": "things-meg", "data_dir": "x", "subjects": [3]}),
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
    assert done.returncode == 0 and counts["train"] == 12 and counts["retrieval_table"] == 1
    assert not {"things_eeg2_preprocess", "things_meg_prepare", "embed"} & set(counts)
    assert not [job for job in counts if job.startswith(("synth_", "derive_"))]


def test_a_data_set_option_reruns_that_data_set_only(complete):
    """A changed MEG preparation window reruns MEG's preparation and what follows; EEG's runs
    stay, the tables (holding both) are rebuilt."""
    done = snakemake(complete, "--dry-run", config=variant(
        complete, "tmax", lambda c: c["datasets"][MEG]["prepare"].update(tmax=0.8)))  # fmt: skip
    counts = job_counts(done.stdout + done.stderr)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert counts["things_meg_prepare"] == 2 and counts["train"] == 4  # MEG's runs
    assert counts["retrieval_table"] == 1 and "things_eeg2_preprocess" not in counts
    assert counts["figure_spatial_importance"] == 1  # MEG's figure only


def test_one_regime_alone_builds_every_figure(complete):
    """regimes: [inter] alone: the figures' regime follows (no intra run is asked for)."""
    done = snakemake(complete, "--dry-run", "--printshellcmds", config=variant(
        complete, "inter", lambda c: [d.update(regimes=["inter"]) for d in c["datasets"].values()]))  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-2000:]
    assert "/inter/sub-01/nice/synth_resnet18/seed-7/attribution.h5" in log
    assert "/intra/" not in log


def test_test_repetitions_come_from_the_world(tmp_path):
    """The recording design has one source: asking the preprocessing for more test
    repetitions than the synthetic world records is an error at start-up."""
    (tmp_path / "config").mkdir()
    name = variant(tmp_path, "many", lambda c: c["datasets"][EEG]["preprocess"].update(test_reps=6))
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
    # permuted: (EEG's 2 regimes + MEG's 1) x 2 subjects x 2 encoders; null: ... x 1 encoder
    assert counts["train"] == 12 + 6 and counts["evaluate"] == 12 + 6
    assert counts["derive_embeddings"] == 2 and counts["controls_table"] == 1  # per data set
    assert "results/controls/permutation/things-eeg2-synthetic/inter/sub-02/nice/synth_resnet18/seed-7/model.pt" in log
    assert "null_synth_resnet18_glocal.h5" in log
    assert "embed" not in counts and "things_eeg2_preprocess" not in counts  # nothing upstream


def test_null_alignment_without_a_transform_pair_fails_at_start_up(tmp_path):
    (tmp_path / "config").mkdir()
    reverse = [{"name": "rev", "aligned": "synth_resnet18", "unaligned": "synth_resnet18_glocal"}]
    name = variant(tmp_path, "rev", lambda c: (c.update(pairs=reverse), c["controls"].update(null_alignment=True)))
    done = snakemake(tmp_path, "--dry-run", config=name)
    assert done.returncode == 1
    assert "controls.null_alignment needs a pair whose aligned encoder is a transform" in done.stdout + done.stderr


def test_a_harmonization_pair_runs_through_embed_train_evaluate(finished):
    """harmonization_levit against levit_imagenet on the finished EEG world: random weights in
    the real formats (a Keras .h5 by our writer, timm's safetensors), as local_weights; only
    their jobs run."""
    import hashlib

    import timm
    import torch
    from safetensors.torch import save_file

    from visdecode import harmonization_models

    weights = finished / "harmonization-weights"
    weights.mkdir()
    torch.manual_seed(0)
    files = {"harmonization_levit": weights / "levit_small_harmonized.h5",
             "levit_imagenet": weights / "levit_128.safetensors"}  # fmt: skip
    harmonization_models.write("levit128", harmonization_models.ARCHS["levit128"].make(),
                               files["harmonization_levit"])  # fmt: skip
    save_file(timm.create_model("levit_128").state_dict(), files["levit_imagenet"])
    pair = {"name": "Harmonization-LeViT-128", "method": "Harmonization",
            "aligned": "harmonization_levit", "unaligned": "levit_imagenet"}  # fmt: skip
    name = variant(finished, "harmonization", lambda c: (
        c["pairs"].append(pair), c.update(local_weights={k: str(v) for k, v in files.items()})))  # fmt: skip
    run = f"results/runs/{EEG}/intra/sub-01/nice/{{}}/seed-7/retrieval.json"
    done = snakemake(finished, *(run.format(e) for e in files), config=name)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert job_counts(log) == {"embed": 2, "train": 2, "evaluate": 2}  # nothing else reruns
    for encoder, file in files.items():
        result = yaml.safe_load((finished / run.format(encoder)).read_text())
        assert result["n_way"] == 20 and 0 <= result["top1"] <= 1
        with h5py.File(finished / f"results/embeddings/{EEG}/{encoder}.h5") as f:
            assert f["train"].shape == (600, 384) and f["test"].shape == (20, 384)
            assert f.attrs["weights_sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
            keras = "TensorFlow's bicubic" in f.attrs["preprocessing"]
            assert keras == (encoder == "harmonization_levit")
