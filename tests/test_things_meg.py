"""THINGS-MEG: the synthetic world's format, preparation, bad input, the download from
OpenNeuro (its GraphQL API on loopback, tests/mirror.py), its image set, and decoding it (every
brain encoder on 271 x 201, leave-one-subject-out across two participants)."""

import json
import math
import shutil
from pathlib import Path

import h5py
import mne
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from mirror import Mirror

from visdecode import (
    brain_data,
    brain_encoders,
    download,
    embed,
    evaluate,
    image_encoders,
    image_sets,
    sensors,
    train,
)
from visdecode.datasets import synthetic_things
from visdecode.datasets.things_meg import format as fmt
from visdecode.datasets.things_meg import prepare, sources
from visdecode.datasets.things_meg import synth as meg_synth
from visdecode.errors import InputError

WORLD = meg_synth.WorldConfig(
    n_sessions=3, n_runs=2, n_train_concepts=12, n_test_concepts=4, n_catch=2, mismatches=2,
    part_mb=2, image_size=32, n_alignment_images=20, n_triplets=200,
)  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("meg")
    meg_synth.write_images_atomic(root, WORLD)
    meg_synth.write_participant(root, 1, WORLD)
    return root


def copy_world(world, tmp_path):
    """A copy of the world's participant files to break."""
    for sub in ("derivatives", "sourcedata"):
        shutil.copytree(world / sub, tmp_path / sub)
    return tmp_path


def test_the_derivative_has_the_real_format(world):
    """Parts MNE follows; 271 CTF magnetometers at 200 Hz over -0.1..1.3 s; 18 CSV columns,
    one row per epoch, in order; event values THINGS image numbers, catch 999999."""
    first = fmt.epochs_path(world, 1)
    parts = sorted(first.parent.glob("preprocessed_P1-epo*.fif"))
    assert len(parts) >= 3  # forced small: a reader must follow them
    epochs = mne.read_epochs(first, preload=False, verbose="error")
    n = WORLD.n_sessions * (WORLD.n_train_concepts + 2 * WORLD.n_test_concepts + WORLD.n_catch)
    assert len(epochs) == n and len(epochs.ch_names) == 271
    assert epochs.info["sfreq"] == 200 and len(epochs.times) == 281
    assert epochs.times[0] == pytest.approx(-0.1) and epochs.times[-1] == pytest.approx(1.3)
    assert set(epochs.get_channel_types()) == {"mag"} and "MRO11-1609" not in epochs.ch_names
    assert all(c[:2] in ("ML", "MR", "MZ") and c[2] in "CFOPT" and c.endswith("-1609")
               for c in epochs.ch_names)  # fmt: skip
    table = pd.read_csv(fmt.attributes_path(world, 1))
    assert tuple(table.columns) == fmt.COLUMNS and len(table) == n
    assert (table.session_nr.diff().fillna(0) >= 0).all()  # chronological
    catch = table.trial_type == "catch"
    assert (epochs.events[catch.to_numpy(), 2] == fmt.CATCH).all()
    disagree = epochs.events[:, 2] != fmt.expected_events(table)
    assert disagree.sum() == WORLD.n_sessions * WORLD.n_runs * WORLD.mismatches
    # every exp image once, every test image once a session
    counts = table[~catch].groupby(["trial_type", "image_path"]).size()
    assert set(counts["exp"]) == {1} and set(counts["test"]) == {WORLD.n_sessions}
    assert all(p.startswith("images_test_meg/") and p.count("/") == 1 for p in counts["test"].index)
    assert (world / table.image_path[~catch]).map(lambda p: p.is_file()).all()
    # z-scored against the baseline: each channel's pre-stimulus mean 0 and s.d. 1
    base = epochs.get_data(item=slice(0, 5))[:, :, epochs.times <= 1e-9]  # -0.1..0 s
    assert np.allclose(base.mean(-1), 0, atol=1e-4) and np.allclose(base.std(-1), 1, atol=1e-3)


