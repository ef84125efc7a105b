"""Benchmark: the image-embedding work of a configuration, published approach vs ours.

The published scripts run every encoder over every image, so a gLocal pair costs two passes of
its backbone. Ours embeds each backbone once and derives the gLocal encoder from its cache
(rule derive_embeddings: one D x D affine map per image). This counts the forward FLOPs per
image of every encoder the configuration names (torch.utils.flop_counter on the real model
definitions, built on the meta device: no weights, no memory), and the total both ways.
Writes benchmarks/results/embed_workload.md.

    python benchmarks/embed_workload.py [--config config/things-eeg2.yaml]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


def definition(spec) -> torch.nn.Module:
    """The encoder's model definition with uninitialised weights (meta device)."""
    from visdecode import dreamsim_models, image_encoders

    if spec.family == "open_clip":
        import open_clip

        return image_encoders.ImageTower(open_clip.create_model(spec.model, device="meta"))
    import timm

    if spec.family == "timm":
        return timm.create_model(spec.model, num_classes=0, img_size=spec.image_size)
    if spec.family == "dreamsim":
        kind = spec.name.removeprefix("dreamsim_").removesuffix("_base")
        models, norms = [], []
        for name in dreamsim_models.TYPES[kind].backbones:
            backbone = dreamsim_models.BACKBONES[name]
            head = backbone.dim if backbone.feature == "embedding" else 0
            models.append(timm.create_model(backbone.timm_name, num_classes=head,
                                            img_size=dreamsim_models.IMAGE_SIZE))  # fmt: skip
            norms.append(backbone.norm)
        return dreamsim_models.DreamSim(models, norms)
    raise ValueError(f"{spec.name}: family {spec.family} not counted here")


def main() -> None:
    from embed_speed import gflop_per_image

    from visdecode import image_encoders
    from visdecode.derived_encoders import BACKBONE, with_backbones

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config/things-eeg2.yaml"))
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/embed_workload.md"))
    args = ap.parse_args()
    pairs = yaml.safe_load(Path(args.config).read_text())["pairs"]
    named = sorted({p[k] for p in pairs for k in ("aligned", "unaligned")})
    cost = {}
    for name in with_backbones(named):
        if name in BACKBONE:
            continue
        spec = image_encoders.get(name)
        with torch.device("meta"):
            cost[name] = gflop_per_image(definition(spec).to("meta"), spec.image_size, "meta")
        print(f"{name}: {cost[name]:.1f} GFLOP per image", flush=True)
    rows, published, ours = [], 0.0, 0.0
    for name in with_backbones(named):
        if name in BACKBONE:  # the published code runs backbone + transform over the images
            dim = image_encoders.get(name).dim
            head = 2 * dim * dim / 1e9
            published += cost[BACKBONE[name]] + head if name in named else 0.0
            ours += head
            rows.append((name, cost[BACKBONE[name]] + head, f"derived from {BACKBONE[name]}"))
            continue
        published += cost[name] if name in named else 0.0
        ours += cost[name]
        rows.append((name, cost[name], "pass over the images"))
    lines = [
        "# Image-embedding work of a configuration: published vs ours",
        "",
        f"- configuration: `{Path(args.config).relative_to(REPO)}`, {len(pairs)} pairs, "
        f"{len(named)} encoders named",
        "- forward GFLOP per image (torch.utils.flop_counter, the real model definitions)",
        "",
        "| encoder | GFLOP per image | ours |",
        "|---|---:|---|",
        *[f"| {n} | {f:.1f} | {how} |" for n, f, how in rows],
        "",
        f"Per image, over all encoders: published {published:.0f} GFLOP (every encoder a pass "
        f"over the images), ours {ours:.0f} GFLOP: {published / ours:.2f}x less work.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
