"""Rule train: one regime x subject x brain encoder x image encoder x seed."""

from pathlib import Path

from visdecode import train
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
w = snakemake.wildcards
train.run(
    list(snakemake.input.brain),
    snakemake.input.embeddings,
    snakemake.wildcards.brain_encoder,
    int(snakemake.wildcards.seed),
    Path(snakemake.output.model).parent,
    train.Recipe(**snakemake.params.recipe),
    threads=snakemake.threads,
    regime=w.regime,
    test_subject=int(w.subject) if w.regime == "inter" else None,
)
