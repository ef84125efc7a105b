"""Rules synth_images_<data set> (THINGS-MEG): the world's image folders and planted truth."""

from pathlib import Path

from visdecode.datasets.things_meg import synth
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
synth.write_images_atomic(
    Path(snakemake.output.truth).parent, synth.WorldConfig.from_dict(snakemake.params.world)
)
