"""Stage `figures`: figures from the tidy retrieval table."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from visdecode.io import atomic_path  # noqa: E402

PALETTE = {"unaligned": "#9e9e9e", "aligned": "#1f77b4"}


def aligned_vs_unaligned(table: Path | str, out: Path | str) -> None:
    """Figure 1 of the paper: per pair, top-1 of aligned vs unaligned encoders.

    Bars: mean over subjects (each subject first averaged over seeds); points: subjects;
    error bars: standard error over subjects; dashed line: chance (1 / n_way).
    """
    df = pd.read_csv(table)
    if "regime" not in df:
        df["regime"] = "intra"
    per_subject = (
        df.groupby(["regime", "pair", "brain_encoder", "alignment", "subject"], as_index=False)
        .agg(top1=("top1", "mean"), n_way=("n_way", "first"))
        .assign(top1=lambda d: 100 * d.top1)
    )
    panels = sorted(
        per_subject[["regime", "brain_encoder"]].drop_duplicates().itertuples(index=False),
        key=lambda p: (p.regime != "intra", p.brain_encoder),
    )  # one panel per regime and brain encoder
    pairs = sorted(per_subject.pair.unique())
    n_way = int(per_subject.n_way.iloc[0])
    chance = 100 / n_way
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.2)
    width = max(4.5, 1.6 * len(pairs) + 2)
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 4.6), squeeze=False)
    rng = np.random.default_rng(0)  # horizontal jitter of subject points only
    for ax, (regime, brain) in zip(axes[0], panels):
        d = per_subject[(per_subject.brain_encoder == brain) & (per_subject.regime == regime)]
        for j, alignment in enumerate(("unaligned", "aligned")):
            for i, pair in enumerate(pairs):
                vals = d[(d.pair == pair) & (d.alignment == alignment)].top1.to_numpy()
                if not len(vals):
                    continue
                x = i + (j - 0.5) * 0.4
                sem = vals.std(ddof=1) / np.sqrt(len(vals)) if len(vals) > 1 else 0.0
                ax.bar(x, vals.mean(), 0.38, color=PALETTE[alignment], alpha=0.85,
                       label=alignment if i == 0 else None)  # fmt: skip
                ax.errorbar(x, vals.mean(), sem, color="black", capsize=4, lw=1.2)
                ax.scatter(x + rng.uniform(-0.03, 0.03, len(vals)), vals, s=18,
                           color="black", alpha=0.7, zorder=3)  # fmt: skip
        ax.axhline(chance, ls="--", color="crimson", lw=1, label=f"chance ({chance:.1f}%)")
        ax.set_xticks(range(len(pairs)), pairs)
        title = f"{brain.upper()}, " + ("per subject" if regime == "intra" else "leave-one-out")
        ax.set(title=title, xlabel="image encoder pair", ylabel="top-1 accuracy (%)")
        ax.set_ylim(0, max(d.top1.max() * 1.2, chance * 2))
        ax.legend(loc="upper left", fontsize=9)
        ax.grid(axis="x", visible=False)
    fig.suptitle(
        f"{n_way}-way retrieval: mean of {per_subject.subject.nunique()} subjects\n"
        "(points: subjects; error bars: s.e.m.)",
        fontsize=11,
    )
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=150, format=Path(out).suffix.lstrip(".") or "png")
    plt.close(fig)
