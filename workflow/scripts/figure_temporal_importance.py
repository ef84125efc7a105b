"""Rule figure_temporal_importance: temporal importance, aligned vs unaligned, over subjects."""

from visdecode import figures
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
p = snakemake.params
figures.temporal_importance(
    list(snakemake.input), p.pairs, snakemake.output, p.dpi, dataset=p.dataset
)
