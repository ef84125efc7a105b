rule train:
    input:
        brain=training_brains,
        embeddings="results/embeddings/{dataset}/{image_encoder}.h5",
    output:
        model=f"{RUN}/model.pt",
        metrics=f"{RUN}/metrics.csv",
        config=f"{RUN}/config.yaml",
    log:
        f"logs/train/{RUN.removeprefix('results/runs/')}.log",
    benchmark:
        f"results/benchmarks/train/{RUN.removeprefix('results/runs/')}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["train"].get("threads", 1)
    resources:
        mem_mb=train_mem_mb,
        runtime=240,
        gpu=GPU,
    params:
        recipe=recipe,
    script:
        "../workflow/scripts/train.py"
