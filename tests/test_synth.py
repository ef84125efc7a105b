"""The synthetic world is written in THINGS-EEG2's exact format, with the documented design."""

import dataclasses

import h5py
import numpy as np
import pytest
from PIL import Image

from visdecode.datasets.things_eeg2 import synth
from visdecode.datasets.things_eeg2 import format as fmt


def test_raw_files_have_the_published_layout(world, world_cfg):
    for ses in range(1, world_cfg.n_sessions + 1):
        for part in fmt.PARTITIONS:
            path = fmt.raw_path(world, 1, ses, part)
            raw = np.load(path, allow_pickle=True).item()
            assert set(raw) >= {"raw_eeg_data", "ch_names", "ch_types", "sfreq"}
            assert raw["raw_eeg_data"].shape[0] == 64
            assert raw["raw_eeg_data"].dtype == np.float64
            assert raw["ch_names"] == fmt.CH_NAMES + ["stim"]
            assert raw["ch_types"] == ["eeg"] * 63 + ["stim"]
            assert raw["sfreq"] == 1000


def test_event_design_matches_the_experiment(world, world_cfg):
    n_train = world_cfg.n_train_concepts * world_cfg.images_per_concept
    sessions_of = {c: [] for c in range(1, n_train + 1)}
    shown = {c: 0 for c in range(1, n_train + 1)}
    test_counts = []
    for ses in range(1, world_cfg.n_sessions + 1):
        raw = fmt.load_raw(fmt.raw_path(world, 1, ses, "training"))
        onsets, codes = fmt_onsets(raw)
        assert np.all(np.diff(onsets) == 200)  # 200 ms SOA at 1000 Hz
        assert (codes == fmt.TARGET_CODE).sum() > 0
        real = codes[codes != fmt.TARGET_CODE]
        assert real.min() >= 1 and real.max() <= n_train
        for c in np.unique(real):
            sessions_of[int(c)].append(ses)
            shown[int(c)] += int((real == c).sum())
        test = fmt.load_raw(fmt.raw_path(world, 1, ses, "test"))
        _, tcodes = fmt_onsets(test)
        tcodes = tcodes[tcodes != fmt.TARGET_CODE]
        test_counts.append(np.bincount(tcodes, minlength=world_cfg.n_test_concepts + 1)[1:])
    # each training image in exactly 2 of the 4 sessions, at least twice in each
    assert all(len(s) == 2 for s in sessions_of.values())
    assert all(n >= 4 for n in shown.values())
    # each session shows half of the images
    per_session = [sum(ses in s for s in sessions_of.values()) for ses in range(1, 5)]
    assert per_session == [n_train // 2] * 4
    assert np.all(np.stack(test_counts) >= world_cfg.test_reps_per_session)


def fmt_onsets(raw):
    stim = raw["raw_eeg_data"][raw["ch_names"].index("stim")]
    onsets = np.flatnonzero(stim)
    return onsets, stim[onsets].astype(int)


def test_images_and_metadata(world, world_cfg):
    meta = fmt.load_image_metadata(world / "images" / "image_metadata.npy")
    n_train = world_cfg.n_train_concepts * world_cfg.images_per_concept
    assert len(meta["train_img_files"]) == n_train
    assert len(meta["test_img_files"]) == world_cfg.n_test_concepts
    paths = fmt.image_paths(world / "images", meta, "training")
    # folders NNNNN_concept in sorted order, images sorted inside a concept
    assert paths[0].parent.name.startswith("00001_")
    assert [p.parent.name for p in paths] == sorted(p.parent.name for p in paths)
    with Image.open(paths[0]) as img:
        assert img.format == "JPEG" and img.size == (world_cfg.image_size,) * 2
    pixels = [np.asarray(Image.open(p), dtype=float) for p in paths[:6]]
    assert min(np.abs(a - b).mean() for a, b in zip(pixels, pixels[1:])) > 1.0


def test_planted_truth_is_saved(world, world_cfg):
    with h5py.File(world / "synthetic_truth.h5") as f:
        n_train = world_cfg.n_train_concepts * world_cfg.images_per_concept
        assert f["train_features"].shape == (n_train, len(synth.FEATURES))
        assert f["test_features"].shape == (world_cfg.n_test_concepts, len(synth.FEATURES))
        assert list(f.attrs["feature_names"]) == list(synth.FEATURES)
        assert f["triplets"].shape == (world_cfg.n_triplets, 3)


def test_world_is_seeded(tmp_path, world, world_cfg):
    synth.write_images_atomic(tmp_path, world_cfg)
    with h5py.File(world / "synthetic_truth.h5") as a, h5py.File(tmp_path / "synthetic_truth.h5") as b:
        np.testing.assert_array_equal(a["train_features"][:], b["train_features"][:])
    first = world / "images" / "training_images"
    again = tmp_path / "images" / "training_images"
    name = sorted(first.rglob("*.jpg"))[0].relative_to(first)
    assert (first / name).read_bytes() == (again / name).read_bytes()


def test_evoked_signal_is_planted(world, world_cfg):
    """Averaging all trials of one image recovers its planted response (noise averages out)."""
    model = synth.brain_model(world_cfg)
    with h5py.File(world / "synthetic_truth.h5") as f:
        feats = f["test_features"][:]
    window = np.arange(0, 800)
    epochs = {code: [] for code in range(1, world_cfg.n_test_concepts + 1)}
    for ses in range(1, world_cfg.n_sessions + 1):
        raw = fmt.load_raw(fmt.raw_path(world, 1, ses, "test"))
        onsets, codes = fmt_onsets(raw)
        eeg = raw["raw_eeg_data"][:63] * 1e6
        for o, c in zip(onsets, codes):
            if c != fmt.TARGET_CODE:
                epochs[c].append(eeg[:, o + window] - eeg[:, o - 200 : o].mean(1, keepdims=True))
    erps = np.stack([np.mean(epochs[c], axis=0) for c in sorted(epochs)])
    # the image-specific part (ERP minus the mean over images) tracks the planted features
    specific = erps - erps.mean(0)
    centred = feats - feats.mean(0)
    planted = np.einsum("ck,nk,kt->nct", model["topographies"], centred, model["waveforms"])
    r = np.corrcoef(specific.ravel(), planted.ravel())[0, 1]
    shuffled = np.corrcoef(specific.ravel(), planted[::-1].ravel())[0, 1]
    assert r > 0.12 and r > shuffled + 0.1  # measured: 0.20 vs -0.03


def test_null_world_changes_the_judgements_only(tmp_path, world, world_cfg):
    """human_judgements: nuisance (the null-alignment control): the same images and EEG, the
    same triplets, judged by the clutter the EEG does not carry instead of the features."""
    null = dataclasses.replace(world_cfg, human_judgements="nuisance")
    synth.write_images_atomic(tmp_path, null)
    synth.write_subject(tmp_path, 1, null)
    for ses in (1, 2):
        for part in ("training", "test"):
            a, b = (fmt.load_raw(fmt.raw_path(root, 1, ses, part)) for root in (world, tmp_path))
            np.testing.assert_array_equal(a["raw_eeg_data"], b["raw_eeg_data"])
    images = sorted((world / "images").rglob("*.jpg")) + sorted((world / "alignment").rglob("*.jpg"))
    assert len(images) > 40
    for path in images:
        assert (tmp_path / path.relative_to(world)).read_bytes() == path.read_bytes()
    with h5py.File(world / "synthetic_truth.h5") as a, h5py.File(tmp_path / "synthetic_truth.h5") as b:
        np.testing.assert_array_equal(a["triplets"][:], b["triplets"][:])
        assert a["odd_one_out"].attrs["judged_by"].startswith("colour_a")
        assert b["odd_one_out"].attrs["judged_by"].startswith("blobs")
        agree = (a["odd_one_out"][:] == b["odd_one_out"][:]).mean()
    assert agree < 0.5  # chance agreement is 1/3: the two kinds of humans judge differently
    with pytest.raises(ValueError, match="human_judgements 'faces': use one of perceptual, nuisance"):
        synth.WorldConfig.from_dict({"human_judgements": "faces"})
