rule train:
    input:
        brain=training_brains,
        embeddings="results/embeddings/{dataset}/{image_encoder}.h5",
    output:
        model=f"{RUN}/model.pt",
        metrics=f"{RUN}/metrics.csv",
        config=f"{RUN}/config.yaml",
    log:
        f"logs/train/{RUN_ID}.log",
    benchmark:
        f"results/benchmarks/train/{RUN_ID}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["train"].get("threads", 1)
    resources:
        mem_mb=train_mem_mb,
        runtime=240,
        gpu=GPU,
    params:
        recipe=recipe,
        val_split=config["train"]["val_split"],
        selection=config["train"]["selection"],
        control=control,
    script:
        "../workflow/scripts/train.py"
