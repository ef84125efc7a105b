"""THINGS-MEG: the synthetic world's format, preparation, bad input, and the download from
OpenNeuro (its GraphQL API on loopback, tests/mirror.py)."""

import shutil

import h5py
import mne
import numpy as np
import pandas as pd
import pytest

from mirror import Mirror

from visdecode import brain_data, download, sensors
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
