"""Stage `embed`: one frozen image encoder over a data set's images -> one HDF5 cache file.

Output: `train` (n_train, D) and `test` (n_test, D) float32, raw (not centred or normalised;
that happens at training time, as in AlignVis), `train_files`/`test_files`, and the encoder's
identity, preprocessing and weights checksum as attributes.

`run` embeds the images; `derive` makes a gLocal encoder's cache from its backbone's cache
(the transform applied to the raw embeddings, no second pass over the images). A derived
cache keeps the backbone's attributes and adds `derived_from` (the backbone's cache),
`backbone_weights_sha256`; its `weights_sha256` is the transform file's.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from tqdm import tqdm

from visdecode import image_encoders, image_sets, weights
from visdecode.device import describe, pick_device
from visdecode.errors import InputError
from visdecode.io import atomic_path, set_attrs

log = logging.getLogger(__name__)


class ImageFiles(Dataset):
    def __init__(self, paths: list[Path], transform):
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB"))


def preprocessing(spec: image_encoders.EncoderSpec) -> transforms.Compose:
    """The encoder's own: resize the shorter side, centre crop, to tensor, normalise; or
    (spec.crop False, DreamSim) resize to a square, to tensor (the model normalises); or
    (interpolation tf_bicubic, the Keras models) TensorFlow's resize to a square, normalise."""
    if spec.interpolation == "tf_bicubic":  # a Keras model (visdecode.harmonization_models)
        from visdecode.harmonization_models import KerasPreprocess

        return KerasPreprocess(spec.image_size, spec.mean, spec.std)
    interpolation = transforms.InterpolationMode(spec.interpolation)
    if not spec.crop:
        size = (spec.image_size, spec.image_size)
        return transforms.Compose(
            [transforms.Resize(size, interpolation=interpolation), transforms.ToTensor()]
        )
    return transforms.Compose(
        [
            transforms.Resize(spec.resize or spec.image_size, interpolation=interpolation),
            transforms.CenterCrop(spec.image_size),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ]
    )


@torch.inference_mode()
def embed_paths(
    model: torch.nn.Module,
    spec: image_encoders.EncoderSpec,
    paths: list[Path],
    batch_size: int = 64,
    workers: int = 0,
    device: torch.device | None = None,
    desc: str = "embed",
    compile: bool = False,
) -> np.ndarray:
    """Batched inference; JPEG decoding in `workers` processes; channels-last (oneDNN's
    faster layout for convolutions on CPU too: 1.3x for CLIP RN50, benchmarks/embed_speed.py);
    bf16 autocast on GPU.

    compile: torch.compile the model first (8-40 s once on 2 CPU cores; see
    benchmarks/embed_speed.py for what it gains). The last batch is padded to the batch size
    so that one compiled graph serves every batch.
    """
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise InputError(f"{missing[0]}: image not found ({len(missing)} missing in all)")
    device = device or pick_device()
    cuda = device.type == "cuda"
    model = model.to(device, memory_format=torch.channels_last)
    if compile:
        model = torch.compile(model, dynamic=False)
    loader = DataLoader(
        ImageFiles(paths, preprocessing(spec)),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=cuda,
    )
    out = np.empty((len(paths), spec.dim), dtype=np.float32)
    i = 0
    for batch in tqdm(loader, desc=desc, unit="batch", mininterval=2):
        batch = batch.to(device, non_blocking=True, memory_format=torch.channels_last)
        n = len(batch)
        if compile and n < batch_size:  # one graph for all batches
            batch = torch.cat([batch, batch.new_zeros((batch_size - n,) + batch.shape[1:])])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            emb = model(batch)[:n]
        out[i : i + n] = emb.float().cpu().numpy()
        i += n
    return out


