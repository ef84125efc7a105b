"""Rule evaluate: n-way retrieval of one trained run."""

from visdecode import evaluate
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
w = snakemake.wildcards
evaluate.run(
    snakemake.input.model,
    snakemake.input.brain,
    snakemake.input.embeddings,
    snakemake.output[0],
    meta={
        "dataset": w.dataset,
        "regime": w.regime,
        "subject": int(w.subject),
        "brain_encoder": w.brain_encoder,
        "image_encoder": w.image_encoder,
        "seed": int(w.seed),
        "control": snakemake.params.control,
    },
    n_way=snakemake.params.n_way,
)
