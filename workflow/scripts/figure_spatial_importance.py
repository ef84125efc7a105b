"""Rule figure_spatial_importance: spatial importance, aligned vs unaligned, over subjects."""

from visdecode import figures
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
p = snakemake.params
figures.spatial_importance(
    list(snakemake.input.attributions), p.pairs, snakemake.output, p.dpi,
    sensors=snakemake.input.sensors, dataset=p.dataset,
)  # fmt: skip