def test_parts_written_one_at_a_time_read_as_mnes_own(tmp_path):
    """The bounded-memory writer gives what Epochs.save gives: same data, events, metadata."""
    rng = np.random.default_rng(0)
    info = fmt.make_info()
    n = 24
    data = rng.standard_normal((n, 271, 281)).astype(np.float32)
    table = pd.DataFrame({"trial_type": ["exp"] * n, "things_image_nr": np.arange(1, n + 1.0)})
    ev = np.column_stack([100 + 300 * np.arange(n), np.zeros(n, int), np.arange(1, n + 1)])
    ours = tmp_path / "ours" / "x-epo.fif"
    meg_synth.write_epochs(ours, info, ev, table, lambda a, b: data[a:b], 3)
    assert sorted(p.name for p in ours.parent.iterdir()) == [
        "x-epo-1.fif",
        "x-epo-2.fif",
        "x-epo.fif",
    ]
    theirs = tmp_path / "theirs" / "x-epo.fif"
    theirs.parent.mkdir()
    event_id = {str(v): int(v) for v in ev[:, 2]}
    mne.EpochsArray(data, info, ev, fmt.TMIN, event_id, metadata=table, baseline=None,
                    verbose="error").save(theirs, split_size="3MB", verbose="error")  # fmt: skip
    a = mne.read_epochs(ours, preload=False, verbose="error")
    b = mne.read_epochs(theirs, preload=False, verbose="error")
    assert len(a._raw) == 3 and len(b._raw) > 1
    np.testing.assert_array_equal(a.get_data(), b.get_data())
    np.testing.assert_array_equal(a.get_data(), data)  # float32 on disk: exact
    np.testing.assert_array_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.metadata, b.metadata)


def test_preparation_splits_as_published(world, tmp_path):
    """Training: exp trials of non-test concepts, one repetition; test: the test images, one
    repetition a session; 0..1.0 s (201 samples) of the epochs, equal to MNE's own reading;
    mismatched trials dropped, their test repetitions NaN and averaged without."""
    out = tmp_path / "sub-01.h5"
    summary = prepare.run(world, 1, out)
    table = pd.read_csv(fmt.attributes_path(world, 1))
    epochs = mne.read_epochs(fmt.epochs_path(world, 1), preload=True, verbose="error")
    agree = epochs.events[:, 2] == fmt.expected_events(table)
    assert summary["dropped_mismatched"] == (~agree).sum()
    test_concepts = set(table[table.trial_type == "test"].image_path.map(fmt.concept_of))
    assert len(test_concepts) == WORLD.n_test_concepts
    with h5py.File(out) as f:
        train, test = f["train"][:], f["test"][:]
        ch_names = list(f["ch_names"].asstr()[:])
        assert f.attrs["modality"] == "meg" and len(f["times"]) == 201
        assert f["times"][0] == 0 and f["times"][-1] == pytest.approx(1.0)
    stimuli, concepts = brain_data.read_stimuli(out, "train")
    assert not set(concepts) & test_concepts and ch_names == epochs.ch_names
    exp_ok = (
        (table.trial_type == "exp")
        & agree
        & ~table.image_path.map(fmt.concept_of).isin(test_concepts)
    )
    assert train.shape == (exp_ok.sum(), 1, 271, 201) and sorted(stimuli) == list(stimuli)
    window = epochs.copy().crop(0.0, 1.0).get_data().astype(np.float32)
    for i in (0, len(stimuli) - 1):  # an independent reading of the same trial
        row = int(np.flatnonzero(exp_ok & (table.image_path == stimuli[i]))[0])
        np.testing.assert_array_equal(train[i, 0], window[row])
    test_stimuli, _ = brain_data.read_stimuli(out, "test")
    assert test.shape == (WORLD.n_test_concepts, WORLD.n_sessions, 271, 201)
    kept = table[(table.trial_type == "test") & agree].groupby("image_path").size()
    assert list(np.isfinite(test).all(axis=(2, 3)).sum(1)) == list(kept[test_stimuli])
    averaged = brain_data.load_averaged(out, "test")
    assert np.isfinite(averaged).all()
    i = int(np.argmin(kept[test_stimuli]))  # an image that lost a repetition
    assert kept[test_stimuli].iloc[i] < WORLD.n_sessions  # (the world's seed makes one)
    reps = test[i][np.isfinite(test[i]).all(axis=(1, 2))]
    np.testing.assert_allclose(
        averaged[i], brain_data.normalise_repetitions(reps).mean(0), rtol=1e-5
    )
    info = sensors.read(out)
    assert info["nchan"] == 271 and np.isfinite([c["loc"][:3] for c in info["chs"]]).all()


