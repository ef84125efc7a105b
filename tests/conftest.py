"""Shared fixtures: one tiny synthetic world per test session (written once, read by many)."""

from pathlib import Path

import pytest

from visdecode.datasets.things_eeg2 import synth

TINY_WORLD = dict(
    seed=3,
    n_train_concepts=8,
    images_per_concept=3,
    n_test_concepts=6,
    test_reps_per_session=4,
    image_size=64,
    n_alignment_images=40,
    n_triplets=400,
)


@pytest.fixture(scope="session")
def world_cfg() -> synth.WorldConfig:
    return synth.WorldConfig.from_dict(TINY_WORLD)


@pytest.fixture(scope="session")
def world(tmp_path_factory, world_cfg) -> Path:
    """A tiny world with images and subject 1's raw EEG (no encoders: those are slow)."""
    root = tmp_path_factory.mktemp("world")
    synth.write_images_atomic(root, world_cfg)
    synth.write_subject(root, 1, world_cfg)
    return root
