"""Stage `train`: a brain encoder trained with symmetric InfoNCE against frozen image embeddings.

Recipe (AlignVis, with the published mistakes avoided): a seeded 90/10 train/validation split of
the training images; AdamW; gradient clipping; cosine learning-rate schedule stepped once per
epoch; a learnable temperature that really is optimised (or fixed, as published); best weights
by validation loss, with early stopping. The test set is never touched here.

The whole training set is one float32 tensor on the device; batches are index slices.
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
from visdecode.io import atomic_path, pick_device

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


def run(
    brain: Path | str,
    embeddings: Path | str,
    brain_encoder: str,
    seed: int,
    out_dir: Path | str,
    recipe: Recipe = Recipe(),
    threads: int = 1,
) -> dict:
    out_dir = Path(out_dir)
    torch.set_num_threads(threads)
    device = pick_device()
    torch.manual_seed(seed)
    x_all = brain_data.load_averaged(brain, "train")
    emb = brain_data.load_embeddings(embeddings)
    if len(emb["train"]) != len(x_all):
        raise ValueError(
            f"{brain} has {len(x_all)} training conditions but {embeddings} has "
            f"{len(emb['train'])} images: they come from different data sets"
        )
    w_all, _ = brain_data.centre_normalise(emb["train"], emb["test"])
    tr, va = split_indices(len(x_all), recipe.val_fraction, seed)
    x = torch.from_numpy(x_all).to(device)
    w = torch.from_numpy(w_all).to(device)
    tr_t, va_t = torch.from_numpy(tr).to(device), torch.from_numpy(va).to(device)

    model = brain_encoders.build(brain_encoder, x.shape[1], x.shape[2], w.shape[1]).to(device)
    logit_scale = nn.Parameter(torch.tensor(math.log(1 / recipe.temperature), device=device))
    logit_scale.requires_grad_(recipe.learn_temperature)
    params = list(model.parameters()) + ([logit_scale] if recipe.learn_temperature else [])
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.epochs)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    amp = device.type == "cuda"

    def evaluate_val() -> tuple[float, float]:
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
            v = nn.functional.normalize(model(x[va_t]).float(), dim=1)
            wv = w[va_t]
            loss = symmetric_infonce(v, wv, logit_scale).item()
            top1 = (v @ wv.T).argmax(1).eq(torch.arange(len(v), device=device)).float().mean()
        return loss, top1.item()

    rows, best, best_state, since_best = [], math.inf, None, 0
    log.info(
        "training %s on %s: %d train / %d val images, input %s, target dim %d, device %s",
        brain_encoder, brain, len(tr), len(va), tuple(x.shape[1:]), w.shape[1], device,
    )  # fmt: skip
    for epoch in range(1, recipe.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = tr_t[torch.randperm(len(tr_t), generator=gen).to(device)]
        total, n_batches = 0.0, 0
        for start in range(0, len(order), recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            if len(idx) < 2:
                continue
            with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                v = model(x[idx])
            v = nn.functional.normalize(v.float(), dim=1)
            loss = symmetric_infonce(v, w[idx], logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, recipe.grad_clip)
            opt.step()
            total += loss.item()
            n_batches += 1
        lr = opt.param_groups[0]["lr"]
        sched.step()
        val_loss, val_top1 = evaluate_val()
        rows.append(
            {
                "epoch": epoch,
                "train_loss": total / max(n_batches, 1),
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

    out_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "brain_encoder": brain_encoder,
        "n_channels": int(x.shape[1]),
        "n_times": int(x.shape[2]),
        "dim": int(w.shape[1]),
        "seed": seed,
        "recipe": asdict(recipe),
        "best_epoch": int(min(rows, key=lambda r: r["val_loss"])["epoch"]),
        "best_val_loss": best,
        "brain": str(brain),
        "embeddings": str(embeddings),
        "image_encoder": str(emb["attrs"].get("encoder")),
        "device": str(device),
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
        info["brain_encoder"], info["n_channels"], info["n_times"], info["dim"]
    )
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device or pick_device()).eval(), info
