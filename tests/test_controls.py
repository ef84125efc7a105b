"""The positive and negative controls, on the default synthetic world, where the truth is known.

- Positive: in the planted world (simulated humans judge by the features the EEG carries) the
  aligned encoder beats the unaligned one, and the default run's headline figure
  (retrieval_aligned_vs_unaligned) can show it: its own statistic (stats.csv's corrected p of
  `figures.significance_test` over the default subjects) is below 0.05.
- Null alignment: in the null world (`human_judgements: nuisance`: they judge by the images'
  clutter, which the EEG does not carry; the images and the EEG are the same) alignment must
  not help, and the figure's statistic shows no significant gain.
- Permutation: trained with the brain/image pairing shuffled, retrieval falls to chance.
- Random directions (`controls.null_alignment`, the null that runs on real data): the aligned
  transform with its directions randomised, its singular values kept, must not help either.

The world, the subjects, the seeds, the recipe, the test and its correction are
config/config.yaml's (its synthetic EEG; 100-way); runs are intra-subject NICE, as the default
run's. Thresholds (README, "Controls", gives the measurements behind them, from
benchmarks/controls.py, 2 subjects x 5 seeds): aligned minus unaligned top-1 measured +0.20
per run (runs' s.d. 0.064, so the mean of the default's 3 paired differences has s.d. about
0.037); the test asks for more than +0.10, half the effect and about 2.7 s.d. above 0. In the
null world the aligned encoder measured 0.04 below the unaligned one (runs' s.d. 0.08); the
test asks that it not be above it by more than +0.05, the same for the random-direction encoder
(measured 0.03 below). The permuted runs' top-1 must lie in the central 99% interval of chance
(tables.controls: their hits Binomial(queries, 1/100)); measured 0.007 to 0.012.
"""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from visdecode import embed, evaluate, figures, image_sets, tables, train
from visdecode.datasets import synthetic_things
from visdecode.datasets.things_eeg2 import format as things_eeg2
from visdecode.datasets.things_eeg2 import preprocess, synth

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
EEG = CONFIG["datasets"]["things-eeg2-synthetic"]
WORLD = EEG["world"]
RECIPE = train.Recipe(**CONFIG["train"]["recipes"]["nice"])
SUBJECTS = tuple(EEG["subjects"])  # the default run's: its figure's test is over these
SEEDS = tuple(CONFIG["seeds"])
TEST = CONFIG["figures"]["significance_test"]
POSITIVE_MARGIN = 0.10
NULL_TOLERANCE = 0.05


def build(root, judgements: str, eeg: bool) -> None:
    cfg = synth.WorldConfig.from_dict({**WORLD, "human_judgements": judgements})
    synth.write_images_atomic(root, cfg)
    synthetic_things.write_encoders(root)
    if eeg:
        for s in SUBJECTS:
            synth.write_subject(root, s, cfg)
            params = preprocess.Params(test_reps=cfg.test_reps_per_session)
            preprocess.run(root, s, root / f"sub-{s:02d}.h5", params, threads=2)
    image_sets.write(root / "images.tsv", things_eeg2.image_set(root / "images"), root, "")
    embed.run("synth_resnet18", root / "images.tsv", root / "encoders", root / "synth_resnet18.h5")
    for derived in ("synth_resnet18_glocal", "null_synth_resnet18_glocal"):
        embed.derive(derived, root / "synth_resnet18.h5", root / "encoders", root / f"{derived}.h5")


def top1(brains, embeddings, out, seeds, permute=False, subjects=SUBJECTS) -> list[dict]:
    """The retrieval result of every subject x seed run (intra-subject NICE)."""
    scores = []
    for s in subjects:
        for seed in seeds:
            run = out / f"sub-{s}-seed-{seed}"
            train.run(brains / f"sub-{s:02d}.h5", embeddings, "nice", seed, run, RECIPE, threads=2,
                      val_split=CONFIG["train"]["val_split"], permute=permute,
                      selection=CONFIG["train"]["selection"])  # fmt: skip
            result = evaluate.run(run / "model.pt", brains / f"sub-{s:02d}.h5", embeddings,
                                  run / "retrieval.json", {"seed": seed, "subject": s})  # fmt: skip
            scores.append(result)
    return scores


