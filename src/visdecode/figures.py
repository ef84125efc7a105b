"""Stage `figures`: the paper's figures for this run, PNG and PDF, at paper width.

Every figure is PAGE_WIDTH inches wide (a two-column page) and saved at `dpi` without tight
bounding boxes, so its pixel size is known from its layout (tests check it). Runs are named by
their results path (RUN in rules/common.smk): .../<regime>/sub-XX/<brain>/<image>/seed-N/...
Figures are per data set: given `dataset`, a figure's title starts with its name.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from visdecode import attribution, brain_data, evaluate, image_sets  # noqa: E402
from visdecode import sensors as brain_sensors  # noqa: E402
from visdecode.errors import InputError  # noqa: E402
from visdecode.io import atomic_path  # noqa: E402

log = logging.getLogger(__name__)

PAGE_WIDTH = 7.2  # inches
PALETTE = {"unaligned": "#8c8c8c", "aligned": "#1f77b4"}
ALIGNMENTS = ("unaligned", "aligned")
REGIME_LABEL = {"intra": "per subject", "inter": "leave-one-subject-out"}
TEST_LABEL = {"wilcoxon": "Wilcoxon signed-rank test", "t": "paired t-test"}
RUN_PATH = re.compile(
    r"(?P<regime>[^/]+)/sub-(?P<subject>\d+)/(?P<brain_encoder>[^/]+)/"
    r"(?P<image_encoder>[^/]+)/seed-(?P<seed>\d+)/[^/]+$"
)


def theme() -> None:
    sns.set_theme(style="whitegrid", context="paper", font_scale=0.9)
    plt.rcParams.update({"axes.titlesize": 9, "figure.titlesize": 10, "legend.fontsize": 7})


def save(fig, outs: list[Path | str], dpi: int) -> None:
    """Every output (its format from its suffix), each written atomically."""
    for out in outs:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=dpi, format=Path(out).suffix.lstrip("."))
    plt.close(fig)
    log.info("wrote %s", ", ".join(map(str, outs)))


def suptitle(fig, text: str, dataset: str | None = None, **kwargs) -> None:
    """The figure's title, led by the data set's name (a line of its own) when one is given."""
    fig.suptitle(f"{dataset}\n{text}" if dataset else text, **kwargs)


def dataset_rows(path: Path | str, dataset: str | None) -> tuple[pd.DataFrame, str]:
    """The rows of one data set of a results table (column `dataset`) and its name: `dataset`,
    or with None the table's only data set."""
    df = pd.read_csv(path)
    found = sorted(map(str, df["dataset"].unique())) if "dataset" in df else []
    if dataset is None:
        if len(found) != 1:
            raise InputError(
                f"{path}: holds data sets {found}; a figure shows one, name it (dataset)"
            )
        dataset = found[0]
    rows = df[df["dataset"].astype(str) == dataset] if "dataset" in df else df.iloc[:0]
    if rows.empty:
        raise InputError(f"{path}: no rows of data set {dataset!r} (it holds {found})")
    return rows, dataset


def run_identity(path: Path | str) -> dict:
    """regime, subject, brain_encoder, image_encoder and seed of a file in a run directory."""
    m = RUN_PATH.search(Path(path).as_posix())
    if not m:
        raise InputError(
            f"{path}: not inside a run directory <regime>/sub-XX/<brain>/<image>/seed-N"
        )
    d = m.groupdict()
    return {**d, "subject": int(d["subject"]), "seed": int(d["seed"])}


def pair_of(pairs: list[dict]) -> dict:
    """image encoder -> [(pair name, alignment), ...]"""
    out: dict = {}
    for p in pairs:
        for alignment in ALIGNMENTS:
            out.setdefault(p[alignment], []).append((p["name"], alignment))
    return out


