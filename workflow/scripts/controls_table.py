"""Rule controls_table: the control runs' retrieval against chance."""

from visdecode import tables
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
tables.write_controls(list(snakemake.input), snakemake.output[0], snakemake.params.null_pairs)
