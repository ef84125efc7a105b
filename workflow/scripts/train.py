"""Rule train: one regime x subject x brain encoder x image encoder x seed (or its control)."""

from pathlib import Path

from visdecode import train
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
w, p = snakemake.wildcards, snakemake.params
train.run(
    list(snakemake.input.brain),
    snakemake.input.embeddings,
    w.brain_encoder,
    int(w.seed),
    Path(snakemake.output.model).parent,
    train.Recipe(**p.recipe),
    threads=snakemake.threads,
    regime=w.regime,
    test_subject=int(w.subject) if w.regime == "inter" else None,
    val_split=p.val_split,
    selection=p.selection,
    permute=p.control == "permutation",
)
