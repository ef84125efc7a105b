"""Rules synth_images_<data set> (THINGS-EEG2): the world's images, metadata, planted truth."""

from pathlib import Path

from visdecode.datasets.things_eeg2 import synth
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
synth.write_images_atomic(
    Path(snakemake.output.truth).parent, synth.WorldConfig.from_dict(snakemake.params.world)
)
