"""The embedded THINGS-MEG world: ds004212's derivative in its exact format, a planted signal.

The images and the simulated human judgements are the synthetic THINGS of `visdecode.datasets.synthetic_things`
(perceptual features drawn per concept, nuisance clutter the brain ignores, an alignment set
judged by the features or, for the null-alignment control, by the clutter), laid out as
THINGS-MEG's image folders. Every concept has one exp image per session (exemplars 1..S); the
test concepts also have a test image (exemplar 13) shown once every session, and their exp
images are shown too (preparation must leave them out of training, as on real data).

The MEG: each perceptual feature drives one current dipole in posterior cortex (seeded
positions, tangential orientations), seen by the 271 sensors through MNE's spherical-head
forward model (`mne.make_forward_dipole`), with its own waveform (peaking at 80-300 ms); plus a generic
evoked response, spatially smooth and temporally coloured noise, and each epoch z-scored
against its pre-stimulus period, as the derivative is. Epochs are written in parts of
`part_mb` MB, so a reader must follow them. Each run carries `mismatches` trials whose event
value disagrees with the CSV (the real data's quirk).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from scipy.signal import lfilter

from visdecode.datasets import synthetic_things as things
from visdecode.datasets.things_meg import format as fmt
from visdecode.io import atomic_path

log = logging.getLogger(__name__)
LETTERS = "abcdefghijklmnopqrstuvwxyz"
TEST_EXEMPLAR = 13


@dataclass(frozen=True)
class WorldConfig(things.WorldOptions):
    """Scale and signal of the synthetic THINGS-MEG world; every field is a config key."""

    LABEL = "THINGS-MEG world"

    seed: int = 0
    n_sessions: int = 4
    n_runs: int = 2
    n_train_concepts: int = 150
    n_test_concepts: int = 100
    n_catch: int = 5  # catch trials per session
    mismatches: int = 1  # trials per run whose event value disagrees with the CSV
    part_mb: int = 64  # size of the epochs file's parts (MNE: 2 GB on real data)
    image_size: int = 128
    clutter: float = 0.35
    signal: float = 3.0  # dipole strength relative to the noise (1: aligned barely helps)
    n_alignment_images: int = 600
    n_triplets: int = 30000
    judgement_noise: float = 0.3
    human_judgements: str = "perceptual"

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.n_sessions < TEST_EXEMPLAR:
            raise ValueError(f"synthetic world: n_sessions {self.n_sessions}: use 1 to 12")


# --------------------------------------------------------------------------- images
def concepts(cfg: WorldConfig) -> tuple[list[str], list[str]]:
    """(every concept in THINGS order, the test concepts); some names hold '_' as THINGS'."""
    words = things._concept_names(cfg.n_train_concepts + cfg.n_test_concepts)
    names = sorted(
        f"{w}_{things.CONCEPT_WORDS[i % len(things.CONCEPT_WORDS)]}" if i % 3 == 0 else w
        for i, w in enumerate(words)
    )
    rng = np.random.default_rng([cfg.seed, 11])
    test = sorted(names[i] for i in rng.choice(len(names), cfg.n_test_concepts, replace=False))
    return names, test


def image_table(cfg: WorldConfig) -> pd.DataFrame:
    """Every image the world shows: trial_type, concept (1-based), exemplar, things_image_nr,
    image_path, test_image_nr, in THINGS order."""
    names, test = concepts(cfg)
    rows = []
    for c, name in enumerate(names, start=1):
        exemplars = list(range(1, cfg.n_sessions + 1))
        exemplars += [TEST_EXEMPLAR] if name in test else []
        for e in exemplars:
            file = f"{name}_{e:02d}{LETTERS[(c + e) % 26]}.jpg"
            kind = "test" if e == TEST_EXEMPLAR else "exp"
            path = f"{fmt.IMAGE_FOLDERS[kind]}/{name}/{file}" if kind == "exp" else (
                f"{fmt.IMAGE_FOLDERS[kind]}/{file}"
            )  # fmt: skip
            rows.append((kind, c, e, (c - 1) * 13 + e, path, name))
    table = pd.DataFrame(
        rows, columns=["trial_type", "category_nr", "exemplar_nr", "things_image_nr",
                       "image_path", "concept"],
    )  # fmt: skip
    test_rows = table.trial_type == "test"
    table["test_image_nr"] = np.nan
    table.loc[test_rows, "test_image_nr"] = np.arange(1, test_rows.sum() + 1)
    return table


