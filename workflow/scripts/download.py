"""Rules download_raw, download_images, download_preprocessed: one part of THINGS-EEG2."""

from visdecode import download
from visdecode.datasets.things_eeg2 import sources
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
options = snakemake.config["download"]  # execution options: no rule params, they rerun nothing
subject = snakemake.wildcards.get("subject")
download.fetch(
    sources,
    snakemake.params.part,
    snakemake.params.data_dir,
    options["mirrors"],
    subject=int(subject) if subject else None,
    n_sessions=snakemake.params.n_sessions,
    timeout=options["timeout"],
    retries=options["retries"],
    keep_archives=options["keep_archives"],
)
