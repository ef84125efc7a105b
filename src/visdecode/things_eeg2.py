"""THINGS-EEG2 on-disk format: layout, channel names, event codes and checked loading.

Shared by the synthetic world (which writes this format) and the preprocessing (which reads
it), so real and synthetic data go through the same code. Facts: Gifford et al. 2022.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visdecode.errors import InputError

# The 63 EEG channels of THINGS-EEG2 in recording order (10-10 system), then the stim row.
CH_NAMES = [
    "Fp1", "Fp2", "AF7", "AF3", "AFz", "AF4", "AF8", "F7", "F5", "F3", "F1", "F2", "F4",
    "F6", "F8", "FT9", "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8", "FT10",
    "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "T8", "TP9", "TP7", "CP5", "CP3", "CP1",
    "CPz", "CP2", "CP4", "CP6", "TP8", "TP10", "P7", "P5", "P3", "P1", "Pz", "P2", "P4", "P6",
    "P8", "PO7", "PO3", "POz", "PO4", "PO8", "O1", "Oz", "O2",
]  # fmt: skip
STIM_NAME = "stim"
SFREQ = 1000.0
TARGET_CODE = 99999
PARTITIONS = ("training", "test")
RAW_KEYS = ("raw_eeg_data", "ch_names", "ch_types", "sfreq")
METADATA_KEYS = ("train_img_concepts", "train_img_files", "test_img_concepts", "test_img_files")


def occipito_parietal(ch_names: list[str]) -> list[str]:
    """The 17 channels Gifford et al. keep: names starting with O or P."""
    return [c for c in ch_names if c.startswith(("O", "P"))]


def raw_path(raw_dir: Path | str, subject: int, session: int, partition: str) -> Path:
    """`raw_eeg/sub-XX/ses-YY/raw_eeg_{partition}.npy` under the data set root."""
    return (
        Path(raw_dir)
        / "raw_eeg"
        / f"sub-{subject:02d}"
        / f"ses-{session:02d}"
        / f"raw_eeg_{partition}.npy"
    )


def load_raw(path: Path | str) -> dict:
    """Load one raw session file (a pickled dict) and check it; InputError if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: raw session file not found; download the raw EEG (visdecode download) "
            "or generate the synthetic world (visdecode synth)"
        )
    try:
        obj = np.load(path, allow_pickle=True)
        raw = obj.item() if isinstance(obj, np.ndarray) and obj.dtype == object else obj
    except Exception as err:  # truncated or not a pickle
        raise InputError(
            f"{path}: cannot be read ({type(err).__name__}: {err}); "
            "the file is truncated or corrupt, download it again"
        ) from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a pickled dict, found {type(raw).__name__}")
    missing = [k for k in RAW_KEYS if k not in raw]
    if missing:
        raise InputError(
            f"{path}: dict lacks key(s) {', '.join(missing)}; expected {', '.join(RAW_KEYS)}"
        )
    data = np.asarray(raw["raw_eeg_data"])
    names = list(raw["ch_names"])
    if data.ndim != 2 or data.shape[0] != len(names):
        raise InputError(
            f"{path}: raw_eeg_data has shape {data.shape}, expected "
            f"({len(names)}, n_samples) to match ch_names"
        )
    if STIM_NAME not in names:
        raise InputError(f"{path}: no '{STIM_NAME}' channel in ch_names")
    raw["raw_eeg_data"] = data
    raw["ch_names"] = names
    return raw


def load_image_metadata(path: Path | str) -> dict:
    """Load `images/image_metadata.npy` (pickled dict with the four published keys)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image metadata not found; fetch or synthesise the images")
    meta = np.load(path, allow_pickle=True).item()
    missing = [k for k in METADATA_KEYS if k not in meta]
    if missing:
        raise InputError(f"{path}: metadata lacks key(s) {', '.join(missing)}")
    return meta


def image_paths(images_dir: Path | str, meta: dict, partition: str) -> list[Path]:
    """Image files in event-code order: `<concept folder>/<file>` under the partition folder."""
    key = "train" if partition == "training" else "test"
    folder = Path(images_dir) / f"{partition}_images"
    return [
        folder / concept / name
        for concept, name in zip(meta[f"{key}_img_concepts"], meta[f"{key}_img_files"])
    ]
