"""Tables, statistics, attribution and figures from known inputs (no training needed)."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import stats

from visdecode import attribution, brain_encoders, figures, tables
from visdecode.errors import InputError
from visdecode.datasets.things_eeg2.format import CH_NAMES

PAIRS = [
    {"name": "A", "aligned": "a_glocal", "unaligned": "a"},
    {"name": "B", "aligned": "b_dreamsim", "unaligned": "b"},
    {"name": "C", "aligned": "c_harmonized", "unaligned": "c"},
]


def known_runs(n_subjects=5, seeds=(1, 2), seed=0) -> pd.DataFrame:
    """A retrieval table: 3 pairs, one brain encoder, intra; pair A helps a lot, B a little,
    C not at all (same numbers)."""
    rng = np.random.default_rng(seed)
    gain = {"A": 0.08, "B": 0.01, "C": 0.0}
    rows = []
    for p in PAIRS:
        base = rng.uniform(0.05, 0.15, n_subjects)
        for s in range(n_subjects):
            for seed_ in seeds:
                noise = rng.normal(0, 0.01, 3) * (p["name"] != "C")
                for j, (alignment, extra) in enumerate(
                    (("unaligned", 0.0), ("aligned", gain[p["name"]]))
                ):
                    top1 = base[s] + extra + noise[j]
                    rows.append({
                        "dataset": "d", "regime": "intra", "subject": s + 1,
                        "brain_encoder": "nice", "image_encoder": p[alignment],
                        "alignment": alignment, "pair": p["name"], "seed": seed_,
                        "n_way": 200, "top1": top1, "top5": min(1.0, 3 * top1 + noise[2]),
                    })  # fmt: skip
    return pd.DataFrame(rows)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment, written out (the yardstick for statsmodels)."""
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adj[i] = running
    return adj


def test_summary_numbers(tmp_path):
    df = known_runs()
    df.to_csv(tmp_path / "retrieval.csv", index=False)
    s = tables.write_summary(tmp_path / "retrieval.csv", tmp_path / "summary.csv")
    assert pd.read_csv(tmp_path / "summary.csv").shape == s.shape == (3, 18)
    for _, row in s.iterrows():
        d = df[df.pair == row.pair]
        for m in ("top1", "top5"):
            a, u = d[d.alignment == "aligned"][m], d[d.alignment == "unaligned"][m]
            assert len(a) == 10  # 5 subjects x 2 seeds
            assert row[f"{m}_aligned_mean"] == pytest.approx(np.mean(a.to_numpy()))
            assert row[f"{m}_aligned_sd"] == pytest.approx(np.std(a.to_numpy(), ddof=1))
            assert row[f"{m}_unaligned_sd"] == pytest.approx(np.std(u.to_numpy(), ddof=1))
            assert row[f"{m}_difference"] == pytest.approx(a.mean() - u.mean())
        assert row.n_subjects == 5 and row.n_seeds == 2
        assert row.aligned_encoder == next(p["aligned"] for p in PAIRS if p["name"] == row.pair)
    assert s.set_index("pair").top1_difference["A"] == pytest.approx(0.08, abs=0.01)
    assert s.set_index("pair").top1_difference["C"] == 0.0


def test_statistics_against_scipy(tmp_path):
    df = known_runs()
    df.to_csv(tmp_path / "retrieval.csv", index=False)
    st = tables.write_statistics(tmp_path / "retrieval.csv", tmp_path / "stats.csv", "holm")
    assert len(st) == 6  # 3 pairs x 2 metrics
    for m in ("top1", "top5"):
        rows = st[st.metric == m].set_index("pair").loc[["A", "B", "C"]]
        p_w, p_t = [], []
        for pair in ("A", "B", "C"):
            d = df[(df.pair == pair)].groupby(["alignment", "subject"])[m].mean()
            a, u = d["aligned"].to_numpy(), d["unaligned"].to_numpy()
            row = rows.loc[pair]
            if pair == "C":  # identical numbers: nothing to test
                assert np.isnan(row.wilcoxon_p) and np.isnan(row.t_p) and row.mean_difference == 0
                continue
            t, w = stats.ttest_rel(a, u), stats.wilcoxon(a, u)
            assert row.t == pytest.approx(t.statistic) and row.t_p == pytest.approx(t.pvalue)
            assert row.wilcoxon_w == pytest.approx(w.statistic)
            assert row.wilcoxon_p == pytest.approx(w.pvalue)
            assert row.cohens_dz == pytest.approx((a - u).mean() / (a - u).std(ddof=1))
            p_w.append(w.pvalue)
            p_t.append(t.pvalue)
        assert rows.loc[["A", "B"], "wilcoxon_p_corrected"].to_numpy() == pytest.approx(
            holm(np.array(p_w))
        )
        assert rows.loc[["A", "B"], "t_p_corrected"].to_numpy() == pytest.approx(
            holm(np.array(p_t))
        )
        assert np.isnan(rows.loc["C", "t_p_corrected"])
    # pair A: every subject gains 8 points; the exact Wilcoxon p for 5 of 5 positive is 1/16
    a_row = st[(st.pair == "A") & (st.metric == "top1")].iloc[0]
    assert a_row.wilcoxon_p == pytest.approx(2 / 2**5) and a_row.t_p < 1e-3
    assert (st.correction == "holm").all()



