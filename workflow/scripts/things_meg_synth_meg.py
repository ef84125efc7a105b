"""Rules synth_meg_<data set>: one participant's epochs (in parts) and sample attributes."""

from pathlib import Path

from visdecode.datasets.things_meg import synth
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
synth.write_participant(
    Path(snakemake.input.truth).parent,
    int(snakemake.wildcards.subject),
    synth.WorldConfig.from_dict(snakemake.params.world),
)
