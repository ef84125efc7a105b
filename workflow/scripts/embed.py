"""Rule embed: one image encoder over the data set's images (HDF5 cache)."""

from pathlib import Path

import torch

from visdecode import embed
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
embed.run(
    snakemake.wildcards.image_encoder,
    Path(snakemake.input.metadata).parent,
    snakemake.params.weights_dir,
    snakemake.output[0],
    **snakemake.params.options,
    local_weights=snakemake.params.local_weights,
)