def run(
    encoder: str,
    images: Path | str,
    weights_dir: Path | str,
    out: Path | str,
    batch_size: int = 64,
    workers: int = 0,
    local_weights: Path | str | None = None,
    compile: bool = False,
) -> None:
    """Embed an image set's images (`images`: its index, visdecode.image_sets) with one
    encoder; weights from `weights_dir` (the cache, filled on first use) or the checkpoint
    `local_weights`. Rows are named by the images' stimulus identities."""
    image_set = image_sets.read(images)
    spec, model, weight_paths = image_encoders.load(encoder, weights_dir, local_weights)
    if spec.synthetic:
        log.warning(
            "image encoder %s uses RANDOM-INITIALISED weights: valid for the synthetic "
            "world only, never for real data",
            encoder,
        )
    device = pick_device()
    log.info("embedding with %s (%s) on %s", encoder, spec.weights, describe(device))
    result = {}
    for key in image_sets.PARTITIONS:
        paths = image_set[key].paths
        result[key] = embed_paths(
            model, spec, paths, batch_size, workers, device, desc=key, compile=compile
        )
        result[f"{key}_files"] = image_set[key].stimuli
        log.info("%s: %d images -> %s", key, len(paths), result[key].shape)
    _write(
        out,
        result,
        {
            **_identity(spec),
            "weights_files": [str(p) for p in weight_paths],
            "weights_sha256": weights.sha256(*weight_paths),
            "preprocessing": spec.preprocessing,
            "image_set": str(images),
            **provenance(device, compile),
        },
    )


def derive(
    encoder: str, backbone_cache: Path | str, weights_dir: Path | str, out: Path | str
) -> None:
    """A derived encoder's cache (gLocal: visdecode.derived_encoders) from its backbone's:
    the transform applied to the cached raw embeddings, no pass over the images. Equal to
    `run` with the same encoder (tests/test_embed.py)."""
    backbone_cache = Path(backbone_cache)
    spec = image_encoders.derived(encoder)
    if not backbone_cache.is_file():
        raise InputError(f"{backbone_cache}: embeddings of '{spec.backbone}' not found; embed "
                         f"them first (rule embed, `visdecode embed`)")  # fmt: skip
    with h5py.File(backbone_cache, "r") as f:
        source = str(f.attrs.get("encoder", ""))
        if source != spec.backbone:
            raise InputError(
                f"{backbone_cache}: embeddings of '{source}', but '{encoder}' transforms those "
                f"of '{spec.backbone}'; embed {spec.backbone} into that file first"
            )
        attrs = dict(f.attrs)
        result = {}
        for key in ("train", "test"):
            result[key] = f[key][:]
            result[f"{key}_files"] = list(f[f"{key}_files"].asstr()[:])
    _, head, head_paths = image_encoders.load_head(encoder, weights_dir)
    device = pick_device()
    log.info("%s = transform of %s's embeddings (%s), on %s", encoder, spec.backbone,
             backbone_cache, describe(device))  # fmt: skip
    head = head.to(device)
    with torch.inference_mode():
        for key in ("train", "test"):
            x = torch.from_numpy(result[key]).to(device)
            result[key] = head(x).float().cpu().numpy()
            log.info("%s: %d embeddings -> %s", key, len(x), result[key].shape)
    _write(
        out,
        result,
        {
            **attrs,
            **_identity(spec),
            "weights_files": [*map(str, attrs["weights_files"]), *map(str, head_paths)],
            "weights_sha256": weights.sha256(*head_paths),  # the transform's
            "backbone_weights_sha256": attrs["weights_sha256"],
            "derived_from": str(backbone_cache),
            **getattr(head, "control", {}),
            **{f"derive_{k}": v for k, v in provenance(device, False).items()},
        },
    )


def provenance(device: torch.device, compile: bool) -> dict:
    """How the embeddings were computed: device, numeric type, compilation, library versions."""
    import importlib.metadata as md
    import platform

    versions = {}
    for package in ("visdecode", "torch", "torchvision", "timm", "open_clip_torch", "numpy"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "device": describe(device),
        "dtype": "bfloat16 autocast" if device.type == "cuda" else "float32",
        "compile": bool(compile),
        "python": platform.python_version(),
        "versions": json.dumps(versions),
    }


def _identity(spec: image_encoders.EncoderSpec) -> dict:
    return {
        "encoder": spec.name,
        "family": spec.family,
        "dim": spec.dim,
        "weights": spec.weights,
        "synthetic": spec.synthetic,
    }


def _write(out: Path | str, result: dict, attrs: dict) -> None:
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        for key in ("train", "test"):
            f.create_dataset(key, data=result[key])
            f.create_dataset(f"{key}_files", data=result[f"{key}_files"])
        set_attrs(f, attrs)
