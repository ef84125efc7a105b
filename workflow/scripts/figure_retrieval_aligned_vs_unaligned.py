"""Rule figure_retrieval_aligned_vs_unaligned: top-1 per pair, aligned vs unaligned."""

from visdecode import figures
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
p = snakemake.params
figures.aligned_vs_unaligned(
    snakemake.input.table, snakemake.input.stats, snakemake.output, p.dpi, p.test, p.dataset
)
