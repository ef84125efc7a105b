"""Prepare one THINGS-MEG participant: the derivative's epochs into the common brain-data file.

As AlignVis (and ATM) split it: the epochs cropped to 0..1.0 s (201 samples at 200 Hz);
training = the `exp` trials of concepts that have no test image (1,654 concepts x 12 images on
real data, one repetition each); test = the `test` trials (200 images x 12, averaged per image
when evaluated: 200-way). No MVNN (the derivative is z-scored against the baseline); the
per-channel centring and L2 normalisation are the common loader's, as for EEG.

Event/CSV disagreements: a trial whose event value is not its CSV row's `things_image_nr` (the
real data has a few per run) is dropped, since neither label can be trusted; the count per
session and run is logged and stored (`dropped_mismatched`). More than a quarter of the rows
disagreeing means the CSV is not these epochs' (another participant's, or shifted): refused. A test image left with fewer
repetitions than the others keeps NaN in the missing ones (the loader averages the rest); a
training image whose one trial is dropped is not trained on.

The epochs are read lazily, `chunk` at a time (memory: one chunk in float64, plus the output's
write buffer), never the whole file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from visdecode import brain_data, sensors
from visdecode.datasets.things_meg import format as fmt
from visdecode.errors import InputError
from visdecode.io import atomic_path

log = logging.getLogger(__name__)
CHUNK = 128  # epochs read at once
MAX_MISMATCH = 0.25  # beyond this share of exp/test rows disagreeing, the CSV is another's


def select(table, events: np.ndarray, path: Path) -> dict:
    """Which epochs train and test, and as which stimulus: {"train": (epochs, stimuli,
    concepts), "test": (...), "dropped": DataFrame of the mismatched trials}."""
    image = table.image_path.astype(str)
    exp_ok = image.str.fullmatch(rf"{fmt.IMAGE_FOLDERS['exp']}/([^/]+)/\1_[^/]+\.jpg")
    test_ok = image.str.fullmatch(rf"{fmt.IMAGE_FOLDERS['test']}/[^/]+_[^/]+\.jpg")
    bad_path = ((table.trial_type == "exp") & ~exp_ok) | ((table.trial_type == "test") & ~test_ok)
    if bad_path.any():
        row = int(np.flatnonzero(bad_path)[0])
        raise InputError(
            f"{path}: row {row + 2} ({table.trial_type[row]} trial) names image "
            f"{table.image_path[row]!r}, not images_meg/<concept>/<concept>_<n>.jpg (exp) or "
            "images_test_meg/<concept>_<n>.jpg (test); use the file from ds004212's sourcedata/"
        )
    agree = events == fmt.expected_events(table)
    shown = (table.trial_type != "catch").to_numpy()
    if (~agree[shown]).mean() > MAX_MISMATCH:
        raise InputError(
            f"{path}: {(~agree[shown]).sum()} of its {shown.sum()} exp and test rows disagree "
            "with the epochs' event values (the real data has a few per run): this CSV does "
            "not belong to these epochs; use the participant's own from the same release"
        )
    kind = table.trial_type.to_numpy()
    concept = table.image_path.map(fmt.concept_of).to_numpy()
    test_concepts = set(concept[kind == "test"])
    chosen = {
        "train": (kind == "exp") & ~np.isin(concept, list(test_concepts)) & agree,
        "test": (kind == "test") & agree,
    }
    out = {"dropped": table.loc[~agree, ["session_nr", "run_nr", "trial_type", "image_path"]]}
    for part, mask in chosen.items():
        epochs = np.flatnonzero(mask)
        out[part] = (epochs, table.image_path.to_numpy()[epochs].astype(str), concept[epochs])
    return out


def check(epochs, table, epochs_file: Path, csv: Path) -> None:
    """The epochs are THINGS-MEG's: as many as the CSV's rows, 271 sensors, 200 Hz, 0..1 s."""
    if len(epochs) != len(table):
        raise InputError(
            f"{csv}: {len(table)} rows, but {epochs_file} holds {len(epochs)} epochs; the rows "
            "must be the epochs, in order: use the participant's CSV from the same release"
        )
    n_ch = len(epochs.ch_names)
    if n_ch != fmt.N_CHANNELS:
        raise InputError(
            f"{epochs_file}: {n_ch} sensors, THINGS-MEG's derivative has {fmt.N_CHANNELS} "
            "magnetometers; use the preprocessed derivative, not the raw recordings"
        )
    types = set(epochs.get_channel_types())
    if types != {"mag"}:
        raise InputError(
            f"{epochs_file}: sensors of type {', '.join(sorted(types))}, THINGS-MEG's derivative "
            "holds magnetometers (mag) only; use the preprocessed derivative"
        )
    if epochs.info["sfreq"] != fmt.SFREQ:
        raise InputError(
            f"{epochs_file}: sampled at {epochs.info['sfreq']:g} Hz, THINGS-MEG's derivative at "
            f"{fmt.SFREQ:g} Hz; use the preprocessed derivative"
        )


def crop(times: np.ndarray, tmin: float, tmax: float, path: Path) -> slice:
    """The samples of the closed interval [tmin, tmax]."""
    if not tmin < tmax:
        raise InputError(f"{path}: crop {tmin:g}..{tmax:g} s is empty; set tmin below tmax")
    start = int(np.argmin(np.abs(times - tmin)))
    stop = int(np.argmin(np.abs(times - tmax))) + 1
    if not (np.isclose(times[start], tmin) and np.isclose(times[stop - 1], tmax)):
        raise InputError(
            f"{path}: epochs span {times[0]:g}..{times[-1]:g} s and hold no samples at "
            f"{tmin:g} and {tmax:g} s; set tmin/tmax within them"
        )
    return slice(start, stop)


def run(
    data_dir: Path | str, participant: int, out: Path | str, tmin: float = 0.0,
    tmax: float = 1.0, chunk: int = CHUNK,
) -> dict:  # fmt: skip
    """Write `out` (the common brain-data file); returns a summary."""
    data_dir, out = Path(data_dir), Path(out)
    start_time = time.perf_counter()
    csv = fmt.attributes_path(data_dir, participant)
    first = fmt.epochs_path(data_dir, participant)
    table = fmt.read_attributes(csv)
    epochs = fmt.open_epochs(first)
    check(epochs, table, first, csv)
    window = crop(epochs.times, tmin, tmax, first)
    chosen = select(table, epochs.events[:, 2], csv)
    for (ses, run_nr), n in chosen["dropped"].groupby(["session_nr", "run_nr"]).size().items():
        log.warning("session %d run %d: %d trial(s) whose event value disagrees with the CSV "
                    "dropped", ses, run_nr, n)  # fmt: skip

    # conditions: each partition's distinct images, sorted; repetitions in recording order
    layout = {}
    for part in ("train", "test"):
        rows, stimuli, concepts = chosen[part]
        names, first_row, cond = np.unique(stimuli, return_index=True, return_inverse=True)
        order = np.argsort(cond, kind="stable")  # each condition's trials in recording order
        starts = np.searchsorted(cond[order], cond[order])
        rep = np.empty(len(rows), dtype=int)
        rep[order] = np.arange(len(rows)) - starts
        if part == "train" and rep.max(initial=0) > 0:
            raise InputError(f"{csv}: an exp image is shown more than once ({names[rep.argmax()]}); "
                             "THINGS-MEG shows each once: use the release's CSV")  # fmt: skip
        layout[part] = (rows, cond, rep, names, concepts[first_row])
    if not len(layout["train"][0]) or not len(layout["test"][0]):
        raise InputError(f"{csv}: no exp trials of non-test concepts, or no test trials")

    n_ch, n_t = len(epochs.ch_names), window.stop - window.start
    info = epochs.info
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        dsets, shapes = {}, {}
        for part, (rows, cond, rep, names, concepts) in layout.items():
            shape = shapes[part] = (len(names), rep.max() + 1, n_ch, n_t)
            # test: a repetition lost to a mismatch stays NaN (the loader averages the others)
            fill = np.nan if part == "test" else 0.0
            dsets[part] = f.create_dataset(part, shape, "<f4", fillvalue=fill)
            brain_data.write_stimuli(f, part, list(names), list(concepts))
        wanted = np.concatenate([layout[p][0] for p in layout])
        where = {  # epoch -> (partition, condition, repetition)
            int(e): (p, int(c), int(r)) for p in layout for e, c, r in zip(*layout[p][:3])
        }
        wanted.sort()
        for a in tqdm(range(0, len(wanted), chunk), desc=f"P{participant} epochs", unit="chunk"):
            idx = wanted[a : a + chunk]
            try:
                data = epochs.get_data(item=idx, copy=False, verbose="error")[:, :, window]
            except (RuntimeError, ValueError, OSError) as err:
                raise InputError(
                    f"{first}: epochs {idx[0]}..{idx[-1]} cannot be read ({err}); fetch the "
                    "participant's files again"
                ) from None
            for e, x in zip(idx.tolist(), data):
                part, c, r = where[e]
                dsets[part][c, r] = x.astype(np.float32)
        f["ch_names"] = np.array(epochs.ch_names, dtype=h5py.string_dtype())
        f["times"] = epochs.times[window].astype(np.float64)
        sensors.write(f, info)
        f.attrs.update(
            kind=fmt.KIND, modality=fmt.MODALITY, subject=participant, sfreq=info["sfreq"],
            tmin=tmin, tmax=tmax, source=str(first), dropped_mismatched=len(chosen["dropped"]),
        )  # fmt: skip
    summary = {
        "train": shapes["train"], "test": shapes["test"],
        "dropped_mismatched": len(chosen["dropped"]), "seconds": time.perf_counter() - start_time,
    }  # fmt: skip
    log.info("P%d: train %s, test %s, %d mismatched trials dropped -> %s (%.1f s)", participant,
             summary["train"], summary["test"], summary["dropped_mismatched"], out,
             summary["seconds"])  # fmt: skip
    return summary
