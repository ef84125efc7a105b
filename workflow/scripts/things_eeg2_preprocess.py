"""Rule things_eeg2_preprocess: raw sessions of one subject -> MVNN-whitened epochs (HDF5)."""

from pathlib import Path

from visdecode.datasets.things_eeg2 import preprocess
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
options = dict(snakemake.params.options)
options["baseline"] = tuple(options.get("baseline", (None, 0.0)))
preprocess.run(
    Path(snakemake.input.metadata).parent.parent,  # data set root
    int(snakemake.wildcards.subject),
    snakemake.output[0],
    preprocess.Params(**options),
    threads=snakemake.threads,
)
