"""The synthetic THINGS: images drawn from known perceptual features, the simulated humans who
judge them, and the aligned/unaligned image-encoder pair; every synthetic data set's images.

* Every image is drawn from a vector of perceptual features ``p`` (``FEATURES``): the object's
  colour (two opponent axes), lightness, size, position, stripe frequency and orientation, its
  shape's compactness, and the background lightness. Concepts fix the shape, a base hue and a
  stripe frequency; images of a concept vary the rest. Each image also carries *nuisance
  clutter* (random coloured blobs) that is not part of ``p``: image encoders see it, the
  planted brain responses (each kind's world) ignore it.
* An aligned/unaligned encoder pair: ``synth_resnet18`` is a timm ResNet-18 with *random*
  seeded weights (synthetic worlds only); ``synth_resnet18_glocal`` is the same backbone plus
  an affine transform fitted, as gLocal does, to odd-one-out judgements of simulated humans
  who judge by ``p``. The judgements come from a separate set of alignment images.
* The null-alignment control (``human_judgements: nuisance``): the simulated humans judge by
  the clutter instead (its blobs' number, mean colour and centroid), which the images show
  but the brain signal does not carry; only the judgements, and so the aligned encoder, change.

A world's options (`image_size`, `clutter`, `n_triplets`, `judgement_noise`,
`human_judgements`) come from its kind's WorldConfig.
"""

from __future__ import annotations

import logging
import shutil
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import h5py
import numpy as np
from PIL import Image, ImageDraw

from visdecode.io import atomic_path

log = logging.getLogger(__name__)

FEATURES = (
    "colour_a",  # opponent colour axis 1 (cos hue * saturation)
    "colour_b",  # opponent colour axis 2 (sin hue * saturation)
    "lightness",  # object lightness
    "background",  # background lightness
    "size",
    "pos_x",
    "pos_y",
    "stripe_freq",
    "stripe_cos",  # stripe orientation, cos(2 theta)
    "stripe_sin",  # stripe orientation, sin(2 theta)
    "compactness",  # shape: circle 1 ... star low
)
# Latency (s) and width (s) of each feature's waveform: colour/lightness early, shape later.
LATENCY = np.array([0.09, 0.10, 0.08, 0.11, 0.15, 0.12, 0.13, 0.18, 0.22, 0.24, 0.30])
WIDTH = np.array([0.03, 0.03, 0.025, 0.03, 0.04, 0.035, 0.035, 0.045, 0.05, 0.05, 0.06])
# Shapes as (number of vertices, inner-radius ratio); ratio 1 = regular polygon, 0 = circle.
SHAPES = [(0, 0.0), (3, 1.0), (4, 1.0), (5, 1.0), (6, 1.0), (5, 0.45), (6, 0.5), (8, 0.6)]
CONCEPT_WORDS = (
    "apple ball boat cake chair clock cup door egg fan fork hat kite lamp leaf moon nut pen "
    "ring rope shoe sock star tent tree vase wheel whale zebra anchor bell brick broom candle"
).split()
JUDGEMENTS = ("perceptual", "nuisance")
NUISANCE = ("blobs", "blob_red", "blob_green", "blob_blue", "blob_x", "blob_y")
TARGET_FEATURES_SEED = 99999


