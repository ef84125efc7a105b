"""Reading preprocessed brain data and image embeddings the way the decoders use them.

Brain: per repetition and channel, centre over time and divide by the L2 norm over time
(AlignVis), then average the repetitions. Images: centre with the *training* images' mean
(no test information) and L2-normalise.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from visdecode.errors import InputError

BLOCK = 512  # conditions read at a time


def normalise_repetitions(x: np.ndarray) -> np.ndarray:
    """Centre over time, divide by the L2 norm over time; x (..., times)."""
    x = x - x.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm == 0, 1.0, norm)


def load_averaged(path: Path | str, partition: str) -> np.ndarray:
    """(conditions, channels, times) float32: normalised repetitions, averaged; streamed."""
    with h5py.File(path, "r") as f:
        if partition not in f:
            raise InputError(f"{path}: no dataset '{partition}'; re-run preprocessing")
        dset = f[partition]
        out = np.empty((dset.shape[0],) + dset.shape[2:], dtype=np.float32)
        for start in range(0, dset.shape[0], BLOCK):
            block = dset[start : start + BLOCK]
            out[start : start + len(block)] = normalise_repetitions(block).mean(axis=1)
    return out


def centre_normalise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image embeddings: subtract the training mean, L2-normalise each row."""
    mean = train.mean(axis=0, keepdims=True)

    def unit(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return unit(train - mean), unit(test - mean)


def load_embeddings(path: Path | str) -> dict:
    """An embedding cache file (stage `embed`): train, test (float32) and attributes."""
    with h5py.File(path, "r") as f:
        return {"train": f["train"][:], "test": f["test"][:], "attrs": dict(f.attrs)}
