"""Rule figure_topk_retrieval: query images and the top-k retrieved, aligned vs unaligned."""

from visdecode import figures
from visdecode.io import rule_logging

rule_logging(snakemake.log[0])
i, p = snakemake.input, snakemake.params
runs = {
    a: {"model": i[f"{a}_model"], "embeddings": i[f"{a}_embeddings"], "name": p.names[a]}
    for a in ("aligned", "unaligned")
}
figures.topk_grid(
    runs, i.brain, i.images, snakemake.output, p.queries, p.k, p.dpi, dataset=p.dataset
)
