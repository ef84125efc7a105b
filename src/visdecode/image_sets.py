"""An image set: the images a data set shows, per partition, named by the stimulus identity its
brain files use. A kind writes it (its `images` step); embedding and the figures read it and
know nothing of the kind.

`results/images/<image set>.tsv`: tab-separated with a header, one row per image, in the order
embeddings are written:

    partition   train | test
    stimulus    the identity brain files give it (`<partition>_stimuli`)
    concept     its concept
    path        its file (as the data set's folder is given: relative to the working directory,
                or absolute)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from visdecode.errors import InputError
from visdecode.io import atomic_path

COLUMNS = ("partition", "stimulus", "concept", "path")
PARTITIONS = ("train", "test")


@dataclass(frozen=True)
class Images:
    """One partition's images: stimulus identities, concepts, files."""

    stimuli: list[str]
    concepts: list[str]
    paths: list[Path]


def write(out: Path | str, images: dict, folder: Path | str, how: str) -> None:
    """The index of `images` ({partition: (stimuli, concepts, paths)}, a kind's image_set),
    once every file is there; a missing image is one line naming `folder` (the data set's image
    folder) and `how` to get the images."""
    images = {part: Images(*map(list, images[part])) for part in PARTITIONS}
    rows = []
    for part in PARTITIONS:
        if not images[part].stimuli:
            raise InputError(f"{folder}: no {part} images listed; {how}")
        missing = [p for p in images[part].paths if not Path(p).is_file()]
        if missing:
            raise InputError(
                f"{folder}: {len(missing)} of the {len(images[part].paths)} {part} images are "
                f"missing (first: {missing[0]}); {how}"
            )
        names = images[part].stimuli
        if len(set(names)) != len(names):
            raise InputError(f"{folder}: a {part} image is listed twice; {how}")
        rows += [
            (part, s, c, str(p))
            for s, c, p in zip(names, images[part].concepts, images[part].paths)
        ]
    with atomic_path(out) as tmp:
        pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp, sep="\t", index=False)


def read(path: Path | str) -> dict[str, Images]:
    """{partition: Images} of an index."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image set not found; run the data set's images step")
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if tuple(table.columns) != COLUMNS:
        raise InputError(f"{path}: columns {list(table.columns)}, expected {list(COLUMNS)}")
    out = {}
    for part in PARTITIONS:
        rows = table[table.partition == part]
        out[part] = Images(list(rows.stimulus), list(rows.concept), [Path(p) for p in rows.path])
    return out
