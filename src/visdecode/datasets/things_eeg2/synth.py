"""The embedded THINGS-EEG2 world: the data set in its exact on-disk format, a planted signal.

Its images are the synthetic THINGS (`visdecode.datasets.synthetic_things`: features, clutter,
simulated human judgements, the encoder pair).

What is planted (and saved in `synthetic_truth.h5` so tests can check it is recovered):

* Every image is drawn from a vector of perceptual features ``p`` (``FEATURES``): the object's
  colour (two opponent axes), lightness, size, position, stripe frequency and orientation, its
  shape's compactness, and the background lightness. Concepts fix the shape, a base hue and a
  stripe frequency; images of a concept vary the rest. Each image also carries *nuisance
  clutter* (random coloured blobs) that is not part of ``p``: image encoders see it, the
  planted brain response ignores it.
* The EEG response to an image is ``sum_k p_k * A[:, k] * h_k(t - onset)``, one scalp
  topography ``A[:, k]`` (a smooth blob over posterior channels) and one waveform ``h_k`` (a
  bump at a feature-specific latency, peaking at 80-300 ms) per feature, plus a generic visual evoked
  response. Onsets are 200 ms apart, so responses overlap, as in the real RSVP design.
* Noise is spatially correlated (a smooth covariance over the electrode positions) and
  temporally coloured (AR(1) plus an occipital 10 Hz rhythm), so noise normalisation matters.
* An aligned/unaligned encoder pair: ``synth_resnet18`` is a timm ResNet-18 with *random*
  seeded weights (synthetic world only); ``synth_resnet18_glocal`` is the same backbone plus
  an affine transform fitted, as gLocal does, to odd-one-out judgements of simulated humans
  who judge by ``p``. The judgements come from a separate set of alignment images.
* The null-alignment control (``human_judgements: nuisance``): the simulated humans judge by
  the clutter instead (its blobs' number, mean colour and centroid), which the images show
  but the EEG does not carry. Everything else (images, EEG, backbone) is the same world; only
  the judgements, and so the aligned encoder, change. Alignment must then not help.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy.signal import fftconvolve, lfilter

from visdecode.datasets.synthetic_things import (
    FEATURES, LATENCY, TARGET_FEATURES_SEED, WIDTH, WorldOptions, _concept_names, render_image,
    sample_features, standardise, truth_file, write_alignment, write_atomic,
)  # fmt: skip
from visdecode.datasets.things_eeg2 import format as fmt
from visdecode.io import atomic_path

log = logging.getLogger(__name__)

RESPONSE_S = 0.8  # length of one evoked response
SOA_SAMPLES = 200  # 200 ms between onsets at 1000 Hz
LEAD_IN_SAMPLES = 1000


@dataclass(frozen=True)
class WorldConfig(WorldOptions):
    """Scale and signal of the synthetic world; every field has a config.yaml key."""

    seed: int = 0
    n_sessions: int = 4
    n_train_concepts: int = 100
    images_per_concept: int = 10
    n_test_concepts: int = 100
    test_reps_per_session: int = 20
    extra_fraction: float = 0.02
    target_fraction: float = 0.06
    image_size: int = 128
    clutter: float = 0.35  # opacity of the nuisance blobs (0: none)
    signal_uv: float = 6.0
    noise_uv: float = 6.0
    n_alignment_images: int = 600
    n_triplets: int = 30000
    judgement_noise: float = 0.3
    human_judgements: str = "perceptual"  # perceptual | nuisance (the null-alignment control)


def write_images(root: Path, cfg: WorldConfig, render: bool = True) -> None:
    """Training/test images, image_metadata.npy, the alignment set and synthetic_truth.h5.

    render=False writes the metadata and the truth but no pictures (enough for the EEG and
    its preprocessing, e.g. in benchmarks)."""
    rng = np.random.default_rng([cfg.seed, 1])
    names = _concept_names(cfg.n_train_concepts + cfg.n_test_concepts)
    order = rng.permutation(len(names))
    train_concepts = sorted(names[i] for i in order[: cfg.n_train_concepts])
    test_concepts = sorted(names[i] for i in order[cfg.n_train_concepts :])
    train_params, train_feat = sample_features(cfg.n_train_concepts, cfg.images_per_concept, rng)
    test_params, test_feat = sample_features(cfg.n_test_concepts, 1, rng)
    align_params, align_feat = sample_features(cfg.n_alignment_images // 10 or 1, 10, rng)

    images = root / "images"
    meta = {k: [] for k in fmt.METADATA_KEYS}
    for part, concepts, per, params in (
        ("training", train_concepts, cfg.images_per_concept, train_params),
        ("test", test_concepts, 1, test_params),
    ):
        key = "train" if part == "training" else "test"
        for ci, concept in enumerate(concepts):
            folder = f"{ci + 1:05d}_{concept}"
            for ii in range(per):
                fname = f"{concept}_{ii + 1:02d}{'abcdefghijklmnopqrstuvwxyz'[ii % 26]}.jpg"
                path = images / f"{part}_images" / folder / fname
                path.parent.mkdir(parents=True, exist_ok=True)
                if render:
                    picture = render_image(params[ci * per + ii], cfg.image_size, rng, cfg.clutter)
                    picture.save(path, quality=92)
                meta[f"{key}_img_concepts"].append(folder)
                meta[f"{key}_img_files"].append(fname)
    images.mkdir(parents=True, exist_ok=True)
    np.save(images / "image_metadata.npy", meta, allow_pickle=True)

    write_alignment(root, cfg, rng, align_params, align_feat, render)
    description = (
        "Planted truth of the visdecode synthetic world: perceptual features of every "
        "image (raw and standardised), in event-code order, and the simulated human "
        "odd-one-out judgements on the alignment images."
    )
    with truth_file(root, cfg, description) as f:
        f["train_features"] = standardise(train_feat)
        f["test_features"] = standardise(test_feat)


# --------------------------------------------------------------------------- EEG
def _electrode_positions() -> np.ndarray:
    import mne

    montage = mne.channels.make_standard_montage("colin27_1005")
    pos = montage.get_positions()["ch_pos"]
    return np.array([pos[c] for c in fmt.CH_NAMES])


def brain_model(cfg: WorldConfig) -> dict:
    """Topographies, waveforms and noise structure shared by all subjects (seeded)."""
    rng = np.random.default_rng([cfg.seed, 2])
    pos = _electrode_positions()
    k = len(FEATURES)
    posterior = pos[[fmt.CH_NAMES.index(c) for c in fmt.occipito_parietal(fmt.CH_NAMES)]]
    centres = posterior[rng.integers(0, len(posterior), k)]
    d2 = ((pos[:, None, :] - centres[None]) ** 2).sum(-1)
    topo = np.exp(-d2 / (2 * 0.035**2)) * rng.choice([-1.0, 1.0], k)
    t = np.arange(int(RESPONSE_S * fmt.SFREQ)) / fmt.SFREQ
    wave = np.exp(-((t[None] - LATENCY[:, None]) ** 2) / (2 * WIDTH[:, None] ** 2))
    wave *= np.cos(2 * np.pi * (t[None] - LATENCY[:, None]) / (4 * WIDTH[:, None]))
    # generic visual evoked response (P1/N1/P2) over occipital sites
    occ = np.exp(-((pos - pos[fmt.CH_NAMES.index("Oz")]) ** 2).sum(-1) / (2 * 0.05**2))
    erp = (
        1.0 * np.exp(-((t - 0.10) ** 2) / (2 * 0.015**2))
        - 1.5 * np.exp(-((t - 0.17) ** 2) / (2 * 0.025**2))
        + 0.8 * np.exp(-((t - 0.25) ** 2) / (2 * 0.04**2))
    )
    dist2 = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    noise_cov = np.exp(-dist2 / (2 * 0.06**2)) + 0.05 * np.eye(len(pos))
    return {
        "topographies": topo,
        "waveforms": wave,
        "erp_topography": occ,
        "erp_waveform": erp,
        "noise_chol": np.linalg.cholesky(noise_cov),
        "alpha_topography": occ,
    }


def session_schedule(
    codes: np.ndarray, reps: int, cfg: WorldConfig, rng: np.random.Generator
) -> np.ndarray:
    """A shuffled trial sequence: each code `reps` times, a few extra repeats, and targets."""
    seq = np.repeat(codes, reps)
    extras = rng.choice(codes, int(round(cfg.extra_fraction * len(codes))), replace=False)
    seq = np.concatenate([seq, extras])
    n_targets = int(round(cfg.target_fraction * len(seq)))
    seq = np.concatenate([seq, np.full(n_targets, fmt.TARGET_CODE)])
    return rng.permutation(seq)


def synthesize_session(
    sequence: np.ndarray,
    features: dict[int, np.ndarray],
    model: dict,
    cfg: WorldConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """(64, N) float64 session in volts; the last row is the stim channel with event codes."""
    onsets = LEAD_IN_SAMPLES + SOA_SAMPLES * np.arange(len(sequence))
    n = onsets[-1] + int(1.5 * fmt.SFREQ)
    n_ch = len(fmt.CH_NAMES)
    feat = np.stack([features[c] for c in sequence])  # (trials, K)
    impulses = np.zeros((feat.shape[1], n))
    impulses[:, onsets] = feat.T
    sources = np.stack(
        [fftconvolve(impulses[k], model["waveforms"][k])[:n] for k in range(feat.shape[1])]
    )
    eeg = cfg.signal_uv * (model["topographies"] @ sources)
    onset_train = np.zeros(n)
    onset_train[onsets] = 1.0
    eeg += (
        3
        * cfg.signal_uv
        * np.outer(model["erp_topography"], fftconvolve(onset_train, model["erp_waveform"])[:n])
    )
    # coloured, spatially correlated noise
    white = rng.standard_normal((n_ch, n))
    coloured = lfilter([np.sqrt(1 - 0.9**2)], [1, -0.9], white, axis=1) + 0.5 * white
    eeg += cfg.noise_uv * (model["noise_chol"] @ coloured)
    t = np.arange(n) / fmt.SFREQ
    alpha = np.sin(2 * np.pi * 10 * t + rng.uniform(0, 2 * np.pi)) * (
        1 + 0.5 * np.sin(2 * np.pi * 0.1 * t)
    )
    eeg += cfg.noise_uv * np.outer(model["alpha_topography"], alpha)
    eeg += rng.normal(0, 20, (n_ch, 1))  # per-channel DC offsets, removed by the baseline
    stim = np.zeros((1, n))
    stim[0, onsets] = sequence
    return np.concatenate([eeg * 1e-6, stim], axis=0)


def write_subject(root: Path, subject: int, cfg: WorldConfig) -> list[Path]:
    """The raw files of one subject: n_sessions x {training, test}."""
    with h5py.File(root / "synthetic_truth.h5", "r") as f:
        train_feat = f["train_features"][:]
        test_feat = f["test_features"][:]
    target = np.random.default_rng(TARGET_FEATURES_SEED).normal(0, 1, train_feat.shape[1])
    model = brain_model(cfg)
    rng = np.random.default_rng([cfg.seed, 3, subject])
    train_codes = np.arange(1, len(train_feat) + 1)
    test_codes = np.arange(1, len(test_feat) + 1)
    train_lookup = {int(c): train_feat[c - 1] for c in train_codes} | {fmt.TARGET_CODE: target}
    test_lookup = {int(c): test_feat[c - 1] for c in test_codes} | {fmt.TARGET_CODE: target}
    # each concept is shown in the sessions of one parity: half the concepts per session,
    # each image twice per session, in 2 of 4 sessions -> 4 repetitions in all
    group = rng.permutation(np.arange(cfg.n_train_concepts) % 2)
    concept_of = (train_codes - 1) // cfg.images_per_concept
    written = []
    for ses in range(1, cfg.n_sessions + 1):
        shown = train_codes[group[concept_of] == (ses - 1) % 2]
        for part, codes, reps, lookup in (
            ("training", shown, 2, train_lookup),
            ("test", test_codes, cfg.test_reps_per_session, test_lookup),
        ):
            seq = session_schedule(codes, reps, cfg, rng)
            data = synthesize_session(seq, lookup, model, cfg, rng)
            raw = {
                "raw_eeg_data": data,
                "ch_names": fmt.CH_NAMES + [fmt.STIM_NAME],
                "ch_types": ["eeg"] * len(fmt.CH_NAMES) + ["stim"],
                "sfreq": fmt.SFREQ,
                "highpass": 0.01,
                "lowpass": 100.0,
            }
            path = fmt.raw_path(root, subject, ses, part)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, raw, allow_pickle=True)
            written.append(path)
            log.info("sub-%02d ses-%02d %s: %d trials -> %s", subject, ses, part, len(seq), path)
    return written


def write_images_atomic(root: Path, cfg: WorldConfig, render: bool = True) -> None:
    """write_images into a staging folder, then move its parts into place (no partial world)."""
    write_atomic(
        root, lambda stage: write_images(stage, cfg, render),
        ("images", "alignment", "synthetic_truth.h5"),
    )  # fmt: skip
