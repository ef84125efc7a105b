"""Figures per data set: only the data set's rows drawn, its name in the title, and spatial maps
of EEG (10-20 positions) and MEG (the sensor positions stored in a brain file)."""

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from visdecode import figures, sensors, tables
from visdecode.datasets.things_eeg2.format import CH_NAMES
from visdecode.datasets.things_meg import format as meg_format
from visdecode.errors import InputError

PAIRS = [
    {"name": "A", "aligned": "a_glocal", "unaligned": "a"},
    {"name": "B", "aligned": "b_dreamsim", "unaligned": "b"},
]
EEG, MEG = "things-eeg2-synthetic", "things-meg-synthetic"


@pytest.fixture
def drawn(monkeypatch):
    """The figures saved during a test (still drawn: save only closes them)."""
    figs = []
    save = figures.save

    def keep(fig, outs, dpi):
        figs.append(fig)
        save(fig, outs, dpi)

    monkeypatch.setattr(figures, "save", keep)
    return figs


def non_blank(path, size):
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == size
        pixels = np.asarray(img.convert("L"), dtype=float)
    assert pixels.std() > 20 and (pixels < 200).mean() > 0.01


# ------------------------------------------------------------------ retrieval, two data sets
def retrieval_rows(dataset, regimes, brains, level, n_subjects=4, seeds=(1, 2), seed=0):
    """Rows of one data set: every pair, aligned above unaligned; top-1 around `level`."""
    rng = np.random.default_rng(seed)
    rows = []
    for regime in regimes:
        for brain in brains:
            for p in PAIRS:
                for s in range(1, n_subjects + 1):
                    for seed_ in seeds:
                        for alignment, gain in (("unaligned", 0.0), ("aligned", 0.05)):
                            top1 = level + gain + rng.uniform(-0.02, 0.02)
                            rows.append({
                                "dataset": dataset, "modality": dataset.split("-")[1],
                                "regime": regime, "subject": s, "brain_encoder": brain,
                                "image_encoder": p[alignment], "alignment": alignment,
                                "pair": p["name"], "seed": seed_, "n_way": 200, "top1": top1,
                                "top5": min(1.0, 3 * top1),
                            })  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory):
    """retrieval.csv and stats.csv of an EEG data set (intra, nice; top-1 ~10%) and a MEG one
    (intra and inter, atms and nice; ~50%); the corrected p of each data set told apart."""
    df = pd.concat([
        retrieval_rows(EEG, ["intra"], ["nice"], 0.1),
        retrieval_rows(MEG, ["intra", "inter"], ["atms", "nice"], 0.5, seed=1),
    ])  # fmt: skip
    root = tmp_path_factory.mktemp("tables")
    df.to_csv(root / "retrieval.csv", index=False)
    tables.write_statistics(root / "retrieval.csv", root / "stats.csv")
    st = pd.read_csv(root / "stats.csv")
    assert set(st.dataset) == {EEG, MEG}
    st["t_p_corrected"] = np.where(st.dataset == EEG, 0.0123, 0.456)  # the default test's
    st.to_csv(root / "stats.csv", index=False)
    return df, root


def seed_means(df, dataset):
    d = df[df.dataset == dataset]
    return d.groupby(["regime", "brain_encoder", "pair", "alignment", "subject"]).top1.mean() * 100


def test_aligned_vs_unaligned_draws_only_the_data_sets_rows(two_datasets, drawn):
    df, root = two_datasets
    table, stats = root / "retrieval.csv", root / "stats.csv"
    assert figures.aligned_vs_unaligned(table, stats, [root / "e.png"], 50, dataset=EEG) == (1, 1)
    ax = drawn[-1].axes[0]
    means = seed_means(df, EEG).groupby(["pair", "alignment"]).mean()
    expected = sorted(
        (i + (j - 0.5) * 0.4, means[(pair, alignment)])
        for i, pair in enumerate(["A", "B"])
        for j, alignment in enumerate(figures.ALIGNMENTS)
    )
    bars = sorted((b.get_x() + b.get_width() / 2, b.get_height()) for b in ax.patches)
    assert np.allclose(bars, expected)  # the EEG rows' means (~10%), not the MEG ones (~50%)
    labels = [t.get_text() for t in ax.texts]
    assert labels == ["* (p=0.012)"] * 2  # the EEG rows of stats.csv
    figures.aligned_vs_unaligned(table, stats, [root / "m.png"], 50, dataset=MEG)
    assert len(drawn[-1].axes) == 4
    heights = [b.get_height() for ax in drawn[-1].axes for b in ax.patches]
    assert len(heights) == 16 and min(heights) > 40
    assert {t.get_text() for ax in drawn[-1].axes for t in ax.texts} == {"n.s. (p=0.46)"}