@pytest.mark.parametrize(
    "damage, message",
    [
        ("part", r"preprocessed_P1-epo.fif: its part preprocessed_P1-epo-1.fif is missing"),
        ("rows", r"sample_attributes_P1.csv: \d+ rows, but .*preprocessed_P1-epo.fif holds \d+ epochs"),
        ("column", r"sample_attributes_P1.csv: missing column\(s\) things_image_nr"),
        ("path", r"sample_attributes_P1.csv: row \d+ \(exp trial\) names image 'stimuli/x.jpg', not images_meg/"),
        ("test-path", r"sample_attributes_P1.csv: row \d+ \(test trial\) names image 'images_meg/"),
        ("other", r"sample_attributes_P1.csv: \d+ of its \d+ exp and test rows disagree .* not belong"),
        ("sensors", r"preprocessed_P1-epo.fif: 270 sensors, THINGS-MEG's derivative has 271"),
        ("sfreq", r"preprocessed_P1-epo.fif: sampled at 100 Hz, THINGS-MEG's derivative at 200 Hz"),
        ("csv", r"sample_attributes_P1.csv: sample attributes not found"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_leaves_nothing(world, tmp_path, damage, message):
    root = copy_world(world, tmp_path / "w")
    first, csv = fmt.epochs_path(root, 1), fmt.attributes_path(root, 1)
    table = pd.read_csv(csv)
    if damage == "part":
        first.with_name("preprocessed_P1-epo-1.fif").unlink()
    elif damage == "rows":
        table.iloc[:-1].to_csv(csv, index=False)
    elif damage == "column":
        table.drop(columns="things_image_nr").to_csv(csv, index=False)
    elif damage == "path":
        table.loc[int(np.flatnonzero(table.trial_type == "exp")[0]), "image_path"] = "stimuli/x.jpg"
        table.to_csv(csv, index=False)
    elif damage == "test-path":
        row = int(np.flatnonzero(table.trial_type == "test")[0])
        table.loc[row, "image_path"] = "images_meg/" + table.image_path[row].split("/")[-1]
        table.to_csv(csv, index=False)
    elif damage == "other":  # another participant's CSV: the same length, another order
        meg_synth.schedule(WORLD, meg_synth.image_table(WORLD), 2).to_csv(csv, index=False)
    elif damage == "csv":
        csv.unlink()
    else:
        epochs = mne.read_epochs(first, preload=True, verbose="error")
        if damage == "sensors":
            epochs.drop_channels(epochs.ch_names[-1])
        else:
            epochs.decimate(2, verbose="error")
        for old in first.parent.glob("*.fif"):
            old.unlink()
        epochs.save(first, split_size="4MB", verbose="error")
    out = tmp_path / "out" / "sub-01.h5"
    with pytest.raises(InputError, match=message) as err:
        prepare.run(root, 1, out)
    assert "\n" not in str(err.value)
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no partial output


@pytest.fixture
def openneuro(world):
    """ds004212 on loopback: two snapshots, participant 1's files in the newer one."""
    host = Mirror()
    for rel in ("derivatives", "sourcedata"):
        for path in sorted((world / rel).rglob("*")):
            if path.is_file():
                host.add("ds004212:2.0.1", str(path.relative_to(world)), path)
    host.add("ds004212:1.0.0", "README", b"an older snapshot")
    yield host
    host.close()


def mirrors(host, snapshot="ds004212"):
    return [{"name": "local", "type": "openneuro", "url": f"{host.url}/crn/graphql",
             "ids": {"participant": snapshot}}]  # fmt: skip


def test_download_from_openneuro_resumes_verifies_and_prepares(world, openneuro, tmp_path):
    """The latest snapshot's files of participant 1 (every epochs part and the CSV), verified
    against the SHA-256 in their annex keys; a cut transfer resumes with a Range request; the
    fetched participant prepares like the original."""
    parts = sorted(p.name for p in fmt.epochs_path(world, 1).parent.glob("*.fif"))
    second = f"derivatives/preprocessed/{parts[1]}"
    openneuro.cut[second] = 3 * (world / second).stat().st_size // 4  # past a 1 MiB block
    data = tmp_path / "data"
    placed = download.fetch(sources, "participant", data, mirrors(openneuro), subject=1, timeout=5)
    assert sorted(p.name for p in placed) == sorted([*parts, "sample_attributes_P1.csv"])
    assert placed[-1] == fmt.epochs_path(data, 1)  # the one the workflow waits for, last
    ranges = [r for p, r in openneuro.requests if p.endswith(second)]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and len(ranges) == 2
    for path in placed:
        assert path.read_bytes() == (world / path.relative_to(data)).read_bytes()
    assert not (data / "downloads").exists() and not list(data.glob(".staging*"))
    ours, theirs = prepare.run(data, 1, tmp_path / "a.h5"), prepare.run(world, 1, tmp_path / "b.h5")
    assert ours["train"] == theirs["train"] and ours["test"] == theirs["test"]


def test_download_refuses_altered_bytes_and_places_nothing(world, openneuro, tmp_path):
    path = "sourcedata/sample_attributes_P1.csv"
    openneuro.altered[path] = (world / path).read_bytes().replace(b"exp", b"EXP", 1)
    data = tmp_path / "data"
    with pytest.raises(InputError, match=r"no mirror could provide it \(local: checksum mismatch"):
        download.fetch(sources, "participant", data, mirrors(openneuro), subject=1, timeout=5)
    assert not fmt.epochs_path(data, 1).exists() and not fmt.attributes_path(data, 1).exists()
    # an unknown snapshot: OpenNeuro's error, in one line, and how to get the files by hand
    with pytest.raises(InputError, match=r"snapshot ds004212:9.9.9 not found.*openneuro.org"):
        download.fetch(sources, "participant", data, mirrors(openneuro, "ds004212:9.9.9"),
                       subject=1, timeout=5)  # fmt: skip


def test_participants_have_their_own_topographies():
    """Each participant's dipoles sit a little off the shared ones: topographies alike (as
    brains are), never equal (so leave-one-subject-out is not a copy of intra-subject)."""
    info = fmt.make_info()
    a, b = (meg_synth.brain_model(WORLD, info, p)["topographies"] for p in (1, 2))
    assert not np.allclose(a, b)
    r = [np.corrcoef(a[:, k], b[:, k])[0, 1] for k in range(a.shape[1])]
    assert 0.5 < np.median(r) < 0.999
    again = meg_synth.brain_model(WORLD, info, 1)["topographies"]
    np.testing.assert_array_equal(a, again)  # seeded


# --------------------------------------------------------------------------- decoding MEG
# The prepared window: 271 sensors x 201 samples (0..1.0 s at 200 Hz). The first layer each
# encoder's output head sees, derived from that shape alone (no MEG-specific code):
# NICE: (201 - 51 + 1 - 25) // 5 + 1 = 26 steps x 40 filters; ATM-S: its tokens are 250 wide,
# (250 - 51 + 1 - 25) // 5 + 1 = 36 x 40; EEGNet: 16 x (201 // 4 // 8); EEG Conformer:
# (201 - 10 + 1 - 25) // 5 + 1 = 34 tokens x 40.
MEG_TIMES = 201
HEAD_INPUTS = {"nice": 40 * 26, "atms": 40 * 36, "eegnet": 16 * 6, "eegconformer": 40 * 34}


def head_input(model) -> int:
    return (model.projector[0] if hasattr(model, "projector") else model.projection).in_features


@pytest.mark.parametrize("name", sorted(HEAD_INPUTS))
def test_every_brain_encoder_takes_meg_and_learns_in_one_step(name):
    """Built by the registry for 271 x 201 (no code change), a batch maps to the image
    embedding's dimension; one step of the training loop (train.train_epoch: symmetric
    InfoNCE, AdamW, clipping) takes the loss the package's own loss gives for that batch, a
    finite one, and changes every parameter (each has a gradient) and the temperature."""
    assert set(brain_encoders.REGISTRY) == set(HEAD_INPUTS)
    torch.manual_seed(0)
    dim, n = image_encoders.get("synth_resnet18").dim, 8
    model = brain_encoders.build(name, fmt.N_CHANNELS, MEG_TIMES, dim, n_subjects=2)
    assert head_input(model) == HEAD_INPUTS[name]
    x = torch.randn(n, fmt.N_CHANNELS, MEG_TIMES)
    subject = torch.tensor([0, 1] * (n // 2))
    out = model.eval()(x, subject)
    assert out.shape == (n, dim) and torch.isfinite(out).all()

    w = torch.nn.functional.normalize(torch.randn(n, dim), dim=1)
    data = train.TrainingSet(x, torch.arange(n), subject, w, n_subjects=2)
    recipe = train.Recipe(batch_size=n, lr=1e-3)
    scale = torch.nn.Parameter(torch.tensor(math.log(1 / recipe.temperature)))
    opt, params = train.optimiser(model, scale, recipe)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    # the batch the step will take (its seeded order, the same dropout draw), scored directly
    order = torch.randperm(n, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(1)
    v = torch.nn.functional.normalize(model.train()(x[order], subject[order]), dim=1)
    expected = train.symmetric_infonce(v, w[order], scale, order).item()
    torch.manual_seed(1)
    loss = train.train_epoch(model, data, torch.arange(n), recipe, opt, params, scale,
                             torch.Generator().manual_seed(5))  # fmt: skip
    assert math.isfinite(loss) and loss > 0
    assert loss == pytest.approx(expected, rel=1e-5)
    graded = {k for k, p in model.named_parameters() if p.grad is not None and p.grad.any()}
    changed = {k for k, p in model.named_parameters() if not torch.equal(p, before[k])}
    assert graded == changed == set(before)  # every parameter learns, none left out
    assert scale.item() != pytest.approx(math.log(1 / recipe.temperature), abs=1e-7)
    assert not torch.allclose(model.eval()(x, subject), out)


@pytest.fixture(scope="module")
def meg_decoding(world, tmp_path_factory):
    """Participants 1 (the world's) and 2 prepared; the image set of participant 1's images
    (fmt.image_set, image_sets.write) embedded with the synthetic encoder pair."""
    root = tmp_path_factory.mktemp("meg-decoding")
    shutil.copy(world / "synthetic_truth.h5", root)  # participant 2's features, from the world
    meg_synth.write_participant(root, 2, WORLD)
    prepare.run(world, 1, root / "sub-01.h5")
    prepare.run(root, 2, root / "sub-02.h5")
    table = fmt.read_attributes(fmt.attributes_path(world, 1))
    image_sets.write(root / "images.tsv", fmt.image_set(table, world), world, fmt.IMAGES_HOW)
    synthetic_things.write_encoders(world, root / "encoders")
    embed.run("synth_resnet18", root / "images.tsv", root / "encoders", root / "synth_resnet18.h5")
    embed.derive("synth_resnet18_glocal", root / "synth_resnet18.h5", root / "encoders",
                 root / "synth_resnet18_glocal.h5")  # fmt: skip
    return root


def test_leave_one_subject_out_on_meg(meg_decoding, monkeypatch):
    """Trained (regime inter) on participant 1's prepared file only, evaluated on participant
    2's: training reads participant 1's training partition and nothing else, evaluation
    participant 2's test partition and nothing else (as an unseen subject, index -1); the
    result is 4-way (the world's 4 test images), its top-1 a fraction. The world is too small
    for accuracy to mean anything (4 test images, 36 training images): the mechanics only."""
    root = meg_decoding
    p1, p2, emb = root / "sub-01.h5", root / "sub-02.h5", root / "synth_resnet18_glocal.h5"
    with h5py.File(p1) as a, h5py.File(p2) as b:
        assert a["train"].shape[2:] == b["train"].shape[2:] == (fmt.N_CHANNELS, MEG_TIMES)
        assert (a.attrs["subject"], b.attrs["subject"]) == (1, 2)
        assert not np.allclose(a["test"][:], b["test"][:], equal_nan=True)  # two participants
    np.testing.assert_array_equal(brain_data.read_stimuli(p1, "test")[0],
                                  brain_data.read_stimuli(p2, "test")[0])  # fmt: skip
    reads = []
    for fn in ("load_averaged", "read_stimuli"):
        real = getattr(brain_data, fn)
        monkeypatch.setattr(brain_data, fn, lambda path, part, real=real:
                            reads.append((Path(path).name, part)) or real(path, part))  # fmt: skip

    out = root / "inter-sub-02"
    info = train.run([p1], emb, "nice", 7, out, train.Recipe(epochs=3, batch_size=16, lr=1e-3),
                     threads=2, regime="inter", test_subject=2)  # fmt: skip
    assert set(reads) == {("sub-01.h5", "train")}
    reads.clear()
    with h5py.File(p1) as f:
        n_train = f["train"].shape[0]
    assert info["regime"] == "inter" and info["test_subject"] == 2
    assert info["brains"] == [str(p1)] and info["n_subjects"] == 1
    assert (info["n_channels"], info["n_times"], info["dim"]) == (fmt.N_CHANNELS, MEG_TIMES, 512)
    assert info["n_train_images"] + info["n_val_images"] == n_train
    assert info["image_encoder"] == "synth_resnet18_glocal"
    assert yaml.safe_load((out / "config.yaml").read_text()) == info
    assert len(pd.read_csv(out / "metrics.csv")) == 3

    result = evaluate.run(out / "model.pt", p2, emb, out / "retrieval.json",
                          {"regime": "inter", "subject": 2, "seed": 7})  # fmt: skip
    assert set(reads) == {("sub-02.h5", "test")}
    n_test = WORLD.n_test_concepts
    assert result["n_way"] == result["n_queries"] == n_test == 4
    assert 0 <= result["top1"] <= 1 and result["top5"] == 1.0  # 4-way: top-5 always holds
    assert result["modality"] == "meg" and result["subject"] == 2
    assert json.loads((out / "retrieval.json").read_text()) == result
    _, _, x, subject, w = evaluate.load_run(out / "model.pt", p2, emb)
    assert x.shape == (n_test, fmt.N_CHANNELS, MEG_TIMES) and w.shape == (n_test, 512)
    assert (subject == -1).all()  # a subject the model never met


@pytest.mark.parametrize("lost", ["train", "test", "folder"])
def test_an_image_set_missing_an_image_is_one_line_and_writes_nothing(world, tmp_path, lost):
    """A participant's image set (fmt.image_set) over an images folder that misses an image
    (train or test), or does not exist: one line naming the folder, how many are missing and
    the first, and how to get the THINGS images (fmt.IMAGES_HOW); no index written. The whole
    folder writes its index."""
    table = fmt.read_attributes(fmt.attributes_path(world, 1))
    folder = tmp_path / "things"
    for kind in ("exp", "test"):
        shutil.copytree(world / fmt.IMAGE_FOLDERS[kind], folder / fmt.IMAGE_FOLDERS[kind])
    whole = tmp_path / "whole" / "things-meg.tsv"
    image_sets.write(whole, fmt.image_set(table, folder), folder, fmt.IMAGES_HOW)
    index = image_sets.read(whole)
    assert (len(index["train"].stimuli), len(index["test"].stimuli)) == (
        WORLD.n_train_concepts * WORLD.n_sessions, WORLD.n_test_concepts)  # fmt: skip

    if lost == "folder":
        shutil.rmtree(folder)
        part, n_missing = "train", len(index["train"].stimuli)
        first = folder / index["train"].stimuli[0]
    else:
        part, n_missing = lost, 1
        first = folder / index[lost].stimuli[1]
        first.unlink()
    n = len(index[part].stimuli)
    out = tmp_path / "results" / "images" / "things-meg.tsv"
    with pytest.raises(InputError) as err:
        image_sets.write(out, fmt.image_set(table, folder), folder, fmt.IMAGES_HOW)
    message = str(err.value)
    assert message == (
        f"{folder}: {n_missing} of the {n} {part} images are missing (first: {first}); "
        f"{fmt.IMAGES_HOW}"
    )
    assert "\n" not in message and "things-initiative.org" in message and "images_dir" in message
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))


def test_paper_config_runs_the_published_meg_recipe(tmp_path):
    """config/things-meg.yaml: ds004212's 4 participants, both regimes, every brain encoder, the
    paper's seeds, pairs and recipes (the same as THINGS-EEG2's paper config); its dry run plans
    the downloads, preparations and runs of the MEG data set alone."""
    import re
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    paper = yaml.safe_load((repo / "config/things-meg.yaml").read_text())
    eeg = yaml.safe_load((repo / "config/things-eeg2.yaml").read_text())
    meg = paper["datasets"]["things-meg"]
    assert paper["decode"] == ["things-meg"] and meg["kind"] == "things-meg"
    assert meg["subjects"] == [1, 2, 3, 4] and meg["synthetic"] is False
    assert meg["regimes"] == ["intra", "inter"]
    assert meg["brain_encoders"] == ["nice", "atms", "eegnet", "eegconformer"]
    assert meg["prepare"] == {"tmin": 0.0, "tmax": 1.0}
    for key in ("seeds", "pairs", "train", "evaluate"):
        assert paper[key] == eeg[key], key
    (tmp_path / "fewer.yaml").write_text("seeds: [7]\n")
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(repo / "config/config.yaml"),
         str(repo / "config/things-meg.yaml"), str(tmp_path / "fewer.yaml"), "-n", "--quiet",
         "rules"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    counts = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", r.stdout + r.stderr, re.M)}
    runs = 4 * 2 * 4 * 42  # participants x regimes x brain encoders x image encoders
    assert counts["download_participant_things_meg"] == 4 and counts["things_meg_prepare"] == 4
    assert counts["things_meg_image_set"] == 1 and counts["train"] == runs
    assert not [job for job in counts if "eeg" in job or "synth" in job]


def test_real_meg_without_images_dir_fails_at_start_up(tmp_path):
    """The THINGS images are not in ds004212: a real MEG data set needs the user's folder."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "no_images.yaml").write_text("datasets: {things-meg: {images_dir: null}}\n")
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(repo / "config/config.yaml"),
         str(repo / "config/things-meg.yaml"), str(tmp_path / "no_images.yaml"), "-n"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode != 0
    assert "config: datasets.things-meg.images_dir is not set" in r.stdout + r.stderr
    assert not (tmp_path / "results").exists()
