"""Rules download_<part>_<data set>: one part of a real data set, fetched into its data_dir."""

from visdecode import download
from visdecode.datasets.things_eeg2 import sources as things_eeg2
from visdecode.datasets.things_meg import sources as things_meg
from visdecode.io import rule_logging

SOURCES = {"things-eeg2": things_eeg2, "things-meg": things_meg}  # each kind's hosts and parts

rule_logging(snakemake.log[0])
p = snakemake.params
options = snakemake.config["download"]  # execution options: no rule params, they rerun nothing
mirrors = snakemake.config["datasets"][p.dataset]["mirrors"]  # likewise
subject = snakemake.wildcards.get("subject")
download.fetch(
    SOURCES[p.kind],
    p.part,
    p.data_dir,
    mirrors,
    subject=int(subject) if subject else None,
    timeout=options["timeout"],
    retries=options["retries"],
    keep_archives=options["keep_archives"],
    **p.layout,
)