class WorldOptions:
    """What every kind's WorldConfig (a frozen dataclass of config keys) shares: built from a
    config mapping, unknown keys refused; the simulated humans' judgements checked."""

    LABEL = "synthetic-world"

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.LABEL} option(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def __post_init__(self):
        if self.human_judgements not in JUDGEMENTS:
            raise ValueError(
                f"synthetic world: human_judgements '{self.human_judgements}': use one of "
                f"{', '.join(JUDGEMENTS)}"
            )


# --------------------------------------------------------------------------- features
def _concept_names(n: int) -> list[str]:
    words = [
        f"{w}{'' if i < len(CONCEPT_WORDS) else i // len(CONCEPT_WORDS)}"
        for i, w in enumerate(CONCEPT_WORDS * (n // len(CONCEPT_WORDS) + 1))
    ][:n]
    return sorted(words)


def sample_features(
    n_concepts: int, per_concept: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw raw drawing parameters and perceptual features for n_concepts x per_concept images.

    Returns (params, features): params (n, 9) = hue, saturation, lightness, background, size,
    x, y, stripe frequency, orientation, plus shape index in a 10th column; features (n, 11).
    """
    n = n_concepts * per_concept
    concept = np.repeat(np.arange(n_concepts), per_concept)
    c_shape = rng.integers(0, len(SHAPES), n_concepts)
    c_hue = rng.uniform(0, 2 * np.pi, n_concepts)
    c_freq = rng.uniform(2.0, 9.0, n_concepts)
    hue = c_hue[concept] + rng.normal(0, 0.35, n)
    sat = rng.uniform(0.35, 1.0, n)
    light = rng.uniform(0.3, 0.85, n)
    background = rng.uniform(0.1, 0.9, n)
    size = rng.uniform(0.18, 0.42, n)
    x = rng.uniform(0.3, 0.7, n)
    y = rng.uniform(0.3, 0.7, n)
    freq = np.clip(c_freq[concept] + rng.normal(0, 0.8, n), 1.5, 10.0)
    theta = rng.uniform(0, np.pi, n)
    shape = c_shape[concept]
    params = np.column_stack([hue, sat, light, background, size, x, y, freq, theta, shape])
    return params, params_to_features(params)


def params_to_features(params: np.ndarray) -> np.ndarray:
    """Perceptual features (not standardised) from drawing parameters."""
    hue, sat, light, background, size, x, y, freq, theta, shape = params.T
    compact = np.array([1.0 if v == 0 else 0.4 + 0.6 * r * (v / 8) for v, r in SHAPES])
    return np.column_stack(
        [
            np.cos(hue) * sat,
            np.sin(hue) * sat,
            light,
            background,
            size,
            x,
            y,
            freq,
            np.cos(2 * theta),
            np.sin(2 * theta),
            compact[shape.astype(int)],
        ]
    )


# Feature scale used for the EEG: fixed (not data-dependent) so every subset is comparable.
FEATURE_CENTRE = np.array([0, 0, 0.575, 0.5, 0.3, 0.5, 0.5, 5.5, 0, 0, 0.75])
FEATURE_SCALE = np.array([0.5, 0.5, 0.16, 0.23, 0.07, 0.115, 0.115, 2.1, 0.7, 0.7, 0.2])


def standardise(features: np.ndarray) -> np.ndarray:
    return (features - FEATURE_CENTRE) / FEATURE_SCALE


# --------------------------------------------------------------------------- images
def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb((h / (2 * np.pi)) % 1.0, s, v))


def _shape_polygon(shape: int, cx: float, cy: float, r: float, rot: float) -> list[tuple]:
    n, ratio = SHAPES[shape]
    if n == 0:
        return []
    pts = []
    steps = n if ratio == 1.0 else 2 * n
    for i in range(steps):
        rad = r if (ratio == 1.0 or i % 2 == 0) else r * ratio
        a = rot + 2 * np.pi * i / steps
        pts.append((cx + rad * np.cos(a), cy + rad * np.sin(a)))
    return pts


def render_image(
    params: np.ndarray,
    size: int,
    rng: np.random.Generator,
    clutter: float = 0.35,
    nuisance: list | None = None,
) -> Image.Image:
    """Draw one picture from its parameters, with random nuisance clutter; `nuisance`, when
    given, receives the clutter's description (NUISANCE: blob count, area-weighted mean colour
    and centroid)."""  # fmt: skip
    hue, sat, light, background, obj_size, x, y, freq, theta, shape = params
    img = np.full((size, size, 3), background, dtype=np.float64)
    # nuisance clutter: coloured blobs and a faint noise texture the EEG ignores
    yy, xx = np.mgrid[0:size, 0:size] / size
    blobs = []
    for _ in range(rng.integers(3, 7)):
        bx, by, br = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.1)
        colour = rng.uniform(0, 1, 3)
        blobs.append([*colour, bx, by, br**2])
        blob = clutter * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * br**2))[..., None]
        img = img * (1 - blob) + blob * colour
    if nuisance is not None:
        b = np.array(blobs)
        nuisance.append([len(b), *np.average(b[:, :5], axis=0, weights=b[:, 5])])
    img += rng.normal(0, 0.1 * clutter, img.shape)
    # the object: a striped shape
    mask_img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask_img)
    cx, cy, r = x * size, y * size, obj_size * size
    poly = _shape_polygon(int(shape), cx, cy, r, rot=theta)
    if poly:
        draw.polygon(poly, fill=255)
    else:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    mask = (np.asarray(mask_img, dtype=np.float64) / 255.0)[..., None]
    phase = 2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta))
    stripes = (0.75 + 0.25 * np.sign(np.sin(phase)))[..., None]
    colour = _hsv_to_rgb(hue, sat, light)
    img = img * (1 - mask) + mask * stripes * colour
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


@contextmanager
def truth_file(root: Path, cfg, description: str):
    """`root`/synthetic_truth.h5, open for a world to add its planted features, with its
    description and every world option (attributes `world_<key>`) written."""
    with h5py.File(root / "synthetic_truth.h5", "a") as f:
        f.attrs["description"] = description
        for k, v in vars(cfg).items():
            f.attrs[f"world_{k}"] = v
        yield f


def write_atomic(root: Path, write, names) -> None:
    """`write(folder)` into a staging folder under `root`, then each of `names` moved into
    place, replacing what was there: no partial world is ever under its final name."""
    stage = root / ".staging"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        write(stage)
        for name in names:
            target = root / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            (stage / name).rename(target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_alignment(
    root: Path,
    cfg,
    rng: np.random.Generator,
    params: np.ndarray,
    features: np.ndarray,
    render: bool = True,
) -> None:
    """The alignment images (drawn from `params`) and the simulated humans' odd-one-out
    judgements of them, by their perceptual `features` or (human_judgements: nuisance) by
    their clutter, into alignment/images/ and synthetic_truth.h5 (created)."""  # fmt: skip
    align_dir = root / "alignment" / "images"
    align_dir.mkdir(parents=True, exist_ok=True)
    nuisance = []
    for i, p in enumerate(params if render else []):
        picture = render_image(p, cfg.image_size, rng, cfg.clutter, nuisance)
        picture.save(align_dir / f"align_{i:05d}.jpg", quality=92)
    if cfg.human_judgements == "nuisance":
        if not render:
            raise ValueError("human_judgements 'nuisance' needs the images rendered")
        nuisance = np.array(nuisance)
        judged = (nuisance - nuisance.mean(0)) / nuisance.std(0).clip(1e-9)
    else:
        judged = standardise(features)
    triplets, odd = simulate_odd_one_out(judged, cfg.n_triplets, rng, cfg.judgement_noise)
    with h5py.File(root / "synthetic_truth.h5", "w") as f:
        f.attrs["feature_names"] = list(FEATURES)
        f["alignment_features"] = standardise(features)
        f["triplets"] = triplets
        f["odd_one_out"] = odd
        f["odd_one_out"].attrs["judged_by"] = (
            ", ".join(NUISANCE) if cfg.human_judgements == "nuisance" else ", ".join(FEATURES)
        )
        f["alignment_files"] = [f"align_{i:05d}.jpg" for i in range(len(params))]


def simulate_odd_one_out(
    features: np.ndarray, n_triplets: int, rng: np.random.Generator, noise: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Simulated humans pick the odd one out of a triplet: the one left out of the most
    similar pair, similarity = -squared distance between perceptual features, plus noise."""
    n = len(features)
    trip = np.stack([rng.choice(n, 3, replace=False) for _ in range(n_triplets)])
    f = features[trip]  # (T, 3, K)
    pair_sim = -np.stack(
        [
            ((f[:, 1] - f[:, 2]) ** 2).sum(-1),  # pair (1,2) -> 0 is odd
            ((f[:, 0] - f[:, 2]) ** 2).sum(-1),  # pair (0,2) -> 1 is odd
            ((f[:, 0] - f[:, 1]) ** 2).sum(-1),  # pair (0,1) -> 2 is odd
        ],
        axis=1,
    )
    pair_sim = pair_sim / features.shape[1] + rng.normal(0, noise, pair_sim.shape)
    return trip.astype(np.int64), pair_sim.argmax(1).astype(np.int64)


def write_encoders(root: Path, enc_dir: Path | None = None, batch_size: int = 64) -> dict:
    """The synthetic encoder pair's weights (into `enc_dir`, default `root/encoders`): random
    backbone + gLocal-style transform fitted to the world's simulated judgements."""
    import torch

    from visdecode import embed, image_encoders

    enc_dir = Path(enc_dir) if enc_dir is not None else root / "encoders"
    enc_dir.mkdir(parents=True, exist_ok=True)
    backbone = image_encoders.synth_backbone()
    log.warning("synth_resnet18: RANDOM-INITIALISED weights (synthetic world only)")
    with atomic_path(enc_dir / "synth_resnet18.pt") as tmp:
        torch.save(backbone.state_dict(), tmp)
    with h5py.File(root / "synthetic_truth.h5", "r") as f:
        files = [s.decode() for s in f["alignment_files"][:]]
        triplets, odd = f["triplets"][:], f["odd_one_out"][:]
    spec = image_encoders.get("synth_resnet18")
    paths = [root / "alignment" / "images" / name for name in files]
    emb = embed.embed_paths(backbone, spec, paths, batch_size, desc="alignment set")
    head, fit = image_encoders.fit_glocal(emb, triplets, odd)
    with atomic_path(enc_dir / "synth_resnet18_glocal.pt") as tmp:
        torch.save(head.state_dict(), tmp)
    return fit
