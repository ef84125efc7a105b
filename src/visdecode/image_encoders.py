"""Image encoders by name: a registry of frozen models that map images to embeddings.

Each entry says its embedding dimension, its preprocessing and where its weights come from.
Aligned/unaligned *pairs* are declared in config, not here.

Synthetic-world encoders (offline, random-initialised weights, for the synthetic world only):

* ``synth_resnet18``: timm's ResNet-18 definition, weights drawn at random with a fixed seed
  and stored in the world (``encoders/synth_resnet18.pt``).
* ``synth_resnet18_glocal``: the same backbone followed by an affine transform fitted, as
  gLocal does, to (simulated) human odd-one-out judgements (``encoders/synth_resnet18_glocal.pt``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from visdecode.errors import InputError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SYNTH_BACKBONE_SEED = 1234


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    dim: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str  # where the weights come from, in words
    weight_files: tuple[str, ...]  # files expected in the weights directory
    build: Callable[[Path], nn.Module]  # weights directory -> module (eval mode)
    synthetic: bool = False


class AffineHead(nn.Module):
    """gLocal-style transform: ((x - mean) / scale) @ W + b."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(()))
        self.weight = nn.Parameter(torch.eye(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.scale) @ self.weight + self.bias


def synth_backbone() -> nn.Module:
    """timm ResNet-18 (pooled 512-d features) with seeded random weights."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SYNTH_BACKBONE_SEED)
        model = timm.create_model("resnet18", pretrained=False, num_classes=0)
    return model.eval()


def _load_state(path: Path, encoder: str) -> dict:
    if not path.is_file():
        raise InputError(
            f"{path}: weights for image encoder '{encoder}' not found; for the synthetic "
            "world run `visdecode synth encoders`, otherwise download them or set the "
            "encoder's weights path in config"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def _build_synth_resnet18(weights_dir: Path) -> nn.Module:
    model = synth_backbone()
    model.load_state_dict(_load_state(weights_dir / "synth_resnet18.pt", "synth_resnet18"))
    return model.eval()


def _build_synth_resnet18_glocal(weights_dir: Path) -> nn.Module:
    backbone = _build_synth_resnet18(weights_dir)
    head = AffineHead(512)
    path = weights_dir / "synth_resnet18_glocal.pt"
    head.load_state_dict(_load_state(path, "synth_resnet18_glocal"))
    return nn.Sequential(backbone, head).eval()


REGISTRY: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        EncoderSpec(
            name="synth_resnet18",
            dim=512,
            image_size=128,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            weights="synthetic world: timm resnet18, RANDOM weights (seed 1234), not pretrained",
            weight_files=("synth_resnet18.pt",),
            build=_build_synth_resnet18,
            synthetic=True,
        ),
        EncoderSpec(
            name="synth_resnet18_glocal",
            dim=512,
            image_size=128,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            weights=(
                "synthetic world: synth_resnet18 (RANDOM weights) + gLocal-style affine "
                "transform fitted to simulated human odd-one-out judgements"
            ),
            weight_files=("synth_resnet18.pt", "synth_resnet18_glocal.pt"),
            build=_build_synth_resnet18_glocal,
            synthetic=True,
        ),
    )
}


def get(name: str) -> EncoderSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown image encoder '{name}'; known: {', '.join(sorted(REGISTRY))}"
        ) from None


def weights_checksum(spec: EncoderSpec, weights_dir: Path) -> str:
    """SHA-256 over the encoder's weight files, in order."""
    h = hashlib.sha256()
    for fname in spec.weight_files:
        with open(Path(weights_dir) / fname, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def fit_glocal(
    embeddings: np.ndarray,
    triplets: np.ndarray,
    odd: np.ndarray,
    reg: float = 1e-5,
    steps: int = 600,
    lr: float = 0.01,
    seed: int = 0,
) -> tuple[AffineHead, dict]:
    """Fit an affine transform so that dot-product similarity predicts the odd one out.

    gLocal's global objective (odd-one-out cross-entropy over the three pair similarities)
    with a penalty ||W - I||^2 that keeps the transform near the original space (gLocal keeps
    the local structure with a contrastive term; the penalty plays that role here).
    10% of triplets are held out to report the fit.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(embeddings, dtype=torch.float32)
    head = AffineHead(x.shape[1])
    head.mean.copy_(x.mean(0))
    head.scale.copy_((x - x.mean(0)).norm(dim=1).mean())
    trip = torch.as_tensor(triplets)
    target = torch.as_tensor(odd)
    perm = torch.randperm(len(trip), generator=gen)
    n_val = max(1, len(trip) // 10)
    val, tr = perm[:n_val], perm[n_val:]
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    eye = torch.eye(x.shape[1])

    def pair_logits(idx: torch.Tensor) -> torch.Tensor:
        z = head(x)
        gram = z @ z.T
        a, b, c = (trip[idx, i] for i in range(3))
        return torch.stack([gram[b, c], gram[a, c], gram[a, b]], dim=1)

    def accuracy(idx: torch.Tensor) -> float:
        with torch.no_grad():
            return (pair_logits(idx).argmax(1) == target[idx]).float().mean().item()

    before = accuracy(val)
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(pair_logits(tr), target[tr])
        loss = loss + reg * ((head.weight - eye) ** 2).sum()
        loss.backward()
        opt.step()
    after = accuracy(val)
    log.info("gLocal fit: held-out odd-one-out accuracy %.3f -> %.3f", before, after)
    return head, {"val_accuracy_before": before, "val_accuracy_after": after}
