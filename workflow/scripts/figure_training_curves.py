"""Rule figure_training_curves: validation loss and top-1 over epochs per run family."""

from visdecode import figures
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
p = snakemake.params
figures.training_curves(list(snakemake.input), p.pairs, snakemake.output, p.dpi, dataset=p.dataset)