def stars(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "n.s."


def panels(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    regimes = sorted(df.regime.unique(), key=lambda r: (r != "intra", r))
    return regimes, sorted(df.brain_encoder.unique())


def per_subject_means(df: pd.DataFrame) -> pd.DataFrame:
    """Seeds averaged: one row per regime, pair, brain encoder, alignment and subject (%)."""
    out = df.groupby(
        ["regime", "pair", "brain_encoder", "alignment", "subject"], as_index=False
    ).agg(top1=("top1", "mean"), top5=("top5", "mean"), n_way=("n_way", "first"))
    out[["top1", "top5"]] *= 100
    return out


# ------------------------------------------------------------------ 1. aligned vs unaligned
def aligned_vs_unaligned(
    table, stats_table, outs, dpi: int = 300, test: str = "t", dataset=None
) -> tuple[int, int]:
    """Per pair, top-1 of the aligned and the unaligned encoder: bars the mean over subjects
    (each averaged over seeds), points the subjects, error bars the s.e.m., dashed line
    chance, stars the corrected p of `test` (wilcoxon or t) from stats.csv. Grid: regime
    (rows) x brain encoder (columns). Only the rows of `dataset` (both tables; None: the
    retrieval table's only data set). Returns the grid shape."""
    rows, dataset = dataset_rows(table, dataset)
    df = per_subject_means(rows)
    st = pd.read_csv(stats_table)
    st = st[st["dataset"].astype(str) == dataset] if "dataset" in st else st
    st = st[st.metric == "top1"] if len(st) else st
    regimes, brains = panels(df)
    pairs = sorted(df.pair.unique())
    chance = 100 / int(df.n_way.iloc[0])
    theme()
    fig, axes = plt.subplots(
        len(regimes), len(brains), figsize=(PAGE_WIDTH, 2.6 * len(regimes)),
        squeeze=False, constrained_layout=True,
    )  # fmt: skip
    rng = np.random.default_rng(0)  # horizontal jitter of subject points only
    for r, regime in enumerate(regimes):
        for c, brain in enumerate(brains):
            ax = axes[r, c]
            d = df[(df.regime == regime) & (df.brain_encoder == brain)]
            top = 0.0
            for i, pair in enumerate(pairs):
                for j, alignment in enumerate(ALIGNMENTS):
                    v = d[(d.pair == pair) & (d.alignment == alignment)].top1.to_numpy()
                    if not len(v):
                        continue
                    x = i + (j - 0.5) * 0.4
                    sem = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
                    ax.bar(x, v.mean(), 0.38, color=PALETTE[alignment],
                           label=alignment if i == 0 else None)  # fmt: skip
                    ax.errorbar(x, v.mean(), sem, color="black", capsize=3, lw=1)
                    ax.scatter(x + rng.uniform(-0.04, 0.04, len(v)), v, s=9, color="black",
                               alpha=0.7, zorder=3, linewidths=0)  # fmt: skip
                    top = max(top, v.max(), v.mean() + sem)
                s = st[(st.regime == regime) & (st.brain_encoder == brain) & (st.pair == pair)]
                if len(s):
                    p = float(s[f"{test}_p_corrected"].iloc[0])
                    y = top * 1.06 + 0.5
                    ax.plot([i - 0.2, i - 0.2, i + 0.2, i + 0.2], [y - 0.4, y, y, y - 0.4],
                            color="black", lw=0.8)  # fmt: skip
                    label = stars(p) + (f" (p={p:.2g})" if np.isfinite(p) else "")
                    ax.text(i, y, label, ha="center", va="bottom", fontsize=7)
            ax.axhline(chance, ls="--", color="crimson", lw=0.8, label=f"chance {chance:.1f}%")
            ax.set_xticks(range(len(pairs)), pairs, rotation=20 if len(pairs) > 2 else 0)
            ax.set_title(f"{brain}, {REGIME_LABEL.get(regime, regime)}")
            ax.set_ylabel("top-1 accuracy (%)" if c == 0 else "")
            ax.set_ylim(0, max(top * 1.25 + 2, chance * 2))
            ax.grid(axis="x", visible=False)
            if r == 0 and c == 0:
                ax.legend(loc="upper left", frameon=False)
    n_way, n_sub = int(df.n_way.iloc[0]), df.subject.nunique()
    suptitle(
        fig,
        f"{n_way}-way retrieval, {n_sub} subjects (points), mean \u00b1 s.e.m.; "
        f"two-sided {TEST_LABEL[test]} over subjects, "
        f"{st.correction.iloc[0] if len(st) else 'no'}-corrected",
        dataset,
    )
    save(fig, outs, dpi)
    return len(regimes), len(brains)


# ------------------------------------------------------------------ 2. per subject
def per_subject(table, outs, dpi: int = 300, dataset=None) -> tuple[int, int]:
    """Each subject's top-1 and top-5 (seed means): unaligned (x) against aligned (y) per
    pair; above the diagonal, alignment helped. Grid: metric (rows) x regime and brain
    encoder (columns). Only the rows of `dataset` (None: the table's only data set)."""
    rows, dataset = dataset_rows(table, dataset)
    df = per_subject_means(rows)
    regimes, brains = panels(df)
    cols = [(r, b) for r in regimes for b in brains]
    wide = df.pivot_table(
        index=["regime", "brain_encoder", "pair", "subject"], columns="alignment",
        values=["top1", "top5"],
    ).reset_index()  # fmt: skip
    pairs = sorted(df.pair.unique())
    colours = dict(zip(pairs, sns.color_palette("tab10", len(pairs))))
    theme()
    fig, axes = plt.subplots(
        2, len(cols), figsize=(PAGE_WIDTH, 2 * max(1.8, PAGE_WIDTH / max(len(cols), 2))),
        squeeze=False, constrained_layout=True,
    )  # fmt: skip
    for r, metric in enumerate(("top1", "top5")):
        for c, (regime, brain) in enumerate(cols):
            ax = axes[r, c]
            d = wide[(wide.regime == regime) & (wide.brain_encoder == brain)]
            x, y = d[(metric, "unaligned")], d[(metric, "aligned")]
            lim = (0, max(min(float(np.nanmax([x.max(), y.max()])) * 1.15, 100.0), 1.0))
            ax.plot(lim, lim, color="black", lw=0.7, ls=":")
            for pair in pairs:
                m = d.pair == pair
                ax.scatter(x[m], y[m], s=16, color=colours[pair], label=pair, zorder=3)
                for xi, yi, s in zip(x[m], y[m], d.subject[m]):
                    ax.annotate(f"{s:02d}", (xi, yi), fontsize=5, xytext=(2, 2),
                                textcoords="offset points")  # fmt: skip
            ax.set(xlim=lim, ylim=lim, aspect="equal")
            label = {"top1": "top-1", "top5": "top-5"}[metric]
            ax.set_xlabel(f"unaligned {label} (%)")
            ax.set_ylabel(f"aligned {label} (%)" if c == 0 else "")
            if r == 0:
                ax.set_title(f"{brain}, {REGIME_LABEL.get(regime, regime)}")
    axes[0, 0].legend(loc="upper left", frameon=False, title="pair", title_fontsize=7)
    suptitle(
        fig, "Per subject (seed means): above the diagonal, the aligned encoder did better", dataset
    )
    save(fig, outs, dpi)
    return 2, len(cols)


# ------------------------------------------------------------------ 3-5. attribution
def load_attributions(files: list[Path | str], pairs: list[dict]) -> list[dict]:
    """Each attribution file with its run's identity, once per pair it belongs to."""
    membership = pair_of(pairs)
    out = []
    for path in files:
        a = {**attribution.load(path), **run_identity(path), "path": str(path)}
        for pair, alignment in membership.get(a["image_encoder"], []):
            out.append({**a, "pair": pair, "alignment": alignment})
    if not out:
        raise InputError("no attribution file belongs to a configured pair")
    return out


def profile_frame(records: list[dict], key: str, axis_key: str) -> pd.DataFrame:
    """Long table of one profile, seeds averaged per subject, scaled so uniform = 1."""
    rows = []
    for a in records:
        v = np.asarray(a[key], dtype=float)
        rows.append(pd.DataFrame({
            "x": a[axis_key], "importance": v * len(v), "subject": a["subject"],
            "seed": a["seed"], "pair": a["pair"], "alignment": a["alignment"],
            "brain_encoder": a["brain_encoder"],
        }))  # fmt: skip
    df = pd.concat(rows, ignore_index=True)
    return df.groupby(
        ["brain_encoder", "pair", "alignment", "subject", "x"], as_index=False
    ).importance.mean()


def profile_figure(
    df: pd.DataFrame, outs, dpi, xlabel, title, centroid_unit, xscale=1.0, dataset=None
):
    """Rows: brain encoders; columns: pairs; lines: aligned vs unaligned, mean over
    subjects with a band of +- s.e.m.; dashed: each profile's centroid."""
    brains, pairs = sorted(df.brain_encoder.unique()), sorted(df.pair.unique())
    theme()
    fig, axes = plt.subplots(
        len(brains), len(pairs), figsize=(PAGE_WIDTH, 2.4 * len(brains)), squeeze=False,
        sharex=True, constrained_layout=True,
    )  # fmt: skip
    for r, brain in enumerate(brains):
        for c, pair in enumerate(pairs):
            ax = axes[r, c]
            for alignment in ALIGNMENTS:
                d = df[
                    (df.brain_encoder == brain) & (df.pair == pair) & (df.alignment == alignment)
                ]
                if d.empty:
                    continue
                g = d.groupby("x").importance
                x, mean = g.mean().index.to_numpy() * xscale, g.mean().to_numpy()
                sem = g.sem().fillna(0).to_numpy()
                n = d.subject.nunique()
                centroid = float((x * mean).sum() / mean.sum())
                ax.plot(x, mean, color=PALETTE[alignment], lw=1.2,
                        label=f"{alignment} (centroid {centroid:.0f} {centroid_unit}, n={n})")  # fmt: skip
                ax.fill_between(x, mean - sem, mean + sem, color=PALETTE[alignment], alpha=0.25,
                                lw=0)  # fmt: skip
                ax.axvline(centroid, color=PALETTE[alignment], ls="--", lw=0.8)
            ax.axhline(1.0, color="black", lw=0.6, ls=":")
            ax.set_title(f"{brain}, {pair}")
            ax.set_ylabel("importance (uniform = 1)" if c == 0 else "")
            ax.legend(loc="upper right", frameon=False)
            if r == len(brains) - 1:
                ax.set_xlabel(xlabel)
    suptitle(fig, title, dataset)
    save(fig, outs, dpi)
    return len(brains), len(pairs)


def temporal_importance(files, pairs, outs, dpi: int = 300, dataset=None) -> tuple[int, int]:
    df = profile_frame(load_attributions(files, pairs), "temporal", "times")
    return profile_figure(
        df, outs, dpi, "time after image onset (ms)",
        "Temporal importance: Grad-CAM of the query-image similarity", "ms", xscale=1000,
        dataset=dataset,
    )  # fmt: skip


def spectral_importance(files, pairs, outs, dpi: int = 300, dataset=None) -> tuple[int, int]:
    df = profile_frame(load_attributions(files, pairs), "spectral", "freqs")
    return profile_figure(
        df, outs, dpi, "frequency (Hz)",
        "Spectral importance: gradient \u00d7 input over the Fourier spectrum", "Hz",
        dataset=dataset,
    )  # fmt: skip


def head_sphere(montage) -> tuple[float, float, float, float]:
    """The head circle as EEGLAB draws it: centred between T7 and T8 and between Fpz and Oz,
    through Fpz and Oz (taken from the full montage, whatever channels were recorded)."""
    p = montage.get_positions()["ch_pos"]
    x = (p["T7"][0] + p["T8"][0]) / 2
    z = (p["T7"][2] + p["T8"][2]) / 2
    y = (p["Fpz"][1] + p["Oz"][1]) / 2
    return float(x), float(y), float(z), float(abs(p["Fpz"][1] - p["Oz"][1]) / 2)


def meg_sphere(info) -> tuple[float, float, float, float]:
    """A head circle around MEG sensors (no head shape is stored to fit one to): centred
    horizontally on the sensors, its equator at the lowest sensor, its radius 4% beyond the
    farthest sensor as MNE's topomap projects them (azimuthal, polar angle scaled by
    distance), so the head outline encloses every sensor."""
    pos = np.array([ch["loc"][:3] for ch in info["chs"]], dtype=float)
    centre = np.r_[(pos[:, :2].min(0) + pos[:, :2].max(0)) / 2, pos[:, 2].min()]
    v = pos - centre
    d = np.maximum(np.linalg.norm(v, axis=1), 1e-12)
    polar = np.arccos(np.clip(v[:, 2] / d, -1, 1))
    r = float((polar * d / (np.pi / 2)).max()) * 1.04
    return float(centre[0]), float(centre[1]), float(centre[2]), r


def first_difference(names: list[str], expected: list[str]) -> str:
    if len(names) != len(expected):
        return f"{len(names)} channels, not {len(expected)}"
    i = next(i for i, (a, b) in enumerate(zip(names, expected)) if a != b)
    return f"channel {i} is {names[i]}, not {expected[i]}"


def topomap_layout(ch_names: list[str], info=None, source=None) -> tuple:
    """The MNE Info and head sphere of spatial maps from `info`, the sensors of a brain file
    (`source`). EEG: MNE's standard 10-20 positions (colin27_1020) by name in EEGLAB's head
    circle (head_sphere), also with no info; MEG: the stored sensor positions, in meg_sphere."""
    import mne

    types = {"eeg"} if info is None else set(info.get_channel_types())
    if types == {"eeg"}:
        sphere = head_sphere(mne.channels.make_standard_montage("colin27_1020"))
        return brain_sensors.standard_eeg(ch_names, 250.0), sphere
    if types not in ({"mag"}, {"grad"}):
        raise InputError(
            f"{source}: channel types {sorted(types)}; spatial maps draw EEG or one type of MEG "
            "sensor"
        )
    loc = np.array([ch["loc"][:3] for ch in info["chs"]])
    if not np.isfinite(loc).all() or not np.abs(loc).sum(1).all():
        raise InputError(f"{source}: MEG sensors without positions (ch_loc); prepare it again")
    return info, meg_sphere(info)


def spatial_importance(
    files, pairs, outs, dpi: int = 300, sensors=None, dataset=None
) -> tuple[int, int]:
    """Maps of channel importance over the head, subject and seed means: unaligned, aligned
    (shared colour scale) and aligned minus unaligned. One row per brain encoder and pair.
    Positions come from `sensors`, a brain file of the data set (sensors.read): EEG at
    standard 10-20 positions by name, MEG at the stored sensor locations; with None, EEG. The
    attribution files list the same channels in the same order as it."""
    import mne

    records = load_attributions(files, pairs)
    stored = None if sensors is None else brain_sensors.read(sensors)
    ch_names = list(records[0]["ch_names"]) if stored is None else list(stored.ch_names)
    source = records[0]["path"] if stored is None else sensors
    bad = sorted({a["path"] for a in records if list(a["ch_names"]) != ch_names})
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        names = next(a["ch_names"] for a in records if a["path"] == bad[0])
        raise InputError(
            f"{bad[0]}{more}: channels differ from {source}'s "
            f"({first_difference(list(names), ch_names)}); they must match in name and order"
        )
    info, sphere = topomap_layout(ch_names, stored, sensors)
    df = profile_frame(
        [{**a, "index": np.arange(len(ch_names))} for a in records], "spatial", "index"
    )
    rows = sorted(df[["brain_encoder", "pair"]].drop_duplicates().itertuples(index=False))
    theme()
    fig, axes = plt.subplots(
        len(rows), 3, figsize=(PAGE_WIDTH, 2.5 * len(rows)), squeeze=False,
        constrained_layout=True,
    )  # fmt: skip
    for r, (brain, pair) in enumerate(rows):
        maps = {}
        for alignment in ALIGNMENTS:
            d = df[(df.brain_encoder == brain) & (df.pair == pair) & (df.alignment == alignment)]
            maps[alignment] = d.groupby("x").importance.mean().reindex(range(len(ch_names)))
        vmax = max(float(np.nanmax(m)) for m in maps.values())
        diff = (maps["aligned"] - maps["unaligned"]).to_numpy()
        dmax = float(np.nanmax(np.abs(diff))) or 1.0
        panels_ = [
            (maps["unaligned"].to_numpy(), "unaligned", (0, vmax), "Reds"),
            (maps["aligned"].to_numpy(), "aligned", (0, vmax), "Reds"),
            (diff, "aligned \u2212 unaligned", (-dmax, dmax), "RdBu_r"),
        ]
        for c, (data, label, vlim, cmap) in enumerate(panels_):
            ax = axes[r, c]
            im, _ = mne.viz.plot_topomap(
                np.nan_to_num(data), info, axes=ax, show=False, vlim=vlim, cmap=cmap,
                contours=4, sensors=True, sphere=sphere,
            )  # fmt: skip
            ax.set_title(label)
            if c == 0:
                ax.text(-0.12, 0.5, f"{brain}\n{pair}", transform=ax.transAxes, rotation=90,
                        ha="center", va="center", fontsize=8)  # fmt: skip
            if c > 0:  # one colour bar for the two maps, one for the difference
                fig.colorbar(im, ax=ax, shrink=0.75, label="importance (uniform = 1)"
                             if c == 1 else "difference")  # fmt: skip
    suptitle(fig, "Spatial importance: |gradient \u00d7 input| per channel", dataset)
    save(fig, outs, dpi)
    return len(rows), 3


# ------------------------------------------------------------------ 6. top-k retrieval grid
THUMBNAIL = 192  # pixels; keeps the PNG and PDF small at any image resolution


def thumbnail(image: Image.Image) -> np.ndarray:
    image = image.convert("RGB")
    image.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
    return np.asarray(image)


def topk_grid(
    runs: dict, brain, images, outs, queries=6, k: int = 5, dpi: int = 300, dataset=None
) -> tuple[int, int]:
    """For chosen test queries (a count, evenly spaced, or a list of test-image indices):
    the image seen, then the top-k images retrieved by the aligned and by the unaligned
    model, each with its cosine similarity; the correct image framed in green.
    `runs`: alignment -> {"model": model.pt, "embeddings": embeddings .h5, "name": encoder};
    `images`: the image set's index (visdecode.image_sets)."""
    x = torch.from_numpy(brain_data.load_averaged(brain, "test"))  # read once for both runs
    sims = {a: evaluate.retrieve(r["model"], brain, r["embeddings"], x) for a, r in runs.items()}
    n = next(iter(sims.values())).shape[0]
    if isinstance(queries, int):
        queries = np.linspace(0, n - 1, queries).round().astype(int).tolist()
    if not queries or max(queries) >= n or min(queries) < 0:
        raise InputError(f"figures.topk.queries {queries}: test-image indices run 0..{n - 1}")
    test = image_sets.read(images)["test"]
    where = dict(zip(test.stimuli, test.paths))
    stimuli = brain_data.read_stimuli(brain, "test")[0]
    missing = [s for s in stimuli if s not in where]
    if missing:
        raise InputError(f"{images}: no file for test image {missing[0]} of {brain}")
    paths = [where[s] for s in stimuli]
    theme()
    n_cols = 1 + 2 * k
    height = PAGE_WIDTH / n_cols * 1.25 * len(queries) + 0.5
    fig, axes = plt.subplots(
        len(queries), n_cols, figsize=(PAGE_WIDTH, height), squeeze=False,
        gridspec_kw={"wspace": 0.08, "hspace": 0.3},
    )  # fmt: skip
    title_in = 0.55 + (0.17 if dataset else 0.0)  # the data set's name: a title line more
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - title_in / height)
    for r, q in enumerate(queries):
        cells = [(q, None, "seen", "black")]
        for alignment in ("aligned", "unaligned"):
            order = np.argsort(-sims[alignment][q], kind="stable")[:k]
            for i in order:
                colour = "green" if i == q else PALETTE[alignment]
                cells.append((i, sims[alignment][q, i], alignment, colour))
        for c, (i, sim, label, colour) in enumerate(cells):
            ax = axes[r, c]
            with Image.open(paths[i]) as im:
                ax.imshow(thumbnail(im))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set(color=colour, linewidth=2.5 if i == q and c else 1.0)
            ax.set_title("seen" if sim is None else f"{sim:.2f}", fontsize=6, pad=2)
            if r == 0 and c in (1, 1 + k):
                ax.text(0, 1.3, f"top-{k}, {label}: {runs[label]['name']}",
                        transform=ax.transAxes, fontsize=7, ha="left")  # fmt: skip
    suptitle(
        fig, "Retrieved test images (cosine similarity; green: the image seen)", dataset,
        y=1 - 0.08 / height,
    )  # fmt: skip
    save(fig, outs, dpi)
    return len(queries), n_cols


# ------------------------------------------------------------------ 7. training curves
def training_curves(metrics_files, pairs, outs, dpi: int = 300, dataset=None) -> tuple[int, int]:
    """Validation loss and top-1 over epochs per run family (regime x brain encoder x image
    encoder): mean over subjects and seeds, band +- s.e.m.; solid aligned, dashed unaligned,
    one colour per pair."""
    membership = pair_of(pairs)
    frames = []
    for path in metrics_files:
        ident = run_identity(path)
        m = pd.read_csv(path)
        for pair, alignment in membership.get(ident["image_encoder"], []):
            frames.append(m.assign(**ident, pair=pair, alignment=alignment))
    if not frames:
        raise InputError("no metrics file belongs to a configured pair")
    df = pd.concat(frames, ignore_index=True)
    df["val_top1"] *= 100
    regimes, brains = panels(df)
    cols = [(r, b) for r in regimes for b in brains]
    theme()
    fig, axes = plt.subplots(
        2, len(cols), figsize=(PAGE_WIDTH, 4.6), squeeze=False, sharex="col",
        constrained_layout=True,
    )  # fmt: skip
    for c, (regime, brain) in enumerate(cols):
        d = df[(df.regime == regime) & (df.brain_encoder == brain)]
        for r, (metric, label) in enumerate(
            (("val_loss", "validation loss"), ("val_top1", "validation top-1 (%)"))
        ):
            ax = axes[r, c]
            sns.lineplot(
                d, x="epoch", y=metric, hue="pair", style="alignment",
                style_order=["aligned", "unaligned"], errorbar="se", ax=ax,
                legend=(r == 0 and c == 0),
            )  # fmt: skip
            ax.set_ylabel(label if c == 0 else "")
            if r == 0:
                ax.set_title(f"{brain}, {REGIME_LABEL.get(regime, regime)}")
    if axes[0, 0].get_legend():
        axes[0, 0].legend(frameon=False, fontsize=6)
    suptitle(fig, "Training curves: mean over subjects and seeds, band \u00b1 s.e.m.", dataset)
    save(fig, outs, dpi)
    return 2, len(cols)