def test_per_subject_draws_only_the_data_sets_rows(two_datasets, drawn):
    df, root = two_datasets
    assert figures.per_subject(root / "retrieval.csv", [root / "s.png"], 50, dataset=EEG) == (2, 1)
    top1 = drawn[-1].axes[0]  # the first row: top-1
    points = np.concatenate([c.get_offsets() for c in top1.collections if len(c.get_offsets())])
    wide = seed_means(df, EEG).unstack("alignment")
    expected = wide[["unaligned", "aligned"]].to_numpy()
    assert np.allclose(sorted(map(tuple, points)), sorted(map(tuple, expected)))
    assert figures.per_subject(root / "retrieval.csv", [root / "m.png"], 50, dataset=MEG) == (2, 4)


@pytest.mark.parametrize("name", ["aligned_vs_unaligned", "per_subject"])
def test_a_table_of_two_data_sets_needs_one_named(two_datasets, name):
    _, root = two_datasets
    args = [root / "retrieval.csv"] + [root / "stats.csv"] * (name == "aligned_vs_unaligned")
    draw = getattr(figures, name)
    with pytest.raises(InputError) as err:
        draw(*args, [root / "f.png"], 50)
    message = str(err.value)
    assert EEG in message and MEG in message and "\n" not in message
    with pytest.raises(InputError, match="no rows of data set 'things-meg'") as err:
        draw(*args, [root / "f.png"], 50, dataset="things-meg")
    assert "\n" not in str(err.value)
    assert not (root / "f.png").exists()


def test_a_table_of_one_data_set_needs_no_name(two_datasets, drawn):
    df, root = two_datasets
    df[df.dataset == MEG].to_csv(root / "meg.csv", index=False)
    assert figures.per_subject(root / "meg.csv", [root / "one.png"], 50) == (2, 4)
    assert drawn[-1].get_suptitle().startswith(f"{MEG}\n")


# ------------------------------------------------------------------ attribution maps
def write_attribution(path, ch_names, rng, peak, occipital_gain):
    """An attribution.h5 as attribution.py writes it: profiles summing to 1, axes, channels."""
    t = np.arange(200) / 200
    freqs = np.fft.rfftfreq(200, 1 / 200)
    temporal = np.exp(-((t - peak) ** 2) / 0.005) + 0.01
    back = np.array([c.startswith("O") or c[2:3] == "O" for c in ch_names])  # O1, MLO11, ...
    spatial = rng.uniform(0.5, 1, len(ch_names)) + occipital_gain * back
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        for key, v in (
            ("temporal", temporal),
            ("spectral", np.exp(-freqs / 10)),
            ("spatial", spatial),
        ):
            f[key] = (v / v.sum()).astype(np.float32)
        f["times"], f["freqs"] = t.astype(np.float32), freqs.astype(np.float32)
        f["ch_names"] = np.array(ch_names, dtype=h5py.string_dtype())


def brain_file(path, info):
    """The sensors part of a brain-data file, as a data set's preparation writes it."""
    with h5py.File(path, "w") as f:
        f["ch_names"] = np.array(info.ch_names, dtype=h5py.string_dtype())
        sensors.write(f, info)
    return path


def attribution_files(root, dataset, ch_names, subjects=(1, 2)):
    rng = np.random.default_rng(0)
    files = []
    for subject in subjects:
        for enc, gain in (("a", 0.5), ("a_glocal", 1.5)):
            path = root / f"runs/{dataset}/intra/sub-{subject:02d}/nice/{enc}/seed-7/attribution.h5"
            write_attribution(path, ch_names, rng, 0.2, gain)
            files.append(path)
    return files


@pytest.fixture(scope="module")
def meg(tmp_path_factory):
    root = tmp_path_factory.mktemp("meg")
    info = meg_format.make_info()
    return brain_file(root / "sub-01.h5", info), attribution_files(root, MEG, info.ch_names)


