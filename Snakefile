"""visdecode: decoding seen images from brain activity with human-aligned image encoders.

snakemake --cores all                 # the whole pipeline (the synthetic worlds by default)
snakemake --cores all results/figures/things-eeg2-synthetic/retrieval_aligned_vs_unaligned.png
snakemake --report results/report.html  # every figure and table, with captions
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
# each kind of data set: its world or download, its preparation, its image set
include: "rules/datasets/common.smk"
include: "rules/datasets/synthetic_things.smk"
include: "rules/datasets/things_eeg2.smk"
include: "rules/datasets/things_meg.smk"
# the stages after preparation, which know nothing of the kind
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
        FIGURES,
        "results/config.yaml",
