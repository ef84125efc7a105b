"""THINGS-EEG2's sources: raw EEG per subject, the image set, and the official preprocessed
release per subject (facts: ../shared/reference/things-eeg2.md), for `visdecode.download`.

Every part is checked before it is put in place: file counts, array shapes, every image the
metadata lists.
"""

from __future__ import annotations

from pathlib import Path

from visdecode.datasets.things_eeg2 import format as fmt
from visdecode.download import ARCHIVE, Part, find
from visdecode.errors import InputError

PARTS = {
    "raw": Part("raw EEG", "https://osf.io/crxs4/", rf"(^|/)sub-{{subject:02d}}({ARCHIVE}$|/)"),
    "preprocessed": Part(
        "official preprocessed EEG",
        "https://osf.io/anp5v/",
        rf"(^|/)sub-{{subject:02d}}({ARCHIVE}$|/)",
    ),
    "images": Part(
        "image set",
        "https://osf.io/y63gw/",
        rf"(^|/)(training_images|test_images)({ARCHIVE}$|/)|(^|/)image_metadata\.npy$",
        per_subject=False,
    ),
}

# The hosts of the release (facts: ../shared/reference/things-eeg2.md). config.yaml's
# The workflow's default hosts are the schema's (datasets.<name>.mirrors); this is the CLI's.
DEFAULT_MIRRORS = [
    {
        "name": "osf",
        "type": "osf",
        "url": "https://api.osf.io/v2",
        "ids": {"raw": "crxs4", "preprocessed": "anp5v", "images": "y63gw"},
    }
]


def arrange_raw(staging: Path, data_dir: Path, subject: int, n_sessions: int) -> dict:
    """{final path: staged path} of the subject's raw session files, each checked."""
    plan = {}
    for ses in range(1, n_sessions + 1):
        for partition in fmt.PARTITIONS:
            name = f"raw_eeg_{partition}.npy"
            hits = [p for p in find(staging, name) if p.parent.name == f"ses-{ses:02d}"]
            if len(hits) != 1:
                raise InputError(
                    f"sub-{subject:02d} raw EEG: the download holds {len(hits)} "
                    f"ses-{ses:02d}/{name} files, expected 1"
                )
            raw = fmt.RawFile(hits[0])
            if raw.shape[0] != len(fmt.CH_NAMES) + 1 or raw.sfreq != fmt.SFREQ:
                raise InputError(
                    f"{hits[0]}: raw_eeg_data has shape {raw.shape} at {raw.sfreq} Hz, expected "
                    f"({len(fmt.CH_NAMES) + 1}, n_samples) at {fmt.SFREQ:.0f} Hz"
                )
            plan[fmt.raw_path(data_dir, subject, ses, partition)] = hits[0]
    extra = len(find(staging, "raw_eeg_*.npy")) - len(plan)
    if extra:
        raise InputError(
            f"sub-{subject:02d} raw EEG: the download holds {extra} session file(s) beyond "
            f"sessions 1..{n_sessions}; set preprocess.n_sessions to match"
        )
    return plan


def arrange_images(staging: Path, data_dir: Path) -> dict:
    """{final path: staged path} of the image metadata and both image folders, every image the
    metadata lists present and nothing else."""
    plan = {}
    meta_hits = find(staging, "image_metadata.npy")
    if len(meta_hits) != 1:
        raise InputError(f"image set: {len(meta_hits)} image_metadata.npy files, expected 1")
    meta = fmt.load_image_metadata(meta_hits[0])
    images = data_dir / "images"
    plan[images / "image_metadata.npy"] = meta_hits[0]
    for partition in fmt.PARTITIONS:
        hits = find(staging, f"{partition}_images", "dir")
        if len(hits) != 1:
            raise InputError(f"image set: {len(hits)} {partition}_images folders, expected 1")
        expected = fmt.image_paths(hits[0].parent, meta, partition)
        missing = [p for p in expected if not p.is_file()]
        found = sum(1 for p in hits[0].rglob("*") if p.is_file())
        if missing or found != len(expected):
            raise InputError(
                f"image set: {partition}_images holds {found} files, {len(missing)} of the "
                f"{len(expected)} listed in image_metadata.npy missing (first: "
                f"{missing[0].relative_to(hits[0].parent) if missing else 'none'})"
            )
        plan[images / f"{partition}_images"] = hits[0]
    return plan


def arrange_preprocessed(staging: Path, data_dir: Path, subject: int) -> dict:
    plan = {}
    for name, partition in zip(fmt.RELEASE_FILES, fmt.PARTITIONS):
        hits = find(staging, name)
        if len(hits) != 1:
            raise InputError(
                f"sub-{subject:02d} official preprocessed EEG: the download holds {len(hits)} "
                f"{name} files, expected 1"
            )
        fmt.load_release(hits[0], partition)
        plan[fmt.release_dir(data_dir, subject) / name] = hits[0]
    return plan


def outputs(part: str, data_dir: Path | str, subject: int | None = None, n_sessions: int = 4):
    """The files a part puts in place (the images' folders: their metadata file stands in, put
    in place last)."""
    data_dir = Path(data_dir)
    if part == "raw":
        return [
            fmt.raw_path(data_dir, subject, s, p)
            for s in range(1, n_sessions + 1)
            for p in fmt.PARTITIONS
        ]
    if part == "preprocessed":
        return [fmt.release_dir(data_dir, subject) / n for n in fmt.RELEASE_FILES]
    return [data_dir / "images" / "image_metadata.npy"]


def arrange(part: str, staging: Path, data_dir: Path, subject=None, n_sessions: int = 4) -> dict:
    if part == "raw":
        return arrange_raw(staging, data_dir, subject, n_sessions)
    if part == "preprocessed":
        return arrange_preprocessed(staging, data_dir, subject)
    return arrange_images(staging, data_dir)