@pytest.fixture(scope="module")
def controls(tmp_path_factory):
    start = time.perf_counter()
    planted, null = tmp_path_factory.mktemp("planted"), tmp_path_factory.mktemp("null")
    build(planted, "perceptual", eeg=True)
    build(null, "nuisance", eeg=False)  # the same images and EEG (tests/test_synth.py)
    seeds = SEEDS
    out = {
        "unaligned": top1(planted, planted / "synth_resnet18.h5", planted / "u", seeds),
        "aligned": top1(planted, planted / "synth_resnet18_glocal.h5", planted / "a", seeds),
        "null_aligned": top1(planted, null / "synth_resnet18_glocal.h5", null / "a", seeds),
        "permuted": top1(planted, planted / "synth_resnet18_glocal.h5", planted / "p", seeds[:1],
                         permute=True, subjects=SUBJECTS[:1]),
        "random_directions": top1(planted, planted / "null_synth_resnet18_glocal.h5",
                                  planted / "r", seeds[:1], subjects=SUBJECTS[:2]),
    }  # fmt: skip
    print({k: [r["top1"] for r in v] for k, v in out.items()}, f"{time.perf_counter() - start:.0f} s")
    return out


def mean(runs):
    return float(np.mean([r["top1"] for r in runs]))


def figure_p(aligned: list[dict], unaligned: list[dict]) -> float:
    """The headline figure's statistic: the corrected p of `figures.significance_test` that
    tables.statistics writes to stats.csv and figures.aligned_vs_unaligned shows."""
    rows = pd.DataFrame(
        [{"dataset": "d", "regime": "intra", "brain_encoder": "nice", "pair": "synth-gLocal",
          "alignment": alignment, **{k: r[k] for k in ("subject", "seed", "top1", "top5")}}
         for alignment, runs in (("aligned", aligned), ("unaligned", unaligned)) for r in runs]
    )  # fmt: skip
    st = tables.statistics(rows, CONFIG["stats"]["correction"])
    row = st[st.metric == "top1"].iloc[0]
    assert row.n_subjects == len(SUBJECTS)
    return float(row[f"{TEST}_p_corrected"])


def test_positive_control_alignment_helps_where_planted(controls):
    assert len(controls["aligned"]) == len(controls["unaligned"]) == len(SUBJECTS) * len(SEEDS)
    assert mean(controls["aligned"]) - mean(controls["unaligned"]) > POSITIVE_MARGIN


def test_positive_control_headline_figure_is_significant(controls):
    """The default run's figure can show the planted effect: p < 0.05, a star."""
    p = figure_p(controls["aligned"], controls["unaligned"])
    print(f"planted world: {TEST} p = {p:.3g}")
    assert p < 0.05 and figures.stars(p) in ("*", "**", "***")


def test_null_control_alignment_does_not_help_where_absent(controls):
    assert mean(controls["null_aligned"]) - mean(controls["unaligned"]) < NULL_TOLERANCE


def test_null_control_headline_figure_shows_no_gain(controls):
    """The figure's statistic shows no significant gain in the null world. Directional, as
    the question is: alignment here costs retrieval (README, Controls), which a two-sided
    test with enough subjects would rightly call significant, and that is no false gain."""
    p = figure_p(controls["null_aligned"], controls["unaligned"])
    gain = mean(controls["null_aligned"]) - mean(controls["unaligned"])
    print(f"null world: {TEST} p = {p:.3g}, aligned minus unaligned {gain:+.3f}")
    assert not (p < 0.05 and gain > 0)


def test_permutation_control_falls_to_chance(controls):
    runs = [{**r, "dataset": "d", "control": "permutation", "regime": "intra", "brain_encoder":
             "nice", "image_encoder": "a", "subject": i}
            for i, r in enumerate(controls["permuted"])]  # fmt: skip
    row = tables.controls(runs).iloc[0]
    n = WORLD["n_test_concepts"]
    assert row.n_queries == len(controls["permuted"]) * n and row.reference_top1 == 1 / n
    assert row.verdict == "pass"


def test_random_direction_control_does_not_help(controls):
    """The null that runs on real data: the same-sized change of the space, in random
    directions; controls.csv's null_alignment row, from the same runs."""
    runs = [{**r, "dataset": "d", "regime": "intra", "brain_encoder": "nice", "image_encoder": name}
            for name, key in (("null_g", "random_directions"), ("u", "unaligned"))
            for r in controls[key] if r["seed"] == SEEDS[0] and r["subject"] in SUBJECTS[:2]]  # fmt: skip
    row = tables.controls(runs, [{"aligned": "null_g", "unaligned": "u"}]).iloc[0]
    assert row.n_runs == 2 and row.verdict == "pass"
    assert row.difference < NULL_TOLERANCE
