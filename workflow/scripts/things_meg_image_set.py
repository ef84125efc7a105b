"""Rule things_meg_image_set: the images the participants saw, by stimulus identity."""

from visdecode import image_sets
from visdecode.datasets.things_meg import format as fmt
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
folder = snakemake.params.images_dir
table = fmt.read_attributes(snakemake.input.csv)
image_sets.write(snakemake.output[0], fmt.image_set(table, folder), folder, fmt.IMAGES_HOW)
