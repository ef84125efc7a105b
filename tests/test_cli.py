"""`visdecode <stage>`: every stage has --help; bad input is one clear line and exit code 2;
THINGS-MEG's synth, download and prepare run for real on a small world, and the figures take
the data set and the sensor file."""

import json
import subprocess
import sys

import h5py
import mne
import numpy as np
import pandas as pd
import pytest
import test_figures
import test_things_meg
import yaml
from PIL import Image

from visdecode import brain_data, cli, download, figures
from visdecode.datasets.things_eeg2 import sources as eeg_sources
from visdecode.datasets.things_meg import format as meg_format
from visdecode.datasets.things_meg import sources as meg_sources

STAGES = [
    "synth", "download", "preprocess", "prepare", "image-set", "embed", "derive-embeddings",
    "train", "evaluate", "table", "summary", "stats", "attribution", "figure",
]  # fmt: skip
# 2 sessions x (20 + 5 concepts' exp images, 5 test images, 2 catch) = 64 epochs, in 3 parts
MEG_WORLD = dict(
    seed=1, n_sessions=2, n_runs=2, n_train_concepts=20, n_test_concepts=5, n_catch=2,
    mismatches=0, part_mb=8, image_size=32, n_alignment_images=10, n_triplets=100,
)  # fmt: skip
MEG = "things-meg-synthetic"
openneuro = test_things_meg.openneuro  # ds004212 on loopback, serving this module's `world`


def visdecode(*args):
    return subprocess.run(
        [sys.executable, "-m", "visdecode.cli", *args], capture_output=True, text=True
    )


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_help(stage):
    done = visdecode(stage, "--help")
    assert done.returncode == 0
    assert f"usage: visdecode {stage}" in done.stdout


def test_bad_input_is_one_line(tmp_path):
    (tmp_path / "images").mkdir()
    done = visdecode("preprocess", "--raw-dir", str(tmp_path), "--subject", "1", "--out",
                     str(tmp_path / "out.h5"))  # fmt: skip
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        f"visdecode preprocess: error: {tmp_path}/images/image_metadata.npy: image metadata "
        "not found; fetch or synthesise the images"
    ]
    assert not (tmp_path / "out.h5").exists()


def test_figure_names_what_it_needs_and_stats_names_a_bad_table(tmp_path):
    done = visdecode("figure", "topk_retrieval", "--out", str(tmp_path / "f.png"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "visdecode figure: error: figure topk_retrieval needs --brain --images --aligned "
        "--unaligned"
    ]
    bad = tmp_path / "runs.csv"
    bad.write_text("top1\n0.5\n")
    done = visdecode("stats", "--table", str(bad), "--out", str(tmp_path / "stats.csv"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"visdecode stats: error: {bad}: not a retrieval table, columns ['alignment', "
        "'brain_encoder', 'dataset', 'image_encoder', 'pair', 'regime', 'seed', 'subject', "
        "'top5'] missing; rebuild it with `snakemake results/tables/retrieval.csv`"
    ]
    assert not (tmp_path / "stats.csv").exists() and not (tmp_path / "f.png").exists()


def test_derive_embeddings_names_the_cache_it_cannot_use(tmp_path):
    wrong = tmp_path / "clip.h5"
    h5py.File(wrong, "w").close()
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "synth_resnet18_glocal.pt").write_bytes(b"")  # present: only the cache is wrong
    done = visdecode("derive-embeddings", "--encoder", "synth_resnet18_glocal",
                     "--backbone-embeddings", str(wrong), "--weights-dir", str(weights),
                     "--out", str(tmp_path / "out.h5"))  # fmt: skip
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        f"visdecode derive-embeddings: error: {wrong}: embeddings of '', but "
        "'synth_resnet18_glocal' transforms those of 'synth_resnet18'; embed synth_resnet18 "
        "into that file first"
    ]
    assert not (tmp_path / "out.h5").exists()


# ------------------------------------------------------------------ both kinds, one CLI
def test_eeg_invocations_parse_as_before_and_meg_ones_name_their_kind():
    p = cli.parser()
    a = p.parse_args(["synth", "eeg", "--root", "r", "--subject", "1", "--subject", "3"])
    assert (a.kind, a.part, a.subject) == ("things-eeg2", "eeg", [1, 3])
    a = p.parse_args(["synth", "--kind", "things-meg", "--root", "r", "--subjects", "1", "2"])
    assert (a.kind, a.part, a.subject) == ("things-meg", "all", [1, 2])
    a = p.parse_args(["download", "raw", "--subject", "3", "--data-dir", "d"])
    assert (a.kind, a.part, a.subject, a.sessions) == ("things-eeg2", "raw", 3, None)


