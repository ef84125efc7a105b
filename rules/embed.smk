rule embed:
    input:
        images="results/images/{dataset}.tsv",
        weights=encoder_weights,
    output:
        "results/embeddings/{dataset}/{image_encoder}.h5",
    log:
        "logs/embed/{dataset}/{image_encoder}.log",
    benchmark:
        "results/benchmarks/embed/{dataset}/{image_encoder}.tsv"
    wildcard_constraints:
        image_encoder="|".join(EMBEDDED_ENCODERS),
    conda:
        "../envs/embed.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=GPU,
    script:
        "../workflow/scripts/embed.py"


rule derive_embeddings:
    input:
        backbone=backbone_embeddings,
        weights=transform_weights,
    output:
        "results/embeddings/{dataset}/{image_encoder}.h5",
    log:
        "logs/derive_embeddings/{dataset}/{image_encoder}.log",
    benchmark:
        "results/benchmarks/derive_embeddings/{dataset}/{image_encoder}.tsv"
    wildcard_constraints:
        image_encoder="|".join(DERIVED_ENCODERS) or "(?!)",
    conda:
        "../envs/embed.yaml"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    script:
        "../workflow/scripts/derive_embeddings.py"
