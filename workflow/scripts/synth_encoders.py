"""Rules synth_encoders_<data set>: the synthetic aligned/unaligned encoder pair's weights."""

from pathlib import Path

import torch

from visdecode.datasets import synthetic_things
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
synthetic_things.write_encoders(
    Path(snakemake.input.truth).parent, Path(snakemake.output[0]).parent
)
