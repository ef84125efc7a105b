rule preprocess:
    input:
        raw=raw_files,
        metadata=image_metadata(),
    output:
        "results/preprocessed/{dataset}/sub-{subject}.h5",
    log:
        "logs/preprocess/{dataset}/sub-{subject}.log",
    benchmark:
        "results/benchmarks/preprocess/{dataset}/sub-{subject}.tsv"
    conda:
        "../envs/preprocess.yaml"
    threads: config["preprocess"]["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        options=config["preprocess"],
    script:
        "../workflow/scripts/preprocess.py"
