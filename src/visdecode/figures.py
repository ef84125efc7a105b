"""Stage `figures`: figures from the tidy retrieval table."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
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
    per_subject = (
        df.groupby(["pair", "brain_encoder", "alignment", "subject"], as_index=False)
        .agg(top1=("top1", "mean"), n_way=("n_way", "first"))
        .assign(top1=lambda d: 100 * d.top1)
    )
    brains = sorted(per_subject.brain_encoder.unique())
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.2)
    fig, axes = plt.subplots(
        1, len(brains), figsize=(max(4.5, 2.2 * per_subject.pair.nunique()) * len(brains), 4),
        squeeze=False,
    )  # fmt: skip
    order = ["unaligned", "aligned"]
    for ax, brain in zip(axes[0], brains):
        d = per_subject[per_subject.brain_encoder == brain]
        sns.barplot(
            d, x="pair", y="top1", hue="alignment", hue_order=order, palette=PALETTE,
            errorbar="se", capsize=0.1, ax=ax, alpha=0.85,
        )  # fmt: skip
        sns.stripplot(
            d, x="pair", y="top1", hue="alignment", hue_order=order, dodge=True,
            palette={"unaligned": "#424242", "aligned": "#0d3c61"}, size=5, ax=ax,
            legend=False,
        )  # fmt: skip
        chance = 100 / d.n_way.iloc[0]
        ax.axhline(chance, ls="--", color="crimson", lw=1)
        ax.text(ax.get_xlim()[1], chance, " chance", color="crimson", va="center", ha="left")
        ax.set(title=f"{brain.upper()}", xlabel="image encoder pair", ylabel="top-1 (%)")
        ax.set_ylim(0, max(d.top1.max() * 1.15, chance * 2))
        ax.legend(title=None, loc="upper left")
    fig.suptitle(
        f"{int(d.n_way.iloc[0])}-way retrieval, mean over {d.subject.nunique()} subjects "
        "(points: subjects, bars: s.e.m.)",
        fontsize=11,
    )
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=150, format=Path(out).suffix.lstrip(".") or "png")
    plt.close(fig)
