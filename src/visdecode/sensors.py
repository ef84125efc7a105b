"""The sensors of a brain-data file (names, types, MNE's 12-value locations), for figures that
draw them, whatever the data set: written by a kind's preparation, read back as an MNE Info."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from visdecode.errors import InputError


def write(f: h5py.File, info) -> None:
    """The sensors of an MNE Info: `ch_types` and `ch_loc` (channels x 12, MNE's loc: position
    and orientation, metres; EEG in the head frame, MEG in the device frame), enough for
    figures to draw them on a topomap without the data set."""
    f["ch_types"] = np.array(info.get_channel_types(), dtype=h5py.string_dtype())
    f["ch_loc"] = np.array([ch["loc"] for ch in info["chs"]], dtype=np.float64)


def read(path: Path | str):
    """An MNE Info of a brain-data file's sensors (positions where stored)."""
    import mne

    with h5py.File(path, "r") as f:
        names = list(f["ch_names"].asstr()[:])
        types = list(f["ch_types"].asstr()[:]) if "ch_types" in f else ["eeg"] * len(names)
        loc = f["ch_loc"][:] if "ch_loc" in f else None
        sfreq = float(f.attrs.get("sfreq", 1.0))
    info = mne.create_info(names, sfreq, types)
    if loc is not None:
        for ch, values in zip(info["chs"], loc):
            ch["loc"][:] = values
    return info


def standard_eeg(ch_names: list[str], sfreq: float):
    """An MNE Info of the electrodes at MNE's standard 10-20 positions (colin27_1020); one
    without a position there is one line naming it."""
    import mne

    montage = mne.channels.make_standard_montage("colin27_1020")
    missing = sorted(set(ch_names) - set(montage.ch_names))
    if missing:
        named = f"{missing[:3]} and {len(missing) - 3} more" if len(missing) > 3 else missing
        raise InputError(
            f"channels {named} have no 10-20 position in MNE's colin27_1020 montage; rename "
            "them, or draw from a brain file that stores its sensors' positions (sensors=)"
        )
    info = mne.create_info(list(ch_names), sfreq, "eeg")
    info.set_montage(montage)
    return info
