"""Rule train: one brain encoder x image encoder x subject x seed."""

from pathlib import Path

from visdecode import train
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
train.run(
    snakemake.input.brain,
    snakemake.input.embeddings,
    snakemake.wildcards.brain_encoder,
    int(snakemake.wildcards.seed),
    Path(snakemake.output.model).parent,
    train.Recipe(**snakemake.params.recipe),
    threads=snakemake.threads,
)
