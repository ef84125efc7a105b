"""The official preprocessed release (Gifford et al. 2022) as an alternative to our preprocessing.

Per subject, `preprocessed_eeg/sub-XX/preprocessed_eeg_{training,test}.npy` (pickled dicts:
`preprocessed_eeg_data` (conditions, repetitions, 17 channels, 100 times at 100 Hz, -0.2 to
0.79 s; MVNN per time point, covariance of both partitions), `ch_names`, `times`), conditions in
event-code order. They are written, unchanged but for float32, into the HDF5 layout the
preprocessing stage writes, so training and evaluation read either the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

from visdecode import brain_data, sensors
from visdecode.datasets.things_eeg2 import format as fmt
from visdecode.errors import InputError
from visdecode.io import atomic_path, set_attrs

log = logging.getLogger(__name__)


def run(data_dir: Path | str, subject: int, out: Path | str) -> None:
    data_dir = Path(data_dir)
    meta = fmt.load_image_metadata(data_dir / "images" / "image_metadata.npy")
    folder = fmt.release_dir(data_dir, subject)
    parts = {}
    for name, partition in zip(fmt.RELEASE_FILES, fmt.PARTITIONS):
        path = folder / name
        if not path.is_file():
            raise InputError(
                f"{path}: official preprocessed file not found; fetch it (rule "
                "download_preprocessed, `visdecode download preprocessed`) or set "
                "eeg_source: raw"
            )
        parts[partition] = release = fmt.load_release(path, partition)
        key = "train" if partition == "training" else "test"
        n_cond = len(meta[f"{key}_img_files"])
        if len(release["data"]) != n_cond:
            raise InputError(
                f"{path}: {len(release['data'])} conditions, but image_metadata.npy lists "
                f"{n_cond} {partition} images; the release and the image set do not match"
            )
    train, test = parts["training"], parts["test"]
    if train["ch_names"] != test["ch_names"] or not np.allclose(train["times"], test["times"]):
        raise InputError(f"{folder}: training and test files differ in channels or times")
    times = np.asarray(train["times"], dtype=np.float64)
    sfreq = float(np.round(1.0 / np.median(np.diff(times)), 6))
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        for partition, name in (("training", "train"), ("test", "test")):
            data = parts[partition]["data"]
            f.create_dataset(name, data=data.astype(np.float32, copy=False))
            f[f"{name}_codes"] = np.arange(1, len(data) + 1)
            brain_data.write_stimuli(f, name, *fmt.stimuli(meta, partition))
        f["ch_names"] = np.array(train["ch_names"], dtype=h5py.string_dtype())
        f["times"] = times
        sensors.write(f, sensors.standard_eeg(list(train["ch_names"]), sfreq))
        f.attrs["kind"], f.attrs["modality"] = fmt.KIND, fmt.MODALITY
        set_attrs(
            f,
            {
                "source": "official preprocessed release (Gifford et al. 2022)",
                "sfreq": sfreq,
                "tmin": float(times[0]),
                "mvnn": "time",
                "cov_fit": "both",
                "subject": subject,
                "raw_dir": str(data_dir),
            },
        )
    log.info(
        "wrote %s: train %s, test %s at %.0f Hz from the official release",
        out, train["data"].shape, test["data"].shape, sfreq,
    )  # fmt: skip
