"""Rule things_eeg2_image_set: the data set's images by stimulus identity (results/images/)."""

from pathlib import Path

from visdecode import image_sets
from visdecode.datasets.things_eeg2 import format as things_eeg2
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
images_dir = Path(snakemake.input.metadata).parent
image_sets.write(
    snakemake.output[0], things_eeg2.image_set(images_dir), images_dir, things_eeg2.IMAGES_HOW
)
