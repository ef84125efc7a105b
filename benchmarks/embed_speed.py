"""Benchmark: embedding images, ours (`embed.embed_paths`) vs the published approach.

The published scripts embed one image at a time (open, preprocess, forward under `no_grad`)
and save one .npy file per image. Ours: batches under `inference_mode`, JPEG decoding in
DataLoader worker processes. Same images (THINGS-sized 500x500 JPEGs), same model (a registry
entry, random weights in its checkpoint format: pretrained weights cannot be fetched here; the
speed is the same), same preprocessing; the embeddings are checked equal. Writes
benchmarks/results/embed_speed.md.

    python benchmarks/embed_speed.py [--encoders clip_vitb32 dino_vitb16] [--images 256]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def write_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Smooth random colour images, 500x500 JPEG (quality 90), like THINGS-EEG2's."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, size=(25, 25, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((500, 500), Image.BICUBIC)
        paths.append(folder / f"img_{i:05d}.jpg")
        img.save(paths[-1], quality=90)
    return paths


def published(model, transform, paths: list[Path], out_dir: Path) -> np.ndarray:
    """One image at a time, one .npy per image (then read back to compare)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in paths:
        with torch.no_grad():
            img = transform(Image.open(p).convert("RGB")).unsqueeze(0)
            np.save(out_dir / f"{p.stem}.npy", model(img).numpy())
    return np.concatenate([np.load(out_dir / f"{p.stem}.npy") for p in paths])


def main() -> None:
    from test_image_encoders import random_checkpoint

    from visdecode import embed, image_encoders

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", nargs="+", default=["clip_vitb32", "dino_vitb16"])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/embed_speed.md"))
    args = ap.parse_args()
    rows, cpu = [], torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = write_images(tmp, args.images)
        for name in args.encoders:
            spec = image_encoders.get(name)
            random_checkpoint(spec, tmp / spec.files[0].filename)
            _, model, _ = image_encoders.load(name, tmp)
            transform = embed.preprocessing(spec)
            published(model, transform, paths[:4], tmp / "warm")  # warm-up
            start = time.perf_counter()
            ref = published(model, transform, paths, tmp / f"npy-{name}")
            pub_rate = len(paths) / (time.perf_counter() - start)
            rows.append((name, "published: 1 image at a time, .npy per image", pub_rate, 1.0))
            print(f"{name} published: {pub_rate:.1f} images/s", flush=True)
            variants = [(w, False) for w in args.workers] + [(max(args.workers), True)]
            for workers, compiled in variants:
                run = dict(batch_size=args.batch_size, workers=workers, compile=compiled)
                start = time.perf_counter()
                embed.embed_paths(model, spec, paths[: args.batch_size], device=cpu, **run)
                warm = time.perf_counter() - start  # includes the compilation
                start = time.perf_counter()
                ours = embed.embed_paths(model, spec, paths, device=cpu, **run)
                rate = len(paths) / (time.perf_counter() - start)
                err = float(np.abs(ours - ref).max() / np.abs(ref).max())
                assert err < 1e-4, f"{name}: embeddings differ from the published loop ({err})"
                label = f"ours: batch {args.batch_size}, {workers} decoding workers" + (
                    f", torch.compile ({warm:.0f} s once)" if compiled else ""
                )
                rows.append((name, label, rate, rate / pub_rate))
                print(f"{name} {label}: {rate:.1f} images/s ({rate / pub_rate:.1f}x)", flush=True)
    lines = [
        "# Embedding speed: ours vs the published one-image-at-a-time loop",
        "",
        f"- machine: {os.cpu_count()} cores, {platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, CPU only; {args.images} JPEGs of 500x500",
        "- same model and weights, same preprocessing; embeddings equal to 1e-4 (checked)",
        "",
        "| encoder | approach | images/s | vs published |",
        "|---|---|---:|---:|",
        *[f"| {n} | {label} | {rate:.1f} | {x:.2f}x |" for n, label, rate, x in rows],
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
