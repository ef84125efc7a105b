"""Rule figure_aligned_vs_unaligned: the paper's Figure 1 for this run."""

from visdecode import figures
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
figures.aligned_vs_unaligned(snakemake.input[0], snakemake.output[0])
