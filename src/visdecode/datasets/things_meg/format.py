"""THINGS-MEG's on-disk format (OpenNeuro ds004212, the preprocessed derivative).

    <root>/derivatives/preprocessed/preprocessed_P{n}-epo.fif   one MNE Epochs per participant,
        (+ -epo-1.fif, -epo-2.fif, ...)                          in parts MNE follows
    <root>/sourcedata/sample_attributes_P{n}.csv                 one row per epoch, same order
    <images>/images_meg/<concept>/<concept>_<NN><letter>.jpg     exp images (THINGS; the user's)
    <images>/images_test_meg/<concept>_<NN><letter>.jpg          test images
    <images>/images_catch_meg/catchNNN.jpg                       catch images (not decoded)

Epochs: 271 magnetometers (CTF axial gradiometers, MNE type `mag`; the broken MRO11 dropped),
200 Hz, -0.1..1.3 s (281 samples), filtered 0.1-40 Hz, z-scored against the pre-stimulus
period (values are z-scores, not tesla). Event value = `things_image_nr` (1-based row of THINGS'
26,107 images), 999999 for catch trials. 27,048 epochs per participant: 12 sessions x (1,854
exp, 200 test, 200 catch); every exp image once, every test image once a session.

The channel names are MNE's CTF-275 layout minus the 3 sensors the system lacks and MRO11,
with the system's `-1609` suffix; positions and orientations come from MNE's canonical CTF-275
sensor table (MLO42, missing from it, mirrored from MRO42). Unconfirmed against a real file's
`info['ch_names']`: the loader reads the names from the file, never from here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from visdecode.errors import InputError

KIND = "things-meg"
MODALITY = "meg"
SFREQ = 200.0
TMIN, TMAX = -0.1, 1.3
N_TIMES = 281
N_CHANNELS = 271
CATCH = 999999
SUFFIX = "-1609"
ABSENT = ("MLF25", "MRF43", "MRO13")  # not in this CTF system
BROKEN = ("MRO11",)  # dropped in the published preprocessing
COLUMNS = (
    "trial_type", "image_nr", "category_nr", "exemplar_nr", "test_image_nr",
    "things_category_nr", "things_image_nr", "things_exemplar_nr", "image_path", "onset",
    "image_on", "image_off", "responded", "key_id", "key_time", "RT", "session_nr", "run_nr",
)  # fmt: skip
TRIAL_TYPES = ("exp", "test", "catch")
IMAGE_FOLDERS = {"exp": "images_meg", "test": "images_test_meg", "catch": "images_catch_meg"}


def epochs_path(root: Path | str, participant: int) -> Path:
    return Path(root) / "derivatives" / "preprocessed" / f"preprocessed_P{participant}-epo.fif"


def attributes_path(root: Path | str, participant: int) -> Path:
    return Path(root) / "sourcedata" / f"sample_attributes_P{participant}.csv"


def part_name(first: Path | str, index: int) -> str:
    """MNE's name of part `index` (0: the first) of a split epochs file ('neuromag' naming)."""
    first = Path(first)
    return first.name if index == 0 else first.name.replace("-epo.fif", f"-epo-{index}.fif")


def channel_names() -> list[str]:
    """The 271 sensor names, in MNE's CTF-275 layout order."""
    import mne

    names = [n.split("-")[0] for n in mne.channels.read_layout("CTF-275").names]
    return [n + SUFFIX for n in names if n not in ABSENT + BROKEN]


def make_info(ch_names: list[str] | None = None, sfreq: float = SFREQ):
    """An MNE Info of the magnetometers with positions and orientations (device frame, the
    head frame taken as the device's)."""
    import mne

    ch_names = channel_names() if ch_names is None else ch_names
    canon = mne.channels.read_meg_canonical_info("ctf275", verbose="error")
    table = {ch["ch_name"].split("-")[0]: ch for ch in canon["chs"]}
    info = mne.create_info(ch_names, sfreq, "mag")
    for ch in info["chs"]:
        base = ch["ch_name"].split("-")[0]
        if base in table:
            src, loc = table[base], table[base]["loc"].copy()
        else:  # not in MNE's table: the mirror image of its right/left twin
            src = table[base[0] + {"L": "R", "R": "L"}[base[1]] + base[2:]]
            loc = src["loc"].copy().reshape(4, 3)
            loc[:, 0] *= -1
            loc = loc.ravel()
        ch["loc"][:] = loc
        ch["coil_type"], ch["coord_frame"] = src["coil_type"], src["coord_frame"]
    with info._unlock():
        info["dev_head_t"] = canon["dev_head_t"]
    return info


