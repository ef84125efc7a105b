"""THINGS-MEG's sources: OpenNeuro ds004212's preprocessed derivative and sample attributes,
per participant, for `visdecode.download`.

OpenNeuro lists a snapshot's files through its GraphQL API (mirror type `openneuro`); an
annexed file's id is its git-annex key, which carries its SHA-256, so every file is verified.
The epochs files are 2 GB parts (`-epo.fif`, `-epo-1.fif`, ...); a participant is placed only
once all its parts and its CSV are fetched, the epochs open and hold one epoch per CSV row.
The THINGS images are not in ds004212 (the user gives their folder: `images_dir`).
"""

from __future__ import annotations

from pathlib import Path

from visdecode.datasets.things_meg import format as fmt
from visdecode.download import Part, find
from visdecode.errors import InputError

PARTS = {
    "participant": Part(
        "THINGS-MEG preprocessed epochs and sample attributes",
        "https://openneuro.org/datasets/ds004212",
        r"(^|/)derivatives/preprocessed/preprocessed_P{subject}-epo(-\d+)?\.fif$"
        r"|(^|/)sourcedata/sample_attributes_P{subject}\.csv$",
        subject_name="P{subject}",
    ),
}

# The derivative's host (facts: ../shared/reference/meg-fmri-god.md); the CLI's default.
DEFAULT_MIRRORS = [
    {
        "name": "openneuro",
        "type": "openneuro",
        "url": "https://openneuro.org/crn/graphql",
        "ids": {"participant": "ds004212:2.0.1"},
    }
]


def outputs(part: str, data_dir: Path | str, subject: int | None = None) -> list[Path]:
    """The participant's CSV and first epochs part (the one the workflow waits for, placed
    last; MNE finds the other parts beside it)."""
    return [fmt.attributes_path(data_dir, subject), fmt.epochs_path(data_dir, subject)]


def arrange(part: str, staging: Path, data_dir: Path, subject=None) -> dict:
    """{final path: staged path} of a participant's files, checked: the CSV's columns, every
    epochs part MNE needs present, as many epochs as CSV rows."""
    csv = find(staging, fmt.attributes_path(".", subject).name)
    first = find(staging, fmt.epochs_path(".", subject).name)
    if len(csv) != 1 or len(first) != 1:
        raise InputError(
            f"THINGS-MEG P{subject}: the download holds {len(csv)} sample_attributes and "
            f"{len(first)} first epochs files, expected 1 each"
        )
    table = fmt.read_attributes(csv[0])
    epochs = fmt.open_epochs(first[0])
    if len(epochs) != len(table):
        raise InputError(
            f"THINGS-MEG P{subject}: {len(epochs)} epochs but {len(table)} CSV rows; fetch the "
            "participant again"
        )
    parts = sorted(first[0].parent.glob(f"preprocessed_P{subject}-epo*.fif"))
    plan = {fmt.attributes_path(data_dir, subject): csv[0]}
    for path in parts:
        plan[fmt.epochs_path(data_dir, subject).with_name(path.name)] = path
    return plan
