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

controls.csv: the permutation control's retrieval against chance (`controls`).
"""

from __future__ import annotations

import json
import logging
import re
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


def chance_interval(n_queries: int, n_way: int, level: float = 0.99) -> tuple[float, float]:
    """Top-1 accuracy of a model at chance over n_queries test queries: the central `level`
    interval of Binomial(n_queries, 1 / n_way) hits, as fractions."""
    dist = stats.binom(n_queries, 1 / n_way)
    tail = (1 - level) / 2
    return float(dist.ppf(tail) / n_queries), float(dist.isf(tail) / n_queries)


CONTROL_COLUMNS = [
    "dataset", "control", "regime", "brain_encoder", "image_encoder", "reference", "n_runs",
    "n_subjects", "n_seeds", "n_way", "n_queries", "top1", "top5", "reference_top1",
    "difference", "chance_low", "chance_high", "p", "verdict",
]  # fmt: skip
CONTROL_LEVEL = 0.99  # the permutation rows' interval, Bonferroni-widened over their number


def controls(results: list[dict], null_pairs: list[dict] = ()) -> pd.DataFrame:
    """The controls, one row per data set, control, regime, brain encoder and image encoder;
    verdict `pass`, `fail` or `undetermined`.

    permutation (runs trained with the pairing shuffled): top-1 over every control run
    (subjects x seeds) against chance. Under chance, and taking test queries as independent,
    the top-1 hits of all its queries (runs x test images) are Binomial(queries, 1 / n_way);
    chance_low and chance_high bound that count's central interval (as accuracies) at 99%,
    widened for the number of permutation rows (Bonferroni: 1 - 0.01 / rows), so that a table
    of many rows does not fail by chance. It passes inside the interval, else fails; p is the
    two-sided binomial test, uncorrected. Runs of one seed share one permutation.

    null_alignment (`null_pairs`: {aligned: null_<encoder>, unaligned}): the randomised
    transform's runs against the unaligned encoder's, paired by subject and seed: difference
    is their mean paired difference, p the one-sided paired t-test over subjects (seeds
    averaged first) that the null encoder is better. It passes when not better (difference
    <= 0), fails when better with p < 0.05, and is undetermined otherwise (better, but not
    significantly, or with too few subjects to test).
    """
    df = pd.DataFrame(results)
    if df.empty:
        raise InputError("no control runs to summarise; set controls.permutation or "
                         "controls.null_alignment")  # fmt: skip
    df["control"] = df.get("control", pd.Series(index=df.index, dtype=object))
    keys = ["dataset", "regime", "brain_encoder"]
    rows = []
    permuted = list(df[df.control == "permutation"].groupby([*keys, "image_encoder"], sort=True))
    level = 1 - (1 - CONTROL_LEVEL) / max(len(permuted), 1)
    for key, d in permuted:
        n_way = int(d.n_way.iloc[0])
        if (d.n_way != n_way).any():
            raise InputError(f"permutation runs of {key} differ in n-way")
        queries = int(d.n_queries.sum())
        hits = int(np.round(d.top1 * d.n_queries).sum())
        low, high = chance_interval(queries, n_way, level)
        top1 = hits / queries
        verdict = "pass" if low <= top1 <= high else "fail"
        p = stats.binomtest(hits, queries, 1 / n_way).pvalue
        rows.append(_control_row(key, "permutation", "chance", d, queries, top1, 1 / n_way,
                                 top1 - 1 / n_way, low, high, p, verdict))  # fmt: skip
    real = df[df.control.isna()]
    for pair in null_pairs:
        runs = {a: real[real.image_encoder == pair[a]] for a in ("aligned", "unaligned")}
        for key, d in runs["aligned"].groupby(keys, sort=True):
            both = d.merge(runs["unaligned"], on=[*keys, "subject", "seed"], suffixes=("", "_ref"))
            if both.empty:
                raise InputError(f"null-alignment runs of {key} have no {pair['unaligned']} runs")
            per_subject = both.groupby("subject")[["top1", "top1_ref"]].mean()
            diff = per_subject.top1 - per_subject.top1_ref
            p = np.nan
            if len(diff) > 1 and diff.std() > 0:
                p = float(stats.ttest_1samp(diff, 0.0, alternative="greater").pvalue)
            mean_diff = float((both.top1 - both.top1_ref).mean())
            verdict = "pass" if mean_diff <= 0 else "fail" if p < 0.05 else "undetermined"
            rows.append(_control_row((*key, pair["aligned"]), "null_alignment", pair["unaligned"],
                                     both, int(both.n_queries.sum()), both.top1.mean(),
                                     both.top1_ref.mean(), mean_diff, np.nan, np.nan, p,
                                     verdict))  # fmt: skip
    return pd.DataFrame(rows, columns=CONTROL_COLUMNS)


def _control_row(key, control, reference, d, queries, top1, ref_top1, diff, low, high, p, verdict):
    dataset, regime, brain_encoder, image_encoder = key
    return {
        "dataset": dataset, "control": control, "regime": regime, "brain_encoder": brain_encoder,
        "image_encoder": image_encoder, "reference": reference, "n_runs": len(d),
        "n_subjects": d.subject.nunique(), "n_seeds": d.seed.nunique(),
        "n_way": int(d.n_way.iloc[0]), "n_queries": queries, "top1": float(top1),
        "top5": float((d.top5 * d.n_queries).sum() / d.n_queries.sum()),
        "reference_top1": float(ref_top1), "difference": float(diff), "chance_low": low,
        "chance_high": high, "p": float(p), "verdict": verdict,
    }  # fmt: skip


P_VALUE = re.compile(r"(^p$|_p$|_p_corrected$)")


def readable(df: pd.DataFrame, decimals: int = 4, p_digits: int = 3) -> pd.DataFrame:
    """A table as a reader wants it: accuracies, differences, s.d.s and test statistics to
    `decimals` places (0.0001 is 0.01 percentage points), p-values to `p_digits` significant
    digits (a small one keeps its magnitude). The CSV then holds exactly these values, and the
    figures that read it show them; retrieval.csv, which later steps compute from, keeps full
    precision."""
    out = df.copy()
    for column in out.columns:
        if not pd.api.types.is_float_dtype(out[column]):
            continue
        if P_VALUE.search(column):
            out[column] = out[column].map(
                lambda x: float(f"{x:.{p_digits}g}") if np.isfinite(x) else x
            )
        else:
            out[column] = out[column].round(decimals)
    return out


def write_controls(
    run_files: list[Path | str], out: Path | str, null_pairs: list[dict] = ()
) -> pd.DataFrame:
    results = []
    for path in run_files:
        with open(path) as fh:
            results.append(json.load(fh))
    t = controls(results, null_pairs)
    with atomic_path(out) as tmp:
        readable(t).to_csv(tmp, index=False)
    log.info("wrote %s: %s", out, t.verdict.value_counts().to_dict())
    return t


def write_summary(table: Path | str, out: Path | str) -> pd.DataFrame:
    s = summary(read_table(table))
    with atomic_path(out) as tmp:
        readable(s).to_csv(tmp, index=False)
    log.info("wrote %s (%d rows)", out, len(s))
    return s


def write_statistics(table: Path | str, out: Path | str, correction: str = "holm") -> pd.DataFrame:
    t = statistics(read_table(table), correction)
    with atomic_path(out) as tmp:
        readable(t).to_csv(tmp, index=False)
    log.info("wrote %s (%d rows, %s correction)", out, len(t), correction)
    return t
