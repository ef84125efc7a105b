"""Rule stats_table: paired tests of aligned vs unaligned over subjects, corrected."""

from visdecode import tables
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
tables.write_statistics(snakemake.input[0], snakemake.output[0], snakemake.params.correction)
