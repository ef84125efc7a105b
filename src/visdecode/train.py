"""Stage `train`: a brain encoder trained with symmetric InfoNCE against frozen image embeddings.

Recipe (AlignVis, with the published mistakes avoided): a seeded split of the training images
into train and validation, by default by concept (whole concepts held out, as the test set
holds out concepts: zero-shot) or, as published, by image; AdamW with no weight decay on the
temperature, biases and norm weights (as CLIP); gradient clipping; cosine learning-rate
schedule stepped once per epoch; a learnable temperature that really is optimised, its logit
scale clamped to CLIP's 100 (or fixed, as published). Model selection (SELECTIONS): the weights
of the epoch with the highest validation top-1, ties broken by the lower validation loss, or,
as published, with the lowest validation loss (symmetric InfoNCE), are restored. Both are
scored per training subject on retrieval problems like the test's (validation_groups): by
concept, each problem holds one image of every validation concept, so validation asks to tell
held-out concepts apart, never a concept's own images; by image, one problem holds them all.
Ties count as in the test. Early stopping after `patience` epochs without a better one;
benchmarks/results/selection.md compares the two criteria. In regime inter validation scores
the training subjects, not the held-out one. The test set is never touched here.

Regimes: "intra" (one model per subject) and "inter" (leave-one-subject-out: a fresh model
trained on the other subjects, with subject identity where the model uses it). With several
training subjects an image occurs once per subject, so one batch can hold it more than once:
rows that show the same image are positives for one another, never negatives (the loss scores
each row against the batch's distinct images).

Brain rows and image embeddings are joined by stimulus identity (brain_data.match). The
centring vector of the image embeddings is stored with the model and used at evaluation.
A non-finite loss stops the run (TrainingError) before anything is written.

The whole training set is one float32 tensor on the device, normalised once; batches are
index slices. `permute=True` is the permutation control: the brain/image pairing shuffled
(one seeded permutation of the training images' embeddings, the same for every subject).
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
from visdecode.errors import InputError, TrainingError
from visdecode.io import atomic_path

log = logging.getLogger(__name__)
METRIC_FIELDS = ("epoch", "train_loss", "val_loss", "val_top1", "temperature", "lr", "seconds")
MAX_LOGIT_SCALE = 100.0  # CLIP's clamp of the learnable logit scale: temperature >= 0.01
VAL_SPLITS = ("concept", "image")
SELECTIONS = {
    "loss": "lowest validation loss (symmetric InfoNCE per validation problem and training "
    "subject, averaged)",
    "top1": "highest validation top-1 (retrieval per validation problem and training subject, "
    "averaged), ties broken by the lower validation loss",
}


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

    def __post_init__(self):
        if not 1 / MAX_LOGIT_SCALE <= self.temperature <= 1:
            raise InputError(
                f"recipe temperature {self.temperature}: use 0.01 to 1 (the logit scale is "
                f"clamped to CLIP's {MAX_LOGIT_SCALE:g})"
            )


def symmetric_infonce(
    v: torch.Tensor, w: torch.Tensor, logit_scale: torch.Tensor, image: torch.Tensor | None = None
) -> torch.Tensor:
    """CLIP loss: v brain embeddings, w image embeddings (both L2-normalised), matched rows.

    image (rows,): each row's image. Rows that show the same image are positives for one
    another: brain -> image scores each row against the batch's distinct images (one column
    each); image -> brain scores each distinct image against every row, its own rows' softmax
    mass summed. Without repeated images this is CLIP's loss exactly (the same code path).
    """
    n = len(v)
    target = torch.arange(n, device=v.device)
    if image is not None:
        distinct, col = torch.unique(image, return_inverse=True)
        if len(distinct) < n:
            first = torch.full((len(distinct),), n, device=v.device).scatter_reduce(
                0, col, target, reduce="amin"
            )  # one row of each distinct image
            logits = logit_scale.exp() * v @ w[first].T  # (rows, distinct images)
            to_image = nn.functional.cross_entropy(logits, col)
            by_image = logits.T
            own = col[None, :] == torch.arange(len(distinct), device=v.device)[:, None]
            to_brain = (
                torch.logsumexp(by_image, 1) - torch.logsumexp(by_image.masked_fill(~own, -math.inf), 1)
            ).mean()
            return (to_image + to_brain) / 2
    logits = logit_scale.exp() * v @ w.T
    return (
        nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)
    ) / 2


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of training images into train and validation indices (by image); at
    least 2 of each."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(2, int(round(val_fraction * n)))
    if n - n_val < 2:
        raise InputError(
            f"{n} training images leave {n - n_val} to train on after {n_val} for validation "
            f"(val_fraction {val_fraction}); lower train.recipes.<encoder>.val_fraction"
        )
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def split_images(
    concepts: np.ndarray, val_fraction: float, seed: int, by: str = "concept"
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split of the training images. by "image": random images (the
    published split; a validation image's concept is also trained on); by "concept": whole
    concepts, a `val_fraction` share of them (at least 2 concepts), so that validation, like
    the test, asks for concepts never trained on."""
    n = len(concepts)
    if by == "image":
        return split_indices(n, val_fraction, seed)
    if by != "concept":
        raise InputError(f"validation split '{by}': use one of {', '.join(VAL_SPLITS)}")
    names, which = np.unique(concepts, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(names))
    n_val = min(max(2, int(round(val_fraction * len(names)))), len(names) - 1)
    held = np.isin(which, order[:n_val])
    if n_val < 2 or (~held).sum() < 2:
        raise InputError(
            f"validation by concept needs 2 or more validation concepts and 2 or more training images "
            f"({len(names)} concepts, {n} images, val_fraction {val_fraction}); set "
            "train.val_split: image or change val_fraction"
        )
    return np.flatnonzero(~held), np.flatnonzero(held)


