"""Rule retrieval_table: every run's result in one tidy table."""

from visdecode import evaluate
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
evaluate.table(snakemake.input, snakemake.params.pairs, snakemake.output[0])
