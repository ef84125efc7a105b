"""The brain-data file every decoder reads, and the image embeddings it is joined to.

A preprocessed file holds, per partition (`train`, `test`), the epochs (conditions,
repetitions, channels, times) and, per condition, its stimulus: `<partition>_stimuli` (the
image's path under the data set's image folder, the name its embedding file gives the same
image) and `<partition>_concepts`. Brain rows and image embeddings are joined by that identity,
never by position, so a reordered or foreign embedding file is refused, not silently mispaired.

Brain: per repetition and channel, centre over time and divide by the L2 norm over time
(AlignVis), then average the repetitions. Images: centre with the mean of the *training*
images trained on (no test information; the vector is stored with the model) and L2-normalise.
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
            # a repetition a data set could not keep is entirely NaN (THINGS-MEG): averaged
            # without it; any other non-finite value stays, and stops training or evaluation
            lost = np.isnan(block).all(axis=(2, 3))
            if not lost.any():
                out[start : start + len(block)] = normalise_repetitions(block).mean(axis=1)
                continue
            kept = (~lost).sum(axis=1)
            if (kept == 0).any():
                raise InputError(
                    f"{path}: {partition} condition {start + int(np.argmin(kept))} has no "
                    "repetition (all NaN); prepare the data again"
                )
            x = normalise_repetitions(np.where(lost[..., None, None], 0, block))
            x[lost] = 0
            out[start : start + len(block)] = x.sum(axis=1) / kept[:, None, None]
    return out


def modality(path: Path | str) -> str | None:
    """The brain file's modality (eeg, meg, fmri), as its kind's preparation recorded it."""
    with h5py.File(path, "r") as f:
        value = f.attrs.get("modality")
    return None if value is None else str(value)


def write_stimuli(
    f: h5py.File, partition: str, stimuli: list[str], concepts: list[str], rows=None
) -> None:
    """Store each condition's stimulus identity and concept (`rows`: which of the lists'
    entries the partition's conditions are, in order; default all)."""
    rows = np.arange(len(stimuli)) if rows is None else np.asarray(rows)
    text = h5py.string_dtype()
    f.create_dataset(f"{partition}_stimuli", data=np.array(stimuli, dtype=object)[rows], dtype=text)
    f.create_dataset(f"{partition}_concepts", data=np.array(concepts, dtype=object)[rows], dtype=text)


def read_stimuli(path: Path | str, partition: str) -> tuple[np.ndarray, np.ndarray]:
    """(stimuli, concepts) of a preprocessed file's partition, as arrays of str."""
    with h5py.File(path, "r") as f:
        if f"{partition}_stimuli" not in f:
            raise InputError(
                f"{path}: no '{partition}_stimuli' (the images its conditions show); the file "
                "predates stimulus identities: preprocess it again"
            )
        stimuli = f[f"{partition}_stimuli"].asstr()[:]
        concepts = f[f"{partition}_concepts"].asstr()[:]
        n = f[partition].shape[0]
    if len(stimuli) != n or len(concepts) != n:
        raise InputError(
            f"{path}: {n} {partition} conditions but {len(stimuli)} stimuli; preprocess it again"
        )
    names, counts = np.unique(stimuli, return_counts=True)
    if (counts > 1).any():
        raise InputError(
            f"{path}: {partition} condition {names[counts > 1][0]} is listed "
            f"{counts.max()} times (each image is one condition); preprocess it again"
        )
    return np.asarray(stimuli, dtype=str), np.asarray(concepts, dtype=str)


def match(stimuli: np.ndarray, files: np.ndarray, brain: Path | str, embeddings: Path | str):
    """Row of `files` (an embedding file's image names) for each of `stimuli` (a brain file's);
    one line naming both files where an image has no embedding."""
    order = np.argsort(files, kind="stable")
    pos = np.searchsorted(files[order], stimuli).clip(0, max(len(files) - 1, 0))
    found = files[order][pos] == stimuli if len(files) else np.zeros(len(stimuli), bool)
    if not found.all():
        missing = stimuli[~found]
        raise InputError(
            f"{brain}: {len(missing)} of its {len(stimuli)} stimuli have no embedding in "
            f"{embeddings} (first: {missing[0]}); they come from different image sets: embed "
            "this data set's images"
        )
    return order[pos]


def centre(train: np.ndarray) -> np.ndarray:
    """The centring vector: the mean embedding of the training partition's images used
    (those trained on and those held out for validation; never the test images), float32."""
    return train.mean(axis=0).astype(np.float32)


def unit(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Subtract `mean`, L2-normalise each row (float32)."""
    x = x - mean
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def load_embeddings(path: Path | str) -> dict:
    """An embedding cache file (stage `embed`): train, test (float32), their image names
    (train_files, test_files) and attributes."""
    with h5py.File(path, "r") as f:
        out = {k: f[k][:] for k in ("train", "test")}
        for k in ("train_files", "test_files"):
            out[k] = np.asarray(f[k].asstr()[:], dtype=str)
        out["attrs"] = dict(f.attrs)
    return out