@dataclass
class TrainingSet:
    """Every training subject's averaged trials as one float32 tensor on the device, with
    each row's image and subject index; image embeddings centred and normalised once."""

    x: torch.Tensor  # (rows, channels, times)
    image: torch.Tensor  # (rows,) row -> image index (into w)
    subject: torch.Tensor  # (rows,) row -> subject index (0 .. n_subjects - 1)
    w: torch.Tensor  # (images, dim), centred and normalised
    n_subjects: int
    concepts: np.ndarray | None = None  # (images,) each image's concept
    centre: np.ndarray | None = None  # (dim,) the raw embeddings' training mean
    image_encoder: str = ""  # the embeddings' encoder name
    weights_sha256: str = ""  # the embeddings' weight checksum

    @classmethod
    def load(
        cls, brains: list[Path], embeddings: Path, device: torch.device, permute_seed=None
    ) -> TrainingSet:
        """permute_seed: not None for the permutation control (the pairing shuffled)."""
        emb = brain_data.load_embeddings(embeddings)
        xs, rows, concept_of = [], [], {}
        for brain in brains:
            stimuli, concepts = brain_data.read_stimuli(brain, "train")
            rows.append(brain_data.match(stimuli, emb["train_files"], brain, embeddings))
            concept_of.update(zip(rows[-1].tolist(), concepts))
            xs.append(brain_data.load_averaged(brain, "train"))
        # the embedding rows trained on, in the order the brain files first list them (so the
        # embedding file's own row order changes nothing)
        every = np.concatenate(rows)
        used, first = np.unique(every, return_index=True)
        used = used[np.argsort(first)]
        centre = brain_data.centre(emb["train"][used])
        w = brain_data.unit(emb["train"][used], centre)
        if permute_seed is not None:
            w = w[np.random.default_rng([permute_seed, 1]).permutation(len(w))]
        position = np.empty(len(emb["train"]), dtype=np.int64)
        position[used] = np.arange(len(used))
        image = position[every]
        subject = np.repeat(np.arange(len(brains)), [len(r) for r in rows])
        x = torch.from_numpy(np.concatenate(xs) if len(xs) > 1 else xs[0]).to(device)
        return cls(
            x,
            torch.from_numpy(image).to(device),
            torch.from_numpy(subject).to(device),
            torch.from_numpy(w).to(device),
            len(brains),
            np.array([concept_of[r] for r in used.tolist()]),
            centre,
            str(emb["attrs"].get("encoder")),
            str(emb["attrs"].get("weights_sha256", "")),
        )

    def rows(self, images: np.ndarray, subject: int | None = None) -> torch.Tensor:
        """Rows of these images (of every subject, or of one), in row order."""
        keep = torch.isin(self.image, torch.as_tensor(images, device=self.x.device))
        if subject is not None:
            keep &= self.subject == subject
        return torch.nonzero(keep).ravel()


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
    the on-device tensors; returns the mean batch loss, or NaN at once (before any update)
    when a batch's loss is not finite."""
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
        image = data.image[idx]
        loss = symmetric_infonce(v, data.w[image], logit_scale, image)
        value = loss.item()
        if not math.isfinite(value):
            return math.nan
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        opt.step()
        if logit_scale.requires_grad:
            with torch.no_grad():
                logit_scale.clamp_(0, math.log(MAX_LOGIT_SCALE))
        total += value
        n_batches += 1
    return total / max(n_batches, 1)


