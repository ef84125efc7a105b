rule evaluate:
    input:
        model=f"{RUN}/model.pt",
        brain="results/preprocessed/{dataset}/sub-{subject}.h5",
        embeddings="results/embeddings/{dataset}/{image_encoder}.h5",
    output:
        f"{RUN}/retrieval.json",
    log:
        f"logs/evaluate/{RUN_ID}.log",
    benchmark:
        f"results/benchmarks/evaluate/{RUN_ID}.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=evaluate_mem_mb,
        runtime=20,
    params:
        n_way=config["evaluate"].get("n_way"),
        control=control,
    script:
        "../workflow/scripts/evaluate.py"


rule retrieval_table:
    input:
        run_results,
    output:
        report(
            "results/tables/retrieval.csv",
            caption="../workflow/report/retrieval_table.rst",
            category="Tables",
        ),
    log:
        "logs/tables/retrieval.log",
    benchmark:
        "results/benchmarks/tables/retrieval.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        pairs=PAIRS,
    script:
        "../workflow/scripts/retrieval_table.py"


rule intra_subject:
    """Target: every intra-subject run's retrieval result (one model per subject)."""
    input:
        lambda wildcards: run_results(regimes=["intra"]),


rule inter_subject:
    """Target: every leave-one-subject-out run's retrieval result (test subject held out)."""
    input:
        lambda wildcards: run_results(regimes=["inter"]),