def test_download_passes_each_kind_its_sources_and_hosts(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "setup_logging", lambda log_file=None: None)
    monkeypatch.setattr(download, "fetch", lambda *args, **kw: calls.append((args, kw)))
    assert cli.main(["download", "raw", "--subject", "3", "--data-dir", "d"]) == 0
    assert cli.main(["download", "--kind", "things-meg", "--subject", "2", "--data-dir", "d",
                     "--timeout", "4"]) == 0  # fmt: skip
    (eeg_args, eeg_kw), (meg_args, meg_kw) = calls
    assert eeg_args == (eeg_sources, "raw", "d", eeg_sources.DEFAULT_MIRRORS)
    assert eeg_kw == dict(subject=3, timeout=10.0, retries=3, keep_archives=False, n_sessions=4)
    assert meg_args == (meg_sources, "participant", "d", meg_sources.DEFAULT_MIRRORS)
    assert meg_kw == dict(subject=2, timeout=4.0, retries=3, keep_archives=False)


# ------------------------------------------------------------------ THINGS-MEG, for real
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small THINGS-MEG world written by the CLI: images, then participants 1 and 2."""
    root = tmp_path_factory.mktemp("meg-world")
    common = ["--kind", "things-meg", "--root", str(root), "--world", json.dumps(MEG_WORLD)]
    for args in (["images"], ["meg", "--subjects", "1", "2"]):
        done = visdecode("synth", *args, *common)
        assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="module")
def prepared(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "sub" / "sub-01.h5"
    done = visdecode("prepare", "--kind", "things-meg", "--data-dir", str(world), "--subject",
                     "1", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def test_synth_meg_writes_the_derivative_layout(world):
    """Per participant the epochs in parts MNE follows and the CSV, one row per epoch; the
    image folders and the planted truth of the world asked for."""
    n = 2 * (20 + 5 + 5 + 2)
    for participant in (1, 2):
        first = meg_format.epochs_path(world, participant)
        assert sorted(p.name for p in first.parent.glob(f"preprocessed_P{participant}-*")) == [
            f"preprocessed_P{participant}-epo-1.fif",
            f"preprocessed_P{participant}-epo-2.fif",
            f"preprocessed_P{participant}-epo.fif",
        ]
        epochs = mne.read_epochs(first, preload=False, verbose="error")
        assert len(epochs) == n and len(epochs.ch_names) == 271 and len(epochs.times) == 281
        table = pd.read_csv(meg_format.attributes_path(world, participant))
        assert tuple(table.columns) == meg_format.COLUMNS and len(table) == n
        assert table.trial_type.value_counts().to_dict() == {"exp": 50, "test": 10, "catch": 4}
        np.testing.assert_array_equal(epochs.events[:, 2], meg_format.expected_events(table))
    one, two = (pd.read_csv(meg_format.attributes_path(world, p)) for p in (1, 2))
    assert set(one.image_path) == set(two.image_path) and list(one.image_path) != list(
        two.image_path
    )  # the same images, each participant in its own order
    assert len(list((world / "images_test_meg").iterdir())) == 5
    assert len(list((world / "images_catch_meg").iterdir())) == 2
    with h5py.File(world / "synthetic_truth.h5") as f:
        assert f.attrs["world_n_sessions"] == 2 and f.attrs["world_seed"] == 1
        assert f["features"].shape[0] == 25 * 2 + 5
    assert not (world / "encoders").exists()  # parts images and meg only


def test_prepare_meg_writes_the_brain_file(world, prepared, tmp_path):
    """Training: one repetition of the 20 non-test concepts' 2 exp images; test: the 5 test
    images, once a session; 0..1 s at 200 Hz; the epochs' own values; --tmin/--tmax taken."""
    with h5py.File(prepared) as f:
        train, test = f["train"][:], f["test"][:]
        assert train.shape == (40, 1, 271, 201) and test.shape == (5, 2, 271, 201)
        assert f.attrs["modality"] == "meg" and f.attrs["kind"] == "things-meg"
        assert f.attrs["subject"] == 1 and f.attrs["dropped_mismatched"] == 0
        assert f["times"][0] == 0 and f["times"][-1] == pytest.approx(1.0)
        ch_names = list(f["ch_names"].asstr()[:])
        assert f["ch_loc"].shape == (271, 12)
    assert np.isfinite(train).all() and np.isfinite(test).all()
    stimuli, concepts = brain_data.read_stimuli(prepared, "train")
    test_stimuli, test_concepts = brain_data.read_stimuli(prepared, "test")
    assert all(s.startswith("images_test_meg/") for s in test_stimuli)
    assert len(set(concepts)) == 20 and not set(concepts) & set(test_concepts)
    epochs = mne.read_epochs(meg_format.epochs_path(world, 1), preload=False, verbose="error")
    assert ch_names == epochs.ch_names
    table = pd.read_csv(meg_format.attributes_path(world, 1))
    row = int(np.flatnonzero(table.image_path == stimuli[7])[0])
    window = (epochs.times > -1e-9) & (epochs.times < 1 + 1e-9)  # 0..1 s, both ends
    epoch = epochs.get_data(item=[row], verbose="error")[0][:, window]
    np.testing.assert_array_equal(train[7, 0], epoch.astype(np.float32))

    out = tmp_path / "window.h5"
    done = visdecode("prepare", "--kind", "things-meg", "--data-dir", str(world), "--subject",
                     "2", "--out", str(out), "--tmin", "0.1", "--tmax", "0.5")  # fmt: skip
    assert done.returncode == 0, done.stderr
    with h5py.File(out) as f:
        assert f["train"].shape == (40, 1, 271, 81) and f.attrs["subject"] == 2
        assert f["times"][0] == pytest.approx(0.1) and f["times"][-1] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["prepare", "--kind", "things-meg", "--data-dir", "{world}", "--subject", "3", "--out",
          "{tmp}/out/sub-03.h5"],
         "{world}/sourcedata/sample_attributes_P3.csv: sample attributes not found; fetch "
         "sourcedata/ of ds004212 (download) or put the file there"),
        (["prepare", "--kind", "things-eeg2", "--data-dir", "{world}", "--subject", "1", "--out",
          "{tmp}/out/sub-01.h5"],
         "prepare things-eeg2: its EEG is prepared by `visdecode preprocess` (raw sessions) or "
         "`visdecode import-release` (the official preprocessed release)"),
        (["synth", "meg", "--kind", "things-meg", "--root", "{tmp}/out"],
         "{tmp}/out/synthetic_truth.h5: not found; write the world's images first "
         "(`visdecode synth images --kind things-meg`)"),
        (["synth", "eeg", "--kind", "things-meg", "--root", "{tmp}/out"],
         "synth eeg: things-meg records MEG; its part is 'meg'"),
        (["synth", "images", "--kind", "things-meg", "--root", "{tmp}/out", "--world",
          "{{n_sesions: 2}}"],
         "--world: unknown THINGS-MEG world option(s): n_sesions"),
        (["download", "--kind", "things-meg", "--data-dir", "{tmp}/out"],
         "download participant: give --subject"),
        (["download", "raw", "--kind", "things-meg", "--data-dir", "{tmp}/out", "--subject", "1"],
         "download raw: things-meg's parts are participant"),
        (["download", "--kind", "things-meg", "--data-dir", "{tmp}/out", "--subject", "1",
          "--mirrors", "{tmp}/eeg.yaml"],
         "{tmp}/eeg.yaml: no mirrors of a things-meg data set (datasets.<name>.mirrors) in it; "
         "give that or the list of hosts itself (without --mirrors: the kind's default hosts)"),
        (["figure", "retrieval_per_subject", "--out", "{tmp}/out/f.png", "--sensors",
          "{tmp}/eeg.yaml"],
         "figure retrieval_per_subject: --sensors is for spatial_importance only"),
    ],
    ids=["prepare-missing-participant", "prepare-eeg", "synth-meg-before-images",
         "synth-part-of-other-kind", "synth-unknown-world-option", "download-no-subject",
         "download-part-of-other-kind", "download-no-meg-mirrors", "figure-sensors-misplaced"],
)  # fmt: skip
def test_bad_meg_input_is_one_line_and_writes_nothing(world, tmp_path, args, message):
    (tmp_path / "eeg.yaml").write_text(yaml.safe_dump({"datasets": {"things-eeg2": {
        "kind": "things-eeg2", "mirrors": [{"name": "osf", "type": "osf", "url": "x"}]}}}))  # fmt: skip
    done = visdecode(*(a.format(world=world, tmp=tmp_path) for a in args))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"visdecode {args[0]}: error: " + message.format(world=world, tmp=tmp_path)]
    assert not (tmp_path / "out").exists()