def validation_groups(val_images: np.ndarray, concepts: np.ndarray, by: str) -> list[np.ndarray]:
    """The validation images as the retrieval problems validation scores. By image: one
    problem over them all (published). By concept: like the test, whose gallery holds one image
    per concept: group g holds the g-th image of every validation concept (each concept's images
    in index order), so each problem asks to tell concepts apart, never a concept's own images;
    an image alone in its problem is not scored."""
    if by == "image":
        return [np.asarray(val_images)]
    val_images = np.asarray(val_images)
    _, which = np.unique(concepts[val_images], return_inverse=True)
    rank = np.empty(len(val_images), dtype=int)  # each image's place within its concept
    for c in np.unique(which):
        rank[which == c] = np.arange((which == c).sum())
    return [val_images[rank == g] for g in range(rank.max() + 1) if (rank == g).sum() >= 2]


def top1(sim: torch.Tensor) -> float:
    """Top-1 of sim (queries, gallery), query i matching item i, ties counted as the test
    counts them (evaluate.topk_accuracy: expectation under random tie-breaking)."""
    true = sim.diagonal()[:, None]
    others = ~torch.eye(len(sim), dtype=torch.bool, device=sim.device)
    greater = ((sim > true) & others).sum(1)
    equal = ((sim == true) & others).sum(1)
    return float(((greater == 0) / (equal + 1.0)).mean())


def validate(model, data: TrainingSet, groups: list[np.ndarray], logit_scale, amp=False):
    """Validation loss and top-1 per retrieval problem (validation_groups) and training subject
    (a subject's rows show each of its images once), averaged over both, weighted by size. Each
    training subject is scored as itself: in regime inter this measures generalisation to new
    concepts, not to the held-out subject, whom validation never sees."""
    model.eval()
    every = np.concatenate(groups)
    losses, top1s, sizes = [], [], []
    for s in range(data.n_subjects):
        rows = data.rows(every, s)
        if len(rows) < 2:
            continue
        v_all = embed_brain(model, data.x[rows], data.subject[rows], amp=amp)
        for group in groups:
            keep = torch.isin(data.image[rows], torch.as_tensor(group, device=rows.device))
            if keep.sum() < 2:
                continue
            v, wv = v_all[keep], data.w[data.image[rows[keep]]]
            with torch.no_grad():
                losses.append(symmetric_infonce(v, wv, logit_scale).item())
                top1s.append(top1(v @ wv.T))
            sizes.append(len(v))
    if not losses:
        raise InputError("no training subject has 2 or more of the validation images")
    return float(np.average(losses, weights=sizes)), float(np.average(top1s, weights=sizes))