def test_meg_spatial_maps_at_the_stored_sensor_positions(tmp_path, meg, drawn):
    brain, files = meg
    out = tmp_path / "spatial.png"
    assert figures.spatial_importance(files, PAIRS[:1], [out], 100, sensors=brain) == (1, 3)
    non_blank(out, (round(figures.PAGE_WIDTH * 100), 250))
    fig = drawn[-1]
    info = sensors.read(brain)
    for ax in fig.axes[:3]:  # the three maps (then the colour bars)
        (dots,) = [c for c in ax.collections if len(c.get_offsets()) == len(info.ch_names)]
        head = ax.lines[0].get_xydata()  # the head circle
        centre = (head.min(0) + head.max(0)) / 2
        radius = (head.max(0) - head.min(0)).mean() / 2
        dist = np.linalg.norm(dots.get_offsets() - centre, axis=1)
        assert dist.max() < radius and dist.max() > 0.9 * radius  # sensors fill the head
    # Occipital sensors (MLO, MRO, MZO) at the back of the head (bottom), left ones on the left.
    dots = dots.get_offsets()
    group = np.array([c[1:3] for c in info.ch_names])
    back, front = np.char.endswith(group, "O"), np.char.endswith(group, "F")
    left, right = np.char.startswith(group, "L"), np.char.startswith(group, "R")
    assert dots[back, 1].mean() < centre[1] < dots[front, 1].mean()
    assert dots[left, 0].mean() < centre[0] < dots[right, 0].mean()


def test_spatial_channels_must_match_the_sensor_file(tmp_path, meg):
    brain, files = meg
    names = meg_format.make_info().ch_names
    swapped = [names[1], names[0], *names[2:]]
    bad = attribution_files(tmp_path, MEG, swapped, subjects=(3,))
    with pytest.raises(InputError) as err:
        figures.spatial_importance(files + bad, PAIRS[:1], [tmp_path / "f.png"], 50, sensors=brain)
    message = str(err.value)
    assert str(bad[0]) in message and str(brain) in message and "\n" not in message
    assert f"channel 0 is {names[1]}, not {names[0]}" in message and "1 more" in message
    assert not (tmp_path / "f.png").exists()


def test_eeg_spatial_maps_are_the_same_with_a_sensor_file(tmp_path):
    files = attribution_files(tmp_path, EEG, CH_NAMES, subjects=(1,))
    brain = brain_file(tmp_path / "sub-01.h5", sensors.standard_eeg(CH_NAMES, 250.0))
    outs = [tmp_path / "none.png", tmp_path / "file.png"]
    figures.spatial_importance(files, PAIRS[:1], outs[:1], 50)
    figures.spatial_importance(files, PAIRS[:1], outs[1:], 50, sensors=brain)
    a, b = (np.asarray(Image.open(o)) for o in outs)
    assert a.shape == b.shape and (a == b).all()


# ------------------------------------------------------------------ titles
@pytest.mark.parametrize(
    "name", ["temporal_importance", "spectral_importance", "spatial_importance"]
)
def test_attribution_titles_name_the_data_set(tmp_path, meg, drawn, name):
    brain, files = meg
    kwargs = {"sensors": brain} if name == "spatial_importance" else {}
    draw = getattr(figures, name)
    draw(files, PAIRS[:1], [tmp_path / "f.png"], 30, dataset=MEG, **kwargs)
    assert drawn[-1].get_suptitle().startswith(f"{MEG}\n")
    draw(files, PAIRS[:1], [tmp_path / "f.png"], 30, **kwargs)
    assert not drawn[-1].get_suptitle().startswith(MEG)


def test_table_and_curve_titles_name_the_data_set(two_datasets, drawn):
    _, root = two_datasets
    table, stats = root / "retrieval.csv", root / "stats.csv"
    figures.aligned_vs_unaligned(table, stats, [root / "a.png"], 30, dataset=MEG)
    figures.per_subject(table, [root / "b.png"], 30, dataset=EEG)
    metrics = root / f"runs/{MEG}/intra/sub-01/nice/a/seed-7/metrics.csv"
    metrics.parent.mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 2], "train_loss": [5, 4], "val_loss": [5, 4.5],
                  "val_top1": [0.01, 0.02]}).to_csv(metrics, index=False)  # fmt: skip
    figures.training_curves([metrics], PAIRS[:1], [root / "c.png"], 30, dataset=MEG)
    titles = [f.get_suptitle() for f in drawn]
    assert [t.split("\n")[0] for t in titles] == [MEG, EEG, MEG]
    assert titles[0].startswith(f"{MEG}\n200-way retrieval")