def test_tables_are_written_for_a_reader(tmp_path):
    """summary.csv and stats.csv hold no float noise (0.32499999999999996): accuracies and
    statistics to 4 places, p-values to 3 significant digits, each within that rounding of the
    full-precision value; retrieval.csv, which they are computed from, is left as it is."""
    import re

    df = known_runs()
    df.loc[df.index[0], "top1"] = 0.1 + 0.2  # 0.30000000000000004
    df.to_csv(tmp_path / "retrieval.csv", index=False)
    full_s = tables.write_summary(tmp_path / "retrieval.csv", tmp_path / "summary.csv")
    full_t = tables.write_statistics(tmp_path / "retrieval.csv", tmp_path / "stats.csv")
    assert "0.30000000000000004" in (tmp_path / "retrieval.csv").read_text()
    for name, full in (("summary", full_s), ("stats", full_t)):
        text = (tmp_path / f"{name}.csv").read_text()
        assert not re.search(r"\d\.\d{6,}", text), text  # no long decimals anywhere
        back = pd.read_csv(tmp_path / f"{name}.csv")
        for column in full.columns:
            if not pd.api.types.is_float_dtype(full[column]):
                continue
            want, got = full[column].to_numpy(float), back[column].to_numpy(float)
            assert np.array_equal(np.isnan(want), np.isnan(got)), column
            ok = ~np.isnan(want)
            if column.endswith(("_p", "_p_corrected")):
                assert got[ok] == pytest.approx(want[ok], rel=5e-3), column
                digits = [len(re.sub(r"^0\.0*|\.|e.*$", "", repr(float(v)))) for v in got[ok]]
                assert max(digits, default=0) <= 3, (column, got[ok])
            else:
                assert np.abs(got[ok] - want[ok]).max(initial=0) <= 5e-5, column
                assert np.array_equal(got[ok], np.round(got[ok], 4)), column
    # the written p is the full one to 3 significant digits (the figure's stars read it)
    st = pd.read_csv(tmp_path / "stats.csv")
    key = (st.pair == "A") & (st.metric == "top1")
    full = full_t.loc[(full_t.pair == "A") & (full_t.metric == "top1"), "t_p"].iloc[0]
    assert st.loc[key, "t_p"].iloc[0] == float(f"{full:.3g}") and full != float(f"{full:.3g}")

def test_statistics_with_one_subject_are_nan_and_bad_input_is_named(tmp_path):
    st = tables.statistics(known_runs(n_subjects=1))
    assert st.n_subjects.eq(1).all() and st.t_p.isna().all() and st.wilcoxon_p.isna().all()
    with pytest.raises(InputError, match="unknown correction 'holmes'"):
        tables.statistics(known_runs(), "holmes")
    bad = tmp_path / "retrieval.csv"
    pd.DataFrame({"top1": [0.1]}).to_csv(bad, index=False)
    with pytest.raises(InputError, match=f"{bad}: not a retrieval table"):
        tables.write_summary(bad, tmp_path / "summary.csv")
    assert not (tmp_path / "summary.csv").exists()


def control_run(encoder, subject, seed, top1, control=None, n=100) -> dict:
    return {"dataset": "d", "regime": "intra", "brain_encoder": "nice", "image_encoder": encoder,
            "subject": subject, "seed": seed, "n_way": n, "n_queries": n, "top1": top1,
            "top5": min(1.0, 5 * top1), "control": control}  # fmt: skip