def optimiser(model: nn.Module, logit_scale: nn.Parameter, recipe: Recipe):
    """AdamW; weight decay on weight matrices and kernels only, not on the temperature, biases
    or norm weights (CLIP's rule: parameters of fewer than 2 dimensions)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    no_decay += [logit_scale] if recipe.learn_temperature else []
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return opt, decay + no_decay


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
    val_split: str = "concept",
    permute: bool = False,
    selection: str = "top1",
) -> dict:
    """Train one brain encoder. `brains`: one subject's preprocessed file (regime "intra"),
    or the training subjects' files (regime "inter": leave-one-subject-out, `test_subject`
    held out); a fresh model either way. The test partitions are never read here.
    val_split: "concept" or "image" (split_images). permute: the permutation control.
    selection: the epoch whose weights are kept, "loss" or "top1" (SELECTIONS); early stopping
    ends training after `patience` epochs without a better one."""
    if selection not in SELECTIONS:
        raise InputError(f"selection '{selection}': use one of {', '.join(SELECTIONS)}")
    out_dir = Path(out_dir)
    brains = [Path(brains)] if isinstance(brains, (str, Path)) else [Path(b) for b in brains]
    torch.set_num_threads(threads)
    device = pick_device()
    torch.manual_seed(seed)
    data = TrainingSet.load(brains, Path(embeddings), device, seed if permute else None)
    tr, va = split_images(data.concepts, recipe.val_fraction, seed, val_split)
    train_rows = data.rows(tr)
    groups = validation_groups(va, data.concepts, val_split)
    ways = sorted({len(g) for g in groups})
    if not groups or ways[0] < 10:
        log.warning(
            "validation problems of %s ways (chance %s): validation top-1 is a noisy guide; "
            "more validation concepts (val_fraction) steady it",
            ways, [round(1 / w, 3) for w in ways],
        )  # fmt: skip

    model = brain_encoders.build(
        brain_encoder, data.x.shape[1], data.x.shape[2], data.w.shape[1], data.n_subjects
    ).to(device)
    logit_scale = nn.Parameter(torch.tensor(math.log(1 / recipe.temperature), device=device))
    logit_scale.requires_grad_(recipe.learn_temperature)
    opt, params = optimiser(model, logit_scale, recipe)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe.epochs)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    amp = device.type == "cuda"

    rows, best, best_state, since_best = [], (math.inf,), None, 0
    log.info(
        "training %s (%s%s) on %s: %d subject(s), %d train / %d val images (split by %s), "
        "input %s, target dim %d, device %s",
        brain_encoder, regime, ", PAIRING PERMUTED (control)" if permute else "",
        ", ".join(map(str, brains)), data.n_subjects, len(tr), len(va), val_split,
        tuple(data.x.shape[1:]), data.w.shape[1], describe(device),
    )  # fmt: skip
    for epoch in range(1, recipe.epochs + 1):
        t0 = time.perf_counter()
        train_loss = train_epoch(
            model, data, train_rows, recipe, opt, params, logit_scale, gen, amp
        )
        lr = opt.param_groups[0]["lr"]
        if not math.isfinite(train_loss):
            raise _diverged(out_dir, "training", epoch, brain_encoder, recipe)
        sched.step()
        val_loss, val_top1 = validate(model, data, groups, logit_scale, amp)
        if not math.isfinite(val_loss):
            raise _diverged(out_dir, "validation", epoch, brain_encoder, recipe)
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
        score = (val_loss,) if selection == "loss" else (-val_top1, val_loss)
        if score < best:
            best, since_best, best_epoch = score, 0, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best_scale = logit_scale.detach().cpu().clone()
        else:
            since_best += 1
            if since_best >= recipe.patience:
                log.info("early stop at epoch %d (best: epoch %d)", epoch, best_epoch)
                break
    model.load_state_dict(best_state)  # the best weights, restored

    out_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "brain_encoder": brain_encoder,
        "regime": regime,
        "test_subject": test_subject,
        "permuted": permute,
        "n_subjects": data.n_subjects,
        "n_channels": int(data.x.shape[1]),
        "n_times": int(data.x.shape[2]),
        "dim": int(data.w.shape[1]),
        "seed": seed,
        "recipe": asdict(recipe),
        "val_split": val_split,
        "n_train_images": len(tr),
        "n_val_images": len(va),
        "val_ways": [len(g) for g in groups],  # the validation problems' sizes (n-way)
        "selection": SELECTIONS[selection],
        "best_epoch": best_epoch,
        "best_val_loss": rows[best_epoch - 1]["val_loss"],
        "best_val_top1": rows[best_epoch - 1]["val_top1"],
        "brains": [str(b) for b in brains],
        "embeddings": str(embeddings),
        "image_encoder": data.image_encoder,
        "image_weights_sha256": data.weights_sha256,
        "device": str(device),
        "precision": "bfloat16 autocast" if amp else "float32",
        "threads": threads,
    }
    ckpt = {
        "state_dict": best_state,
        "logit_scale": best_scale,
        "image_centre": torch.from_numpy(data.centre),
        "info": info,
    }
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save(ckpt, tmp)
    with atomic_path(out_dir / "metrics.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    with atomic_path(out_dir / "config.yaml") as tmp, open(tmp, "w") as fh:
        yaml.safe_dump(info, fh, sort_keys=False)
    return info


def _diverged(out_dir: Path, which: str, epoch: int, name: str, recipe: Recipe) -> TrainingError:
    return TrainingError(
        f"{out_dir}: {which} loss is not finite at epoch {epoch}; no model written. The input "
        f"holds NaN/inf, or the learning rate {recipe.lr:g} is too high for {name}: check the "
        f"preprocessed data, or lower train.recipes.{name}.lr"
    )


def load_model(path: Path | str, device: torch.device | None = None) -> tuple[nn.Module, dict]:
    """A trained run's model (eval mode) and its info, with `image_centre` (the centring
    vector of the image embeddings it was trained with) added."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    info = ckpt["info"]
    if "image_centre" not in ckpt:
        raise InputError(f"{path}: trained before the image centring was stored; train it again")
    model = brain_encoders.build(
        info["brain_encoder"], info["n_channels"], info["n_times"], info["dim"],
        info.get("n_subjects", 1),
    )  # fmt: skip
    model.load_state_dict(ckpt["state_dict"])
    info = {**info, "image_centre": ckpt["image_centre"].numpy()}
    return model.to(device or pick_device()).eval(), info
