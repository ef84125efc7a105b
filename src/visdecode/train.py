"""Stage `train`: a brain encoder trained with symmetric InfoNCE against frozen image embeddings.

Recipe (AlignVis, with the published mistakes avoided): a seeded 90/10 train/validation split of
the training images; AdamW; gradient clipping; cosine learning-rate schedule stepped once per
epoch; a learnable temperature that really is optimised (or fixed, as published); best weights
by validation loss, with early stopping. The test set is never touched here.

Regimes: "intra" (one model per subject) and "inter" (leave-one-subject-out: a fresh model
trained on the other subjects, with subject identity where the model uses it).

The whole training set is one float32 tensor on the device, normalised once; batches are
index slices.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from visdecode import brain_data, brain_encoders
from visdecode.device import describe, pick_device
from visdecode.errors import InputError
from visdecode.io import atomic_path

log = logging.getLogger(__name__)
METRIC_FIELDS = ("epoch", "train_loss", "val_loss", "val_top1", "temperature", "lr", "seconds")


@dataclass(frozen=True)
class Recipe:
    epochs: int = 50
    batch_size: int = 128
    lr: float = 2e-4
    weight_decay: float = 0.1
    temperature: float = 0.04
    learn_temperature: bool = True
    grad_clip: float = 1.0
    patience: int = 30
    val_fraction: float = 0.1


def symmetric_infonce(v: torch.Tensor, w: torch.Tensor, logit_scale: torch.Tensor):
    """CLIP loss: v brain embeddings, w image embeddings (both L2-normalised), matched rows."""
    logits = logit_scale.exp() * v @ w.T
    target = torch.arange(len(v), device=v.device)
    return (
        nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)
    ) / 2


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of training images into train and validation indices."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(2, int(round(val_fraction * n)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@dataclass
class TrainingSet:
    """Every training subject's averaged trials as one float32 tensor on the device, with
    each row's image and subject index; image embeddings centred and normalised once."""

    x: torch.Tensor  # (rows, channels, times)
    image: torch.Tensor  # (rows,) row -> image index
    subject: torch.Tensor  # (rows,) row -> subject index (0 .. n_subjects - 1)
    w: torch.Tensor  # (images, dim)
    n_subjects: int
    image_encoder: str = ""  # the embeddings' encoder name

    @classmethod
    def load(cls, brains: list[Path], embeddings: Path, device: torch.device) -> TrainingSet:
        emb = brain_data.load_embeddings(embeddings)
        w, _ = brain_data.centre_normalise(emb["train"], emb["test"])
        xs = []
        for brain in brains:
            xs.append(brain_data.load_averaged(brain, "train"))
            if len(xs[-1]) != len(w):
                raise InputError(
                    f"{brain} has {len(xs[-1])} training conditions but {embeddings} has "
                    f"{len(w)} images: they come from different data sets"
                )
        n = len(w)
        x = torch.from_numpy(np.concatenate(xs) if len(xs) > 1 else xs[0]).to(device)
        image = torch.arange(n, device=device).repeat(len(brains))
        subject = torch.arange(len(brains), device=device).repeat_interleave(n)
        w = torch.from_numpy(w).to(device)
        return cls(x, image, subject, w, len(brains), str(emb["attrs"].get("encoder")))

    def rows(self, images: np.ndarray) -> torch.Tensor:
        """Rows of these images, for every subject."""
        n = len(self.w)
        idx = torch.as_tensor(images, device=self.x.device)
        return (
            idx[None] + n * torch.arange(self.n_subjects, device=self.x.device)[:, None]
        ).ravel()


def embed_brain(model, x, subject, chunk: int = 1024, amp: bool = False) -> torch.Tensor:
    """L2-normalised model outputs for many rows, `chunk` at a time (no grad)."""
    out = []
    with torch.no_grad(), torch.autocast(x.device.type, torch.bfloat16, enabled=amp):
        for start in range(0, len(x), chunk):
            sl = slice(start, start + chunk)
            out.append(model(x[sl], None if subject is None else subject[sl]).float())
    return nn.functional.normalize(torch.cat(out), dim=1)


