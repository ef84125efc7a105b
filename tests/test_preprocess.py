"""Preprocessing equals the published algorithm, and fails cleanly on bad input."""

import h5py
import mne
import numpy as np
import pytest
from sklearn.discriminant_analysis import _cov

import published
from visdecode.datasets.things_eeg2 import preprocess
from visdecode.datasets.things_eeg2 import format as fmt
from visdecode.errors import InputError

PARAMS = dict(train_reps=2, test_reps=4)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks as small as the tiny world needs to go through every block boundary: many
    sample blocks per file, several GEMM blocks per sample block, several write batches."""
    monkeypatch.setattr(preprocess, "CHUNK_SAMPLES", 2048)
    monkeypatch.setattr(preprocess, "EPOCH_BLOCK", 8)
    monkeypatch.setattr(preprocess, "WRITE_BATCH", 16)
    monkeypatch.setattr(preprocess, "LW_BATCH", 64)


@pytest.mark.parametrize("p, n", [(7, 40), (7, 3), (63, 250), (63, 20)], ids=str)
def test_ledoit_wolf_sum_equals_sklearn(p, n):
    """Both Gram sides (p <= n, p > n), awkward problems included, in float64 and float32."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, n, p)) @ rng.normal(size=(p, p)) + rng.normal(size=p)
    x[1] *= 1e-6  # scale must not matter
    x[2] = x[2, :2].repeat(n, axis=0)[:n]  # two distinct samples
    x[3, :, 0] = 5.0  # a constant feature
    expected = sum(_cov(problem, shrinkage="auto") for problem in x)
    x_t = x.transpose(0, 2, 1)  # (batch, features, samples)
    np.testing.assert_allclose(
        preprocess.ledoit_wolf_sum(x_t.copy()), expected, rtol=1e-10, atol=1e-12
    )
    ours32 = preprocess.ledoit_wolf_sum(x_t.astype(np.float32))
    assert np.abs(ours32 - expected).max() < 1e-5 * np.abs(expected).max()


def test_resample_equals_mne():
    x = np.random.default_rng(1).normal(size=(3, 4, 1201))
    ref = mne.filter.resample(x, up=250, down=1000, npad="auto", window="auto", pad="edge")
    np.testing.assert_allclose(preprocess.resample(x, 250, 1000), ref, rtol=0, atol=1e-12)
    ref = mne.filter.resample(x, up=100, down=1000, npad="auto", window="auto", pad="edge")
    np.testing.assert_allclose(preprocess.resample(x, 100, 1000), ref, rtol=0, atol=1e-12)


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """Per condition, repetitions matched by sorting (order-independent), max-normalised."""
    key = lambda a: np.sort(a.reshape(a.shape[0], -1), axis=0)  # noqa: E731
    return float(np.abs(key(ours) - key(ref)).max() / np.abs(ref).max())


# every combination for "epochs"; for "time" (whose published steps take ~40 s here) two that
# between them take each value of cov_fit and channels
@pytest.mark.parametrize(
    "options",
    [
        dict(mvnn="epochs", cov_fit=cov_fit, channels=channels)
        for cov_fit in ("train", "both")
        for channels in ("all", "occipito-parietal")
    ]
    + [
        dict(mvnn="time", cov_fit="both", channels="all"),
        dict(mvnn="time", cov_fit="train", channels="occipito-parietal"),
        dict(mvnn="none", cov_fit="train", channels="all"),
    ],
    ids=lambda o: "-".join(o.values()),
)
def test_equals_published_algorithm(world, tmp_path, options):
    params = preprocess.Params(**PARAMS, **options)
    out = tmp_path / "sub-01.h5"
    preprocess.run(world, 1, out, params)
    ref = published.preprocess_subject(lambda *a: fmt.raw_path(world, *a), 1, 4, params)
    with h5py.File(out) as f:
        n_ch = 63 if options["channels"] == "all" else 17
        assert f["train"].shape == (24, 4, n_ch, 250) and f["train"].dtype == np.float32
        assert f["test"].shape == (6, 16, n_ch, 250)
        assert list(f["train_codes"][:]) == sorted(ref["training"])
        # each condition's stimulus: the image its event code names (metadata row code - 1)
        meta = fmt.load_image_metadata(world / "images" / "image_metadata.npy")
        for name, key in (("train", "train"), ("test", "test")):
            folder = "training" if name == "train" else "test"
            expected = [
                f"{folder}_images/{meta[f'{key}_img_concepts'][c - 1]}/{meta[f'{key}_img_files'][c - 1]}"
                for c in f[f"{name}_codes"][:]
            ]
            assert list(f[f"{name}_stimuli"].asstr()[:]) == expected
            concepts = [meta[f"{key}_img_concepts"][c - 1].split("_", 1)[1] for c in f[f"{name}_codes"][:]]
            assert list(f[f"{name}_concepts"].asstr()[:]) == concepts
        assert f.attrs["mvnn"] == options["mvnn"]
        np.testing.assert_allclose(f["times"][:], np.arange(250) / 250)
        for part, name in (("training", "train"), ("test", "test")):
            data, codes = f[name][:], f[f"{name}_codes"][:]
            for i, code in enumerate(codes):
                assert relative_error(data[i], ref[part][int(code)]) < 1e-4