def write_images(root: Path, cfg: WorldConfig, render: bool = True) -> None:
    """The image folders, the alignment set and synthetic_truth.h5 (features per image)."""
    table = image_table(cfg)
    rng = np.random.default_rng([cfg.seed, 12])
    per = cfg.n_sessions + 1  # enough exemplars for every concept's images
    params, feat = things.sample_features(len(table.concept.unique()), per, rng)
    slot = (table.category_nr - 1) * per + np.minimum(table.exemplar_nr, per) - 1
    params, feat = params[slot], feat[slot]
    for i, path in enumerate(table.image_path):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if render:
            things.render_image(params[i], cfg.image_size, rng, cfg.clutter).save(
                target, quality=92
            )
    catch = root / fmt.IMAGE_FOLDERS["catch"]
    catch.mkdir(parents=True, exist_ok=True)
    for k in range(1, cfg.n_catch + 1):
        if render:
            p, _ = things.sample_features(1, 1, rng)
            things.render_image(p[0], cfg.image_size, rng, cfg.clutter).save(
                catch / f"catch{k:03d}.jpg", quality=92
            )
    align_params, align_feat = things.sample_features(cfg.n_alignment_images // 10 or 1, 10, rng)
    things.write_alignment(root, cfg, rng, align_params, align_feat, render)
    description = (
        "Planted truth of the visdecode THINGS-MEG world: standardised perceptual features "
        "of every image (by image_path), and the simulated human odd-one-out judgements "
        "on the alignment images."
    )
    with things.truth_file(root, cfg, description) as f:
        f.create_dataset("image_paths", data=table.image_path.tolist(), dtype=h5py.string_dtype())
        f["features"] = things.standardise(feat)


def write_images_atomic(root: Path, cfg: WorldConfig, render: bool = True) -> None:
    """write_images into a staging folder, then its parts into place (no partial world)."""
    things.write_atomic(
        root, lambda stage: write_images(stage, cfg, render),
        [*fmt.IMAGE_FOLDERS.values(), "alignment", "synthetic_truth.h5"],
    )  # fmt: skip


# --------------------------------------------------------------------------- MEG
def brain_model(cfg: WorldConfig, info, participant: int | None = None) -> dict:
    """Sensor topographies of the feature dipoles and the evoked response (forward model),
    waveforms, and the noise's spatial structure; seeded. A participant's dipoles sit a few
    millimetres off the shared ones, their orientations turned a little (anatomy and head
    position differ), so no two participants' topographies are the same."""
    import mne

    rng = np.random.default_rng([cfg.seed, 13])
    k = len(things.FEATURES)
    # posterior cortex in the head frame (y < 0 is posterior), 3-7 cm from the sphere centre
    centres = np.column_stack(
        [rng.uniform(-0.045, 0.045, k + 1), rng.uniform(-0.07, -0.035, k + 1),
         rng.uniform(0.0, 0.04, k + 1)]
    )  # fmt: skip
    ori = rng.normal(size=centres.shape)
    if participant is not None:
        own = np.random.default_rng([cfg.seed, 17, participant])
        centres = centres + own.normal(0, 0.004, centres.shape)
        ori = ori + own.normal(0, 0.15, ori.shape)
    radial = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    ori -= (ori * radial).sum(1, keepdims=True) * radial  # tangential: visible to MEG
    ori /= np.linalg.norm(ori, axis=1, keepdims=True)
    dipoles = mne.Dipole(np.zeros(k + 1), centres, np.ones(k + 1), ori, np.ones(k + 1))
    sphere = mne.make_sphere_model(r0=(0.0, 0.0, 0.0), head_radius=None, verbose="error")
    fwd, _ = mne.make_forward_dipole(dipoles, sphere, info, trans=None, verbose="error")
    gain = fwd["sol"]["data"]
    gain = gain / np.abs(gain).max(axis=0)  # each topography peaks at 1
    times = fmt.TMIN + np.arange(fmt.N_TIMES) / fmt.SFREQ
    wave = np.exp(
        -((times[None] - things.LATENCY[:, None]) ** 2) / (2 * things.WIDTH[:, None] ** 2)
    )
    wave *= np.cos(
        2 * np.pi * (times[None] - things.LATENCY[:, None]) / (4 * things.WIDTH[:, None])
    )
    erp = (
        np.exp(-((times - 0.10) ** 2) / (2 * 0.015**2))
        - 1.5 * np.exp(-((times - 0.17) ** 2) / (2 * 0.025**2))
        + 0.8 * np.exp(-((times - 0.25) ** 2) / (2 * 0.04**2))
    )
    pos = np.array([ch["loc"][:3] for ch in info["chs"]])
    dist2 = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    noise_cov = np.exp(-dist2 / (2 * 0.04**2)) + 0.1 * np.eye(len(pos))
    return {
        "topographies": gain[:, :k],
        "erp_topography": gain[:, k],
        "waveforms": wave,
        "erp_waveform": erp,
        "noise_chol": np.linalg.cholesky(noise_cov).astype(np.float32),
    }


def schedule(cfg: WorldConfig, table: pd.DataFrame, participant: int) -> pd.DataFrame:
    """The participant's sample attributes: per session every concept's exp image of that
    session's exemplar, every test image and the catch trials, shuffled and cut into runs."""
    rng = np.random.default_rng([cfg.seed, 14, participant])
    sessions = []
    for ses in range(1, cfg.n_sessions + 1):
        shown = table[(table.exemplar_nr == ses) | (table.trial_type == "test")]
        catch = pd.DataFrame(
            {"trial_type": "catch", "image_path": [
                f"{fmt.IMAGE_FOLDERS['catch']}/catch{k:03d}.jpg" for k in range(1, cfg.n_catch + 1)
            ]}
        )  # fmt: skip
        trials = pd.concat([shown, catch], ignore_index=True)
        trials = trials.iloc[rng.permutation(len(trials))].reset_index(drop=True)
        trials["session_nr"] = ses
        trials["run_nr"] = 1 + np.arange(len(trials)) * cfg.n_runs // len(trials)
        sessions.append(trials)
    trials = pd.concat(sessions, ignore_index=True)
    shown = trials.trial_type != "catch"
    out = pd.DataFrame(index=trials.index)
    out["trial_type"] = trials.trial_type
    out["image_nr"] = np.where(shown, trials.things_image_nr, 30000 + trials.index)
    out["image_nr"] = out.image_nr.astype(np.int64)
    out["category_nr"] = trials.category_nr
    out["exemplar_nr"] = trials.exemplar_nr
    out["test_image_nr"] = trials.test_image_nr
    for col in ("category_nr", "image_nr", "exemplar_nr"):
        out[f"things_{col}"] = trials[col if col != "image_nr" else "things_image_nr"].astype(float)
    out["image_path"] = trials.image_path
    soa = 1.5 + rng.uniform(0, 0.2, len(trials))
    out["onset"] = np.cumsum(soa)
    out["image_on"] = out.onset
    out["image_off"] = out.onset + 0.5
    responded = (~shown) & (rng.random(len(trials)) < 0.9)
    out["responded"] = responded.astype(np.int64)
    out["key_id"] = np.where(responded, 1.0, np.nan)
    out["RT"] = np.where(responded, rng.uniform(0.3, 0.9, len(trials)), np.nan)
    out["key_time"] = out.onset + out.RT
    out["session_nr"] = trials.session_nr.astype(np.int64)
    out["run_nr"] = trials.run_nr.astype(np.int64)
    return out[list(fmt.COLUMNS)]


def events(cfg: WorldConfig, attributes: pd.DataFrame, participant: int) -> np.ndarray:
    """(epochs, 3) MNE events: a unique sample each, 0, the event value; `mismatches` shown
    trials per run carry another image's value (as the real data's few disagreements)."""
    expected = fmt.expected_events(attributes)
    value = expected.copy()
    rng = np.random.default_rng([cfg.seed, 15, participant])
    shown = np.flatnonzero(attributes.trial_type.to_numpy() != "catch")
    run = attributes.session_nr.to_numpy() * 100 + attributes.run_nr.to_numpy()
    for r in np.unique(run):
        here = shown[run[shown] == r]
        for i in rng.choice(here, min(cfg.mismatches, len(here)), replace=False):
            value[i] = rng.choice(expected[shown][expected[shown] != expected[i]])
    sample = np.round(attributes.onset.to_numpy() * fmt.SFREQ).astype(np.int64)
    return np.column_stack([sample, np.zeros_like(sample), value])


def synthesize(cfg, model, features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(epochs, 271, 281) float32 z-scores: each epoch's features through the forward model,
    plus the evoked response and noise, z-scored against the pre-stimulus period."""
    n, n_ch = len(features), model["noise_chol"].shape[0]
    source = features[:, :, None] * model["waveforms"][None]  # (n, K, T)
    x = cfg.signal * np.einsum("ck,nkt->nct", model["topographies"], source)
    x += 2 * cfg.signal * model["erp_topography"][None, :, None] * model["erp_waveform"]
    white = rng.standard_normal((n, n_ch, fmt.N_TIMES), dtype=np.float32)
    coloured = lfilter([np.sqrt(1 - 0.8**2)], [1, -0.8], white, axis=2) + 0.3 * white
    x += np.einsum("cd,ndt->nct", model["noise_chol"], coloured.astype(np.float32))
    base = x[:, :, : round(-fmt.TMIN * fmt.SFREQ) + 1]
    x = (x - base.mean(-1, keepdims=True)) / base.std(-1, keepdims=True)
    return x.astype(np.float32)


def write_participant(
    root: Path, participant: int, cfg: WorldConfig, chunk: int = 256
) -> list[Path]:
    """The participant's epochs file (in parts) and sample attributes, each written whole or
    not at all; memory is bounded by one part."""
    info = fmt.make_info()
    model = brain_model(cfg, info, participant)
    table = image_table(cfg)
    attributes = schedule(cfg, table, participant)
    ev = events(cfg, attributes, participant)
    with h5py.File(root / "synthetic_truth.h5", "r") as f:
        paths = f["image_paths"].asstr()[:]
        feats = f["features"][:]
    lookup = dict(zip(paths, feats))
    target = np.random.default_rng(things.TARGET_FEATURES_SEED).normal(0, 1, feats.shape[1])
    # what each epoch shows: the CSV's image (the event value's disagreement is a label error)
    features = np.stack([lookup.get(p, target) for p in attributes.image_path])
    rng = np.random.default_rng([cfg.seed, 16, participant])

    def epochs(start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, len(info["ch_names"]), fmt.N_TIMES), np.float32)
        for a in range(start, stop, chunk):
            b = min(a + chunk, stop)
            out[a - start : b - start] = synthesize(cfg, model, features[a:b], rng)
        return out

    first = fmt.epochs_path(root, participant)
    csv = fmt.attributes_path(root, participant)
    per_epoch = len(info["ch_names"]) * fmt.N_TIMES * 4
    n_parts = max(1, int(np.ceil(len(attributes) * per_epoch / (cfg.part_mb * 2**20))))
    write_epochs(first, info, ev, attributes, epochs, n_parts)
    with atomic_path(csv) as tmp:
        attributes.to_csv(tmp, index=False)
    log.info("P%d: %d epochs in %d parts -> %s", participant, len(attributes), n_parts, first)
    return [first.with_name(fmt.part_name(first, i)) for i in range(n_parts)] + [csv]


def write_epochs(first: Path, info, ev: np.ndarray, attributes: pd.DataFrame, make, n_parts: int):
    """Write an epochs file in `n_parts` parts, each from its own EpochsArray (memory: about
    4x one part's float32 size: MNE holds it in float64, plus its write buffer), as
    `Epochs.save` would split it; the parts appear only once all are written.
    make(start, stop) -> the epochs' data. Uses MNE's part writer (mne.epochs._save_split),
    the one `save` uses; tests/test_things_meg.py checks the result reads back as `save`'s."""
    import mne
    from mne.epochs import _save_split

    first.parent.mkdir(parents=True, exist_ok=True)
    event_id = {str(v): int(v) for v in np.unique(ev[:, 2])}
    n = len(ev)
    stage = first.parent / f".{first.name}.parts"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    names = [stage / fmt.part_name(first, i) for i in range(n_parts)]
    try:
        for p, idx in enumerate(np.array_split(np.arange(n), n_parts)):
            a, b = int(idx[0]), int(idx[-1]) + 1
            drop_log = tuple(() if a <= i < b else ("IGNORED",) for i in range(n))
            part = mne.EpochsArray(
                make(a, b), info, events=ev[a:b], tmin=fmt.TMIN, event_id=event_id,
                metadata=attributes.iloc[a:b], baseline=None, selection=np.arange(a, b),
                drop_log=drop_log, on_missing="ignore", verbose="error",
            )  # fmt: skip
            part.event_id = event_id
            _save_split(part, names, p, n_parts, "single", True)
        for name in names[1:] + names[:1]:  # the first part, which readers open, last
            name.rename(first.parent / name.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
