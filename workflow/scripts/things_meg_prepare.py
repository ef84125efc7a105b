"""Rule things_meg_prepare: one participant's epochs -> the common brain-data file (HDF5)."""

from visdecode.datasets.things_meg import prepare
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
prepare.run(
    snakemake.params.data_dir,
    int(snakemake.wildcards.subject),
    snakemake.output[0],
    **snakemake.params.options,
)