def test_output_does_not_depend_on_threads_or_blocks(world, tmp_path, monkeypatch):
    """Bit-identical for 1 and 3 threads; equal to float32 precision with other block sizes
    (the blocks' centring constants differ)."""
    paths = [tmp_path / f"{name}.h5" for name in ("one", "three", "big")]
    for path, threads in zip(paths, (1, 3)):
        preprocess.run(world, 1, path, preprocess.Params(**PARAMS), threads=threads)
    monkeypatch.setattr(preprocess, "CHUNK_SAMPLES", 1 << 15)
    monkeypatch.setattr(preprocess, "EPOCH_BLOCK", 256)
    preprocess.run(world, 1, paths[2], preprocess.Params(**PARAMS), threads=2)
    one, three, big = (h5py.File(p) for p in paths)
    for name in ("train", "test"):
        np.testing.assert_array_equal(one[name][:], three[name][:])
        assert np.abs(one[name][:] - big[name][:]).max() < 1e-5 * np.abs(big[name][:]).max()


def test_large_offsets_and_drifts_keep_float32_precision(world, tmp_path):
    """Raw EEG on a DC offset 10^4 times its spread (removed exactly by the block centring),
    drifting by 100 times its spread over the session (about 30 times within a block of
    samples here): the float32 projection still equals the published float64 steps."""
    root = copy_world(world, tmp_path)
    for part in fmt.PARTITIONS:
        path = fmt.raw_path(root, 1, 1, part)

        def offset(raw):
            data = raw["raw_eeg_data"].copy()
            eeg, spread = data[:-1], data[:-1].std()
            eeg += spread * (1e4 + 1e2 * np.linspace(0, 1, eeg.shape[1]))
            return data

        rewrite(path, raw_eeg_data=offset)
    params = preprocess.Params(**PARAMS, n_sessions=1)
    out = tmp_path / "sub-01.h5"
    preprocess.run(root, 1, out, params)
    ref = published.preprocess_subject(lambda *a: fmt.raw_path(root, *a), 1, 1, params)
    with h5py.File(out) as f:
        for part, name in (("training", "train"), ("test", "test")):
            for code, data in zip(f[f"{name}_codes"][:], f[name][:]):
                assert relative_error(data, ref[part][int(code)]) < 1e-4


# ---------------------------------------------------------------------- bad input
def copy_world(world, tmp_path):
    import shutil

    root = tmp_path / "world"
    shutil.copytree(world / "images", root / "images")
    shutil.copytree(world / "raw_eeg", root / "raw_eeg")
    return root


def rewrite(path, **changes):
    raw = np.load(path, allow_pickle=True).item()
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value(raw) if callable(value) else value
    np.save(path, raw, allow_pickle=True)


def set_sample(raw, row, col, value):
    data = raw["raw_eeg_data"].copy()
    data[row, col] = value
    return data


def drop_stim(raw):
    raw["ch_names"] = raw["ch_names"][:-1]
    raw["ch_types"] = raw["ch_types"][:-1]
    return raw["raw_eeg_data"][:-1]


def bad_code(raw):
    data = raw["raw_eeg_data"].copy()
    first = np.flatnonzero(data[-1])[0]
    data[-1, first] = 5000
    return data


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing", "raw session file not found"),
        ("truncated", "truncated or corrupt"),
        ("no_key", "lacks key(s) sfreq"),
        ("no_stim", "no 'stim' channel"),
        ("nan", "non-finite sample (NaN or inf) in channel AF7 at sample 1000"),
        ("inf", "non-finite sample (NaN or inf) in channel AF7 at sample 1000"),
        ("code", "event code 5000 outside the known range 1..24"),
        ("reps", "fewer than the 9 asked for"),
    ],
)
def test_bad_input_fails_with_one_clear_line(world, tmp_path, damage, message):
    root = copy_world(world, tmp_path)
    path = fmt.raw_path(root, 1, 2, "training")
    params = preprocess.Params(**PARAMS)
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "no_key":
        rewrite(path, sfreq=None)
    elif damage == "no_stim":
        rewrite(path, raw_eeg_data=drop_stim)
    elif damage in ("nan", "inf"):
        value = np.nan if damage == "nan" else -np.inf
        rewrite(path, raw_eeg_data=lambda r: set_sample(r, 2, 1000, value))
    elif damage == "code":
        rewrite(path, raw_eeg_data=bad_code)
    elif damage == "reps":
        params = preprocess.Params(train_reps=9, test_reps=4)
    out = tmp_path / "out" / "sub-01.h5"
    with pytest.raises(InputError) as err:
        preprocess.run(root, 1, out, params)
    text = str(err.value)
    assert message in text and "\n" not in text
    if damage != "reps":
        assert str(path) in text
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
