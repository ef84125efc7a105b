"""Rule derive_embeddings: a gLocal encoder's cache from its backbone's (no image pass)."""

import torch

from visdecode import embed
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
embed.derive(
    snakemake.wildcards.image_encoder,
    snakemake.input.backbone,
    snakemake.params.weights_dir,
    snakemake.output[0],
)
