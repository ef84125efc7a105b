rule embed:
    input:
        metadata=image_metadata(),
        weights=encoder_weights,
    output:
        "results/embeddings/{dataset}/{image_encoder}.h5",
    log:
        "logs/embed/{dataset}/{image_encoder}.log",
    benchmark:
        "results/benchmarks/embed/{dataset}/{image_encoder}.tsv"
    conda:
        "../envs/embed.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=GPU,
    params:
        weights_dir=WEIGHTS_DIR,
        local_weights=local_weights,
        options=config["embed"],
    script:
        "../workflow/scripts/embed.py"
