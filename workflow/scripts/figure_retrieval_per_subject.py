"""Rule figure_retrieval_per_subject: each subject's top-1 and top-5, aligned vs unaligned."""

from visdecode import figures
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
p = snakemake.params
figures.per_subject(snakemake.input.table, snakemake.output, p.dpi, dataset=p.dataset)
