"""visdecode: decoding seen images from brain activity with human-aligned image encoders.

snakemake --cores all                 # the whole pipeline (synthetic world by default)
snakemake --cores all results/figures/retrieval_aligned_vs_unaligned.png  # one figure
snakemake --report results/report.html  # every figure and table, with captions
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/synth.smk"
include: "rules/download.smk"
include: "rules/preprocess.smk"
include: "rules/embed.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/tables.smk"
include: "rules/attribution.smk"
include: "rules/figures.smk"


rule all:
    default_target: True
    input:
        TABLES,
        list(FIGURES.values()),
        "results/config.yaml",
