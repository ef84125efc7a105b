"""Rule things_eeg2_import_release: the official preprocessed release of one subject -> HDF5."""

from pathlib import Path

from visdecode.datasets.things_eeg2 import release
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
release.run(
    Path(snakemake.input.metadata).parent.parent,  # data set root
    int(snakemake.wildcards.subject),
    snakemake.output[0],
)
