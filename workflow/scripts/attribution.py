"""Rule attribution: temporal (Grad-CAM), spectral and spatial importance of one run."""

import torch

from visdecode import attribution
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
w = snakemake.wildcards
attribution.run(
    snakemake.input.model,
    snakemake.input.brain,
    snakemake.input.embeddings,
    snakemake.output[0],
    meta={"regime": w.regime, "subject": int(w.subject), "seed": int(w.seed)},
)