def test_download_meg_from_openneuro(world, openneuro, tmp_path):
    """Participant 1's epochs parts and CSV, byte for byte, from the hosts of the things-meg
    data set in a config file (the EEG one's ignored); participant 2's left on the host."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"datasets": {
        "things-eeg2": {"kind": "things-eeg2", "mirrors": [{"name": "osf", "type": "osf",
                                                          "url": "http://127.0.0.1:9"}]},
        "things-meg": {"kind": "things-meg", "mirrors": test_things_meg.mirrors(openneuro)},
    }}))  # fmt: skip
    data = tmp_path / "data"
    done = visdecode("download", "--kind", "things-meg", "--data-dir", str(data), "--subject",
                     "1", "--mirrors", str(config), "--timeout", "5")  # fmt: skip
    assert done.returncode == 0, done.stderr
    wanted = sorted(
        p.relative_to(world) for sub in ("derivatives", "sourcedata")
        for p in (world / sub).rglob("*P1*")
    )  # fmt: skip
    assert len(wanted) == 4  # 3 epochs parts and the CSV
    assert sorted(p.relative_to(data) for p in data.rglob("*") if p.is_file()) == wanted
    for rel in wanted:
        assert (data / rel).read_bytes() == (world / rel).read_bytes()
    fetched = [p for p, _ in openneuro.requests if p.startswith("/files/")]
    assert sorted(fetched) == [f"/files/ds004212:2.0.1/{rel}" for rel in wanted]  # each once


# ------------------------------------------------------------------ figures per data set
def pixels(path):
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_figure_spatial_draws_meg_at_the_sensors_of_a_brain_file(prepared, tmp_path):
    """--sensors and --dataset reach spatial_importance: the CLI's PNG is the one drawn with
    them; without --sensors the MEG channels have no (EEG) positions: one line, no file."""
    with h5py.File(prepared) as f:
        ch_names = list(f["ch_names"].asstr()[:])
    files = test_figures.attribution_files(tmp_path, MEG, ch_names, subjects=(1,))
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text(yaml.safe_dump(test_figures.PAIRS[:1]))
    args = ["figure", "spatial_importance", "--attributions", *map(str, files), "--pairs",
            str(pairs), "--dpi", "40"]  # fmt: skip
    out = tmp_path / "cli.png"
    done = visdecode(*args, "--out", str(out), "--sensors", str(prepared), "--dataset", MEG)
    assert done.returncode == 0, done.stderr
    ref, untitled = tmp_path / "ref.png", tmp_path / "untitled.png"
    pair = test_figures.PAIRS[:1]
    assert figures.spatial_importance(files, pair, [ref], 40, sensors=prepared, dataset=MEG) == (
        1, 3
    )  # fmt: skip
    figures.spatial_importance(files, pair, [untitled], 40, sensors=prepared)
    assert pixels(out).shape == (100, round(figures.PAGE_WIDTH * 40), 3)
    assert (pixels(out) == pixels(ref)).all() and (pixels(out) != pixels(untitled)).any()

    done = visdecode(*args, "--out", str(tmp_path / "eeg.png"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "have no 10-20 position in MNE's colin27_1020 montage" in done.stderr
    assert not (tmp_path / "eeg.png").exists()


def test_figure_per_subject_draws_the_data_set_named(tmp_path):
    """A table of two data sets: without --dataset one line naming them; with it, the figure
    of that data set's rows."""
    table = tmp_path / "retrieval.csv"
    pd.concat([
        test_figures.retrieval_rows(test_figures.EEG, ["intra"], ["nice"], 0.1),
        test_figures.retrieval_rows(MEG, ["intra"], ["nice"], 0.5, seed=1),
    ]).to_csv(table, index=False)  # fmt: skip
    args = ["figure", "retrieval_per_subject", "--table", str(table), "--dpi", "40"]
    done = visdecode(*args, "--out", str(tmp_path / "both.png"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"visdecode figure: error: {table}: holds data sets ['{test_figures.EEG}', '{MEG}']; "
        "a figure shows one, name it (dataset)"
    ]
    assert not (tmp_path / "both.png").exists()
    done = visdecode(*args, "--out", str(tmp_path / "cli.png"), "--dataset", MEG)
    assert done.returncode == 0, done.stderr
    figures.per_subject(table, [tmp_path / "meg.png"], 40, dataset=MEG)
    figures.per_subject(table, [tmp_path / "eeg.png"], 40, dataset=test_figures.EEG)
    cli_png = pixels(tmp_path / "cli.png")
    assert (cli_png == pixels(tmp_path / "meg.png")).all()
    assert (cli_png != pixels(tmp_path / "eeg.png")).any()
