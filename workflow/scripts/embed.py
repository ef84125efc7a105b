"""Rule embed: one image encoder over an image set's images (HDF5 cache)."""

from pathlib import Path

import torch

from visdecode import embed, image_encoders
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
name = snakemake.wildcards.image_encoder
options = snakemake.config["embed"]  # execution options: no rule params, they rerun nothing
synthetic = image_encoders.get(name).synthetic  # its weights are inputs, made by the world
embed.run(
    name,
    snakemake.input.images,
    Path(snakemake.input.weights[0]).parent if synthetic else snakemake.config["weights_dir"],
    snakemake.output[0],
    batch_size=options["batch_size"],
    workers=options["workers"],
    local_weights=snakemake.config.get("local_weights", {}).get(name),
    compile=options["compile"],
)
