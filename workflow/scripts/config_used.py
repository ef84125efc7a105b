"""Rule config_used: the configuration (defaults filled in) as results/config.yaml."""

import yaml

from visdecode.io import atomic_path, rule_logging

rule_logging(snakemake.log[0])
with atomic_path(snakemake.output[0]) as tmp, open(tmp, "w") as fh:
    yaml.safe_dump(dict(snakemake.params.config), fh, sort_keys=False)
