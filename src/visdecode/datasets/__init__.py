"""Data sets, one subpackage per kind. A kind owns its on-disk format (`format`), its embedded
synthetic world (`synth`), its sources (`sources`, for visdecode.download) and its preparation
into the common brain-data file (visdecode.brain_data); the stages after preparation know
nothing of it. `synthetic_things` is the synthetic THINGS images, judgements and encoders the
THINGS worlds share.

Adding a kind: a subpackage with those modules, its entry in KINDS, its branch in
workflow/schemas/config.schema.yaml and its rules in rules/datasets/<kind>.smk (README.md,
"Adding a data set").
"""

from __future__ import annotations

import importlib

# kind (config: datasets.<name>.kind) -> its subpackage
KINDS = {
    "things-eeg2": "visdecode.datasets.things_eeg2",
    "things-meg": "visdecode.datasets.things_meg",
}


def module(kind: str, part: str):
    """A kind's module (`format`, `synth`, `sources`, ...); an unknown kind is one line."""
    if kind not in KINDS:
        raise ValueError(f"unknown data-set kind '{kind}'; one of {', '.join(KINDS)}")
    return importlib.import_module(f"{KINDS[kind]}.{part}")