def concept_of(image_path: str) -> str:
    """The concept of an exp or test image: its file name up to the last '_'
    (`images_test_meg/aircraft_carrier_13s.jpg` -> aircraft_carrier)."""
    return Path(image_path).name.rsplit("_", 1)[0]


def read_attributes(path: Path | str) -> pd.DataFrame:
    """sample_attributes_P{n}.csv, checked: its 18 columns, known trial types, an image path
    for every exp and test trial."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: sample attributes not found; fetch sourcedata/ of ds004212 (download) or "
            "put the file there"
        )
    table = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)} of the 18 THINGS-MEG sample "
            "attributes; use the file from ds004212's sourcedata/"
        )
    unknown = sorted(set(table.trial_type.astype(str)) - set(TRIAL_TYPES))
    if unknown:
        raise InputError(f"{path}: unknown trial_type {unknown[0]!r}; expected exp, test or catch")
    shown = table.trial_type.isin(["exp", "test"])
    if (
        table.loc[shown, "image_path"].isna().any()
        or table.loc[shown, "things_image_nr"].isna().any()
    ):
        row = int(
            np.flatnonzero(shown & (table.image_path.isna() | table.things_image_nr.isna()))[0]
        )
        raise InputError(
            f"{path}: row {row + 2} ({table.trial_type[row]} trial) has no image_path or "
            "things_image_nr; use the file from ds004212's sourcedata/"
        )
    return table


def expected_events(table: pd.DataFrame) -> np.ndarray:
    """The event value each row should carry: things_image_nr, 999999 for catch trials."""
    value = table.things_image_nr.where(table.trial_type != "catch", CATCH)
    return value.fillna(CATCH).astype(np.int64).to_numpy()


def open_epochs(path: Path | str):
    """The participant's epochs, read lazily (nothing loaded); a missing or damaged part is
    one line naming it."""
    import mne

    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: epochs file not found; fetch derivatives/preprocessed/ of ds004212 "
            "(download) or put the files there"
        )
    try:
        return mne.read_epochs(path, preload=False, verbose="error")
    except FileNotFoundError as err:
        missing = Path(err.filename).name if err.filename else str(err)
        raise InputError(
            f"{path}: its part {missing} is missing from {path.parent}; MNE stores one "
            "participant's epochs in parts that must sit together, unrenamed: fetch it again"
        ) from None
    except (AssertionError, ValueError, OSError, RuntimeError) as err:
        raise InputError(
            f"{path}: a part of these epochs is damaged or truncated ({type(err).__name__}"
            f"{': ' + str(err) if str(err) else ''}); fetch the participant's files again"
        ) from None


IMAGES_HOW = (
    "the THINGS images are not part of ds004212: get the THINGS image database "
    "(https://things-initiative.org, password-protected) and give the folder holding "
    "images_meg/ and images_test_meg/ as the data set's images_dir"
)


def image_set(table: pd.DataFrame, images_dir: Path | str) -> dict:
    """The images a participant's sample attributes show, for its image set
    (visdecode.image_sets): train = exp images of concepts without a test image, test = the
    test images; each sorted, as (stimulus identities, concepts, files)."""
    kind = table.trial_type.to_numpy()
    paths = table.image_path.astype(str).to_numpy()
    concept = np.array([concept_of(p) for p in paths])
    test_concepts = set(concept[kind == "test"])
    chosen = {
        "train": (kind == "exp") & ~np.isin(concept, list(test_concepts)),
        "test": kind == "test",
    }
    out = {}
    for part, mask in chosen.items():
        names = sorted(set(paths[mask]))
        out[part] = (names, [concept_of(n) for n in names], [Path(images_dir) / n for n in names])
    return out