def train_epoch(
    model, data: TrainingSet, rows, recipe: Recipe, opt, params, logit_scale, gen, amp: bool = False
) -> float:
    """One pass over `rows` in a seeded random order, in batches that are index slices of
    the on-device tensors; returns the mean batch loss."""
    model.train()
    order = rows[torch.randperm(len(rows), generator=gen).to(rows.device)]
    total, n_batches = 0.0, 0
    for start in range(0, len(order), recipe.batch_size):
        idx = order[start : start + recipe.batch_size]
        if len(idx) < 2:
            continue
        with torch.autocast(data.x.device.type, torch.bfloat16, enabled=amp):
            v = model(data.x[idx], data.subject[idx])
        v = nn.functional.normalize(v.float(), dim=1)
        loss = symmetric_infonce(v, data.w[data.image[idx]], logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        opt.step()
        total += loss.item()
        n_batches += 1
    return total / max(n_batches, 1)


def validate(model, data: TrainingSet, val_images: np.ndarray, logit_scale, amp=False):
    """Validation loss and top-1 among the validation images, per training subject (each
    subject's rows hold every validation image once), averaged over subjects."""
    model.eval()
    losses, top1s = [], []
    wv = data.w[torch.as_tensor(val_images, device=data.x.device)]
    target = torch.arange(len(val_images), device=data.x.device)
    for s in range(data.n_subjects):
        rows = torch.as_tensor(val_images, device=data.x.device) + s * len(data.w)
        v = embed_brain(model, data.x[rows], data.subject[rows], amp=amp)
        with torch.no_grad():
            losses.append(symmetric_infonce(v, wv, logit_scale).item())
            top1s.append((v @ wv.T).argmax(1).eq(target).float().mean().item())
    return float(np.mean(losses)), float(np.mean(top1s))


def run(
    brains: Path | str | list,
    embeddings: Path | str,
    brain_encoder: str,
    seed: int,
    out_dir: Path | str,
    recipe: Recipe = Recipe(),
    threads: int = 1,
    regime: str = "intra",
    test_subject: int | None = None,
) -> dict:
    """Train one brain encoder. `brains`: one subject's preprocessed file (regime "intra"),
    or the training subjects' files (regime "inter": leave-one-subject-out, `test_subject`
    held out); a fresh model either way. The test partitions are never read here."""
    out_dir = Path(out_dir)
    brains = [Path(brains)] if isinstance(brains, (str, Path)) else [Path(b) for b in brains]
    torch.set_num_threads(threads)
    device = pick_device()
    torch.manual_seed(seed)
    data = TrainingSet.load(brains, Path(embeddings), device)
    tr, va = split_indices(len(data.w), recipe.val_fraction, seed)
    train_rows = data.rows(tr)

    model = brain_encoders.build(
        brain_encoder, data.x.shape[1], data.x.shape[2], data.w.shape[1], data.n_subjects
    ).to(device)
    logit_scale = nn.Parameter(torch.tensor(math.log(1 / recipe.temperature), device=device))
    logit_scale.requires_grad_(recipe.learn_temperature)
    params = list(model.parameters()) + ([logit_scale] if recipe.learn_temperature else [])
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.epochs)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    amp = device.type == "cuda"

    rows, best, best_state, since_best = [], math.inf, None, 0
    log.info(
        "training %s (%s) on %s: %d subject(s), %d train / %d val images, input %s, target "
        "dim %d, device %s",
        brain_encoder, regime, ", ".join(map(str, brains)), data.n_subjects, len(tr), len(va),
        tuple(data.x.shape[1:]), data.w.shape[1], describe(device),
    )  # fmt: skip
    for epoch in range(1, recipe.epochs + 1):
        t0 = time.perf_counter()
        train_loss = train_epoch(
            model, data, train_rows, recipe, opt, params, logit_scale, gen, amp
        )
        lr = opt.param_groups[0]["lr"]
        sched.step()
        val_loss, val_top1 = validate(model, data, va, logit_scale, amp)
        rows.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_top1": val_top1,
                "temperature": 1 / logit_scale.exp().item(),
                "lr": lr,
                "seconds": time.perf_counter() - t0,
            }
        )
        log.info(", ".join(f"{k} {v:.4g}" for k, v in rows[-1].items()))
        if val_loss < best:
            best, since_best = val_loss, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best_scale = logit_scale.detach().cpu().clone()
        else:
            since_best += 1
            if since_best >= recipe.patience:
                log.info("early stop at epoch %d (best val loss %.4f)", epoch, best)
                break
    model.load_state_dict(best_state)  # the best weights, restored

    out_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "brain_encoder": brain_encoder,
        "regime": regime,
        "test_subject": test_subject,
        "n_subjects": data.n_subjects,
        "n_channels": int(data.x.shape[1]),
        "n_times": int(data.x.shape[2]),
        "dim": int(data.w.shape[1]),
        "seed": seed,
        "recipe": asdict(recipe),
        "best_epoch": int(min(rows, key=lambda r: r["val_loss"])["epoch"]),
        "best_val_loss": best,
        "brains": [str(b) for b in brains],
        "embeddings": str(embeddings),
        "image_encoder": data.image_encoder,
        "device": str(device),
        "threads": threads,
    }
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save({"state_dict": best_state, "logit_scale": best_scale, "info": info}, tmp)
    with atomic_path(out_dir / "metrics.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    with atomic_path(out_dir / "config.yaml") as tmp, open(tmp, "w") as fh:
        yaml.safe_dump(info, fh, sort_keys=False)
    return info


def load_model(path: Path | str, device: torch.device | None = None) -> tuple[nn.Module, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    info = ckpt["info"]
    model = brain_encoders.build(
        info["brain_encoder"], info["n_channels"], info["n_times"], info["dim"],
        info.get("n_subjects", 1),
    )  # fmt: skip
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device or pick_device()).eval(), info