def test_permutation_control_against_the_binomial_interval():
    """Binomial(400, 1/100) hits at chance: the central 99% interval, from the summed pmf (the
    smallest counts whose cumulative probability reaches 0.005 and 0.995); its upper end is at
    chance, one more hit is not."""
    cdf = np.cumsum(stats.binom(400, 0.01).pmf(np.arange(401)))
    low, high = int(np.argmax(cdf >= 0.005)), int(np.argmax(cdf >= 0.995))
    assert tables.chance_interval(400, 100) == (low / 400, high / 400) == (0.0, 10 / 400)
    for hits, at_chance in ((high, True), (high + 1, False)):
        runs = [control_run("a", s, 7, h / 100, "permutation") for s, h in
                zip((1, 2, 3, 4), (hits // 4 + (hits % 4 > i) for i in range(4)))]  # fmt: skip
        row = tables.controls(runs).iloc[0]
        assert row.n_queries == 400 and row.top1 == pytest.approx(hits / 400)
        assert row.verdict == ("pass" if at_chance else "fail") and row.reference == "chance"
        assert row.p == pytest.approx(stats.binomtest(hits, 400, 0.01).pvalue)


def test_null_alignment_control_fails_only_when_the_null_is_better():
    pair = [{"aligned": "null_a", "unaligned": "a"}]
    ref = [control_run("a", s, seed, 0.20 + 0.01 * s) for s in range(1, 5) for seed in (7, 8)]
    for gain, verdict in ((-0.05, "pass"), (0.0, "undetermined"), (0.06, "fail")):
        noise = np.random.default_rng(0).normal(0, 0.005, 8)
        null = [{**r, "image_encoder": "null_a", "top1": r["top1"] + gain + e}
                for r, e in zip(ref, noise)]  # fmt: skip
        row = tables.controls(ref + null, pair).iloc[0]
        assert row.control == "null_alignment" and row.reference == "a" and row.n_runs == 8
        assert row.difference == pytest.approx(gain + noise.mean())
        assert row.verdict == verdict
    null = [{**r, "image_encoder": "null_a", "top1": r["top1"] + 0.06 + 0.001 * r["subject"] ** 2}
            for r in ref]  # fmt: skip
    row = tables.controls(ref + null, pair).iloc[0]
    per_subject = [0.06 + 0.001 * s**2 for s in range(1, 5)]
    assert row.p == pytest.approx(stats.ttest_1samp(per_subject, 0, alternative="greater").pvalue)
    one = [r for r in ref + null if r["subject"] == 1]  # one subject: no test, no verdict either way
    assert tables.controls(one, pair).iloc[0].verdict == "undetermined"
    with pytest.raises(InputError, match="no control runs"):
        tables.controls([])


def test_many_permutation_rows_widen_the_interval():
    """Bonferroni over the rows: 20 rows are each tested at 1 - 0.01 / 20."""
    runs = [control_run(f"e{i}", 1, 7, 0.01, "permutation") for i in range(20)]
    table = tables.controls(runs)
    assert (table.chance_high == tables.chance_interval(100, 100, 1 - 0.01 / 20)[1]).all()
    assert table.chance_high.iloc[0] > tables.chance_interval(100, 100)[1]


# ------------------------------------------------------------------ attribution
@pytest.mark.parametrize("name", sorted(brain_encoders.REGISTRY))
def test_cam_layer_receptive_fields(name):
    """CAM_LAYERS' receptive field of time position j (centre and width) is the set of input
    samples that can change it (the support of its gradient), for positions whose field lies
    inside the input; spreading a map back over the samples keeps its total."""
    torch.manual_seed(0)
    model = brain_encoders.build(name, 17, 400, 16).eval()
    layer, where, first, stride, width = attribution.CAM_LAYERS[name]
    captured = []
    module = model.get_submodule(layer)
    if where == "input":
        handle = module.register_forward_pre_hook(lambda m, a: captured.append(a[0]))
    else:
        handle = module.register_forward_hook(lambda m, a, o: captured.append(o))
    x = torch.randn(1, 17, 400, requires_grad=True)
    model(x, torch.zeros(1, dtype=torch.long))
    handle.remove()
    act = captured[0]
    checked = 0
    for j in range(act.shape[-1]):
        (g,) = torch.autograd.grad(act[..., j].sum(), x, retain_graph=True)
        idx = (g.abs().sum(dim=(0, 1)) > 0).nonzero().flatten()
        if idx.min() == 0 or idx.max() == 399:
            continue  # clipped by the input's edges
        assert (idx.min() + idx.max()).item() / 2 == first + stride * j
        assert idx.max() - idx.min() + 1 == width == len(idx)
        checked += 1
    assert checked >= act.shape[-1] // 2
    cam = np.random.default_rng(0).uniform(size=act.shape[-1])
    spread = attribution.to_samples(cam, name, 400)
    inside = [j for j in range(len(cam)) if first + stride * j - (width - 1) / 2 >= 0
              and first + stride * j + (width - 1) / 2 <= 399]  # fmt: skip
    assert spread.sum() <= cam.sum() + 1e-9
    assert spread.sum() >= cam[inside].sum() - 1e-9


class Linear(torch.nn.Module):
    """A linear brain encoder: score gradients are exact, so attributions are known."""

    def __init__(self, c, t, d):
        super().__init__()
        self.lin = torch.nn.Linear(c * t, d, bias=False)

    def forward(self, x, subject=None):
        return self.lin(x.flatten(1))


def test_spectral_and_spatial_attribution_against_finite_differences():
    torch.manual_seed(0)
    model = Linear(5, 32, 8).double().eval()
    x = torch.randn(3, 5, 32, dtype=torch.float64)
    w = torch.nn.functional.normalize(torch.randn(3, 8, dtype=torch.float64), dim=1)
    subject = torch.zeros(3, dtype=torch.long)
    spec = attribution.spectral(model, x, subject, w)
    spat = attribution.spatial(model, x, subject, w)
    assert spec.shape == (3, 5, 17) and spat.shape == (3, 5)
    eps = 1e-6
    base = attribution.score(model, x, subject, w)
    for q, c, k in ((0, 1, 3), (2, 4, 10), (1, 0, 0)):
        X = torch.fft.rfft(x[q, c])
        for part in ("real", "imag"):
            if part == "imag" and k == 0:
                continue
            Xp = X.clone()
            Xp[k] += eps if part == "real" else 1j * eps
            xp = x.clone()
            xp[q, c] = torch.fft.irfft(Xp, n=32)
            deriv = (attribution.score(model, xp, subject, w)[q] - base[q]) / eps
            if part == "real":
                re_term = X[k].real * deriv
            else:
                im_term = X[k].imag * deriv
        expected = abs(re_term + (im_term if k else 0.0))
        assert spec[q, c, k].item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-9)
    for q, c in ((0, 2), (2, 0)):
        total = 0.0
        for t in range(32):
            xp = x.clone()
            xp[q, c, t] += eps
            deriv = (attribution.score(model, xp, subject, w)[q] - base[q]) / eps
            total += abs(x[q, c, t].item() * deriv.item())
        assert spat[q, c].item() == pytest.approx(total, rel=1e-4)


def test_gradcam_at_the_input_is_weighted_channels():
    """ATM-S's map is Grad-CAM at the input: relu(sum_c mean_t(dS/dx_c) x_c(t))."""
    torch.manual_seed(0)
    model = brain_encoders.build("atms", 6, 40, 8).eval()
    x, w = torch.randn(2, 6, 40), torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
    subject = torch.zeros(2, dtype=torch.long)
    cam = attribution.gradcam(model, "atms", x, subject, w)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(attribution.score(model, xg, subject, w).sum(), xg)
    expected = torch.relu((g.mean(-1, keepdim=True) * x).sum(1))
    assert cam.shape == (2, 40) and torch.allclose(cam, expected, atol=1e-6)


# ------------------------------------------------------------------ figures
def non_blank(path, size):
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == size
        pixels = np.asarray(img.convert("L"), dtype=float)
    assert pixels.std() > 20 and (pixels < 200).mean() > 0.01


def px(inches, dpi=100):
    return round(inches * dpi)


@pytest.fixture
def table_files(tmp_path):
    df = known_runs()
    inter = df.assign(regime="inter")
    pd.concat([df, inter]).to_csv(tmp_path / "retrieval.csv", index=False)
    tables.write_statistics(tmp_path / "retrieval.csv", tmp_path / "stats.csv")
    return tmp_path


def test_aligned_vs_unaligned_and_per_subject_figures(table_files):
    outs = [table_files / "f1.png", table_files / "f1.pdf"]
    shape = figures.aligned_vs_unaligned(
        table_files / "retrieval.csv", table_files / "stats.csv", outs, dpi=100
    )
    assert shape == (2, 1)  # regimes x brain encoders
    non_blank(outs[0], (px(figures.PAGE_WIDTH), px(2 * 2.6)))
    assert outs[1].read_bytes()[:5] == b"%PDF-"
    out = table_files / "f2.png"
    assert figures.per_subject(table_files / "retrieval.csv", [out], dpi=100) == (2, 2)
    non_blank(out, (px(figures.PAGE_WIDTH), px(2 * 3.6)))


def write_attribution(path, rng, peak):
    t = np.arange(250) / 250
    temporal = np.exp(-((t - peak) ** 2) / 0.005) + 0.01
    freqs = np.fft.rfftfreq(250, 1 / 250)
    spectral = np.exp(-freqs / 10)
    spatial = rng.uniform(0.5, 1, 63) + np.array([c.startswith("O") for c in CH_NAMES])
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        for key, v in (("temporal", temporal), ("spectral", spectral), ("spatial", spatial)):
            f[key] = (v / v.sum()).astype(np.float32)
        f["times"], f["freqs"] = t.astype(np.float32), freqs.astype(np.float32)
        f["ch_names"] = np.array(CH_NAMES, dtype=h5py.string_dtype())


@pytest.fixture
def run_files(tmp_path):
    rng = np.random.default_rng(0)
    attrs, metrics = [], []
    for subject in (1, 2, 3):
        for enc, peak in (("a", 0.25), ("a_glocal", 0.15)):
            run = tmp_path / f"runs/d/intra/sub-{subject:02d}/nice/{enc}/seed-7"
            write_attribution(run / "attribution.h5", rng, peak + rng.normal(0, 0.01))
            attrs.append(run / "attribution.h5")
            epochs = np.arange(1, 11 - subject)
            pd.DataFrame({
                "epoch": epochs, "train_loss": 5 - 0.2 * epochs, "val_loss": 5 - 0.1 * epochs,
                "val_top1": 0.02 * epochs * (1.5 if enc == "a_glocal" else 1.0),
            }).to_csv(run / "metrics.csv", index=False)  # fmt: skip
            metrics.append(run / "metrics.csv")
    return attrs, metrics


@pytest.mark.parametrize(
    "name, size",
    [("temporal_importance", (1, 2.4)), ("spectral_importance", (1, 2.4)),
     ("spatial_importance", (1, 2.5))],
)  # fmt: skip
def test_attribution_figures(tmp_path, run_files, name, size):
    out = tmp_path / f"{name}.png"
    rows, _ = getattr(figures, name)(run_files[0], PAIRS[:1], [out], dpi=100)
    assert rows == size[0]
    non_blank(out, (px(figures.PAGE_WIDTH), px(size[1])))


def test_profile_frame_averages_seeds_and_scales_uniform_to_one(run_files):
    records = figures.load_attributions(run_files[0], PAIRS[:1])
    assert len(records) == 6 and {r["alignment"] for r in records} == {"aligned", "unaligned"}
    df = figures.profile_frame(records, "temporal", "times")
    per_run = df.groupby(["alignment", "subject"]).importance.mean()
    assert per_run.to_numpy() == pytest.approx(np.ones(6), rel=1e-5)  # mean of share x n = 1
    peak = df.loc[df.groupby(["alignment", "subject"]).importance.idxmax()]
    assert peak[peak.alignment == "aligned"].x.mean() < peak[peak.alignment == "unaligned"].x.mean()


def test_training_curves_figure(tmp_path, run_files):
    out = tmp_path / "curves.png"
    assert figures.training_curves(run_files[1], PAIRS[:1], [out], dpi=100) == (2, 1)
    non_blank(out, (px(figures.PAGE_WIDTH), px(4.6)))


def test_run_identity_and_stars():
    ident = figures.run_identity("results/runs/d/inter/sub-03/atms/clip_vitl14/seed-42/x.h5")
    assert ident == {"regime": "inter", "subject": 3, "brain_encoder": "atms",
                     "image_encoder": "clip_vitl14", "seed": 42}  # fmt: skip
    with pytest.raises(InputError, match="not inside a run directory"):
        figures.run_identity("results/tables/retrieval.csv")
    assert [figures.stars(p) for p in (0.0005, 0.005, 0.03, 0.2, np.nan)] == [
        "***",
        "**",
        "*",
        "n.s.",
        "n/a",
    ]
