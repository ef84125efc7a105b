"""Stage `tables`: the summary and the statistics of aligned vs unaligned, from the tidy table.

summary.csv: per data set, regime, brain encoder and pair: mean and standard deviation
(ddof 1) of top-1 and top-5 over every run (subjects x seeds) of the aligned and of the
unaligned encoder, and aligned minus unaligned.

stats.csv: per data set, regime, brain encoder, pair and metric: paired tests of aligned vs
unaligned over subjects, each subject first averaged over seeds. Wilcoxon signed-rank
(two-sided, exact for small samples, zero differences dropped) and paired t-test
(scipy.stats), Cohen's d_z (mean difference / its standard deviation), and both p-values
corrected for the multiple pairs within each data set, regime, brain encoder and metric
(statsmodels' multipletests; Holm by default). A test that cannot be computed (fewer than 2
subjects, all differences zero) has p = NaN and is left out of the correction.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from visdecode.errors import InputError
from visdecode.io import atomic_path

log = logging.getLogger(__name__)

METRICS = ("top1", "top5")
GROUP = ["dataset", "regime", "brain_encoder", "pair"]
CORRECTIONS = ("holm", "bonferroni", "sidak", "holm-sidak", "hommel", "fdr_bh", "fdr_by")


def read_table(path: Path | str) -> pd.DataFrame:
    df = pd.read_csv(path)
    missing = {"subject", "seed", "alignment", "image_encoder", *GROUP, *METRICS} - set(df)
    if missing:
        raise InputError(
            f"{path}: not a retrieval table, columns {sorted(missing)} missing; "
            "rebuild it with `snakemake results/tables/retrieval.csv`"
        )
    return df


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per data set, regime, brain encoder and pair."""
    rows = []
    for key, d in df.groupby(GROUP, sort=True):
        row = dict(zip(GROUP, key))
        for alignment in ("aligned", "unaligned"):
            a = d[d.alignment == alignment]
            row[f"{alignment}_encoder"] = a.image_encoder.iloc[0] if len(a) else None
        row["n_subjects"] = d.subject.nunique()
        row["n_seeds"] = d.seed.nunique()
        for m in METRICS:
            for alignment in ("aligned", "unaligned"):
                v = d.loc[d.alignment == alignment, m]
                row[f"{m}_{alignment}_mean"] = v.mean()
                row[f"{m}_{alignment}_sd"] = v.std(ddof=1)
            row[f"{m}_difference"] = row[f"{m}_aligned_mean"] - row[f"{m}_unaligned_mean"]
        rows.append(row)
    return pd.DataFrame(rows)


def paired_tests(aligned: np.ndarray, unaligned: np.ndarray) -> dict:
    """Wilcoxon signed-rank and paired t-test of aligned vs unaligned (paired by subject)."""
    d = aligned - unaligned
    out = {
        "n_subjects": len(d),
        "aligned_mean": aligned.mean() if len(d) else np.nan,
        "unaligned_mean": unaligned.mean() if len(d) else np.nan,
        "mean_difference": d.mean() if len(d) else np.nan,
        "sd_difference": d.std(ddof=1) if len(d) > 1 else np.nan,
    }
    out["cohens_dz"] = (
        out["mean_difference"] / out["sd_difference"] if out["sd_difference"] > 0 else np.nan
    )
    out["t"], out["t_p"] = np.nan, np.nan
    out["wilcoxon_w"], out["wilcoxon_p"] = np.nan, np.nan
    if len(d) > 1 and np.any(d != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # zero variance: scipy says NaN
            t = stats.ttest_rel(aligned, unaligned)
            w = stats.wilcoxon(aligned, unaligned)
        out["t"], out["t_p"] = float(t.statistic), float(t.pvalue)
        out["wilcoxon_w"], out["wilcoxon_p"] = float(w.statistic), float(w.pvalue)
    return out


def correct(p: pd.Series, method: str) -> pd.Series:
    """Multiple-comparison correction of the finite p-values; NaN stays NaN."""
    out = pd.Series(np.nan, index=p.index)
    ok = p.notna()
    if ok.any():
        out[ok] = multipletests(p[ok].to_numpy(), method=method)[1]
    return out


def statistics(df: pd.DataFrame, correction: str = "holm") -> pd.DataFrame:
    """One row per data set, regime, brain encoder, pair and metric."""
    if correction not in CORRECTIONS:
        raise InputError(f"unknown correction '{correction}'; use one of {', '.join(CORRECTIONS)}")
    per_subject = df.groupby([*GROUP, "alignment", "subject"], as_index=False)[
        list(METRICS)
    ].mean()  # seeds averaged first
    rows = []
    for key, d in per_subject.groupby(GROUP, sort=True):
        wide = d.pivot(index="subject", columns="alignment", values=list(METRICS))
        for m in METRICS:
            if ("aligned" not in wide[m]) or ("unaligned" not in wide[m]):
                continue
            paired = wide[m].dropna(subset=["aligned", "unaligned"])
            rows.append(
                {
                    **dict(zip(GROUP, key)),
                    "metric": m,
                    **paired_tests(
                        paired["aligned"].to_numpy(float), paired["unaligned"].to_numpy(float)
                    ),
                }
            )
    out = pd.DataFrame(rows, columns=[*GROUP, "metric", *paired_tests(np.ones(0), np.ones(0))])
    family = ["dataset", "regime", "brain_encoder", "metric"]
    for test in ("wilcoxon", "t"):
        out[f"{test}_p_corrected"] = out.groupby(family, group_keys=False)[f"{test}_p"].apply(
            lambda p: correct(p, correction)
        )
    out["correction"] = correction
    return out


def write_summary(table: Path | str, out: Path | str) -> pd.DataFrame:
    s = summary(read_table(table))
    with atomic_path(out) as tmp:
        s.to_csv(tmp, index=False)
    log.info("wrote %s (%d rows)", out, len(s))
    return s


def write_statistics(table: Path | str, out: Path | str, correction: str = "holm") -> pd.DataFrame:
    t = statistics(read_table(table), correction)
    with atomic_path(out) as tmp:
        t.to_csv(tmp, index=False)
    log.info("wrote %s (%d rows, %s correction)", out, len(t), correction)
    return t
