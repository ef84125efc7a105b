"""Rules synth_eeg_<data set>: one subject's raw sessions of the synthetic world."""

from pathlib import Path

from visdecode.datasets.things_eeg2 import synth
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
synth.write_subject(
    Path(snakemake.input.truth).parent,
    int(snakemake.wildcards.subject),
    synth.WorldConfig.from_dict(snakemake.params.world),
)
