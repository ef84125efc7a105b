"""Rule summary_table: mean and sd of top-1/top-5 per pair, aligned minus unaligned."""

from visdecode import tables
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
tables.write_summary(snakemake.input[0], snakemake.output[0])
