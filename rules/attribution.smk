rule attribution:
    input:
        model=f"{RUN}/model.pt",
        brain="results/preprocessed/{dataset}/sub-{subject}.h5",
        embeddings="results/embeddings/{dataset}/{image_encoder}.h5",
    output:
        f"{RUN}/attribution.h5",
    log:
        f"logs/attribution/{RUN_ID}.log",
    benchmark:
        f"results/benchmarks/attribution/{RUN_ID}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=evaluate_mem_mb,
        runtime=20,
    script:
        "../workflow/scripts/attribution.py"
