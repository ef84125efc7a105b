"""Rule derive_embeddings: a gLocal encoder's cache from its backbone's (no image pass)."""

from pathlib import Path

import torch

from visdecode import embed
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
made = snakemake.input.weights  # the synthetic world's transform; others are in the cache
embed.derive(
    snakemake.wildcards.image_encoder,
    snakemake.input.backbone,
    Path(made[0]).parent if made else snakemake.config["weights_dir"],
    snakemake.output[0],
)
