if EEG_SOURCE == "raw":

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
            mem_mb=preprocess_mem_mb,
            runtime=60,
        params:
            options=preprocess_options(),
        script:
            "../workflow/scripts/preprocess.py"

else:

    rule import_preprocessed:
        input:
            release=release_files,
            metadata=image_metadata(),
        output:
            "results/preprocessed/{dataset}/sub-{subject}.h5",
        log:
            "logs/preprocess/{dataset}/sub-{subject}.log",
        benchmark:
            "results/benchmarks/preprocess/{dataset}/sub-{subject}.tsv"
        conda:
            "../envs/preprocess.yaml"
        resources:
            mem_mb=4000,
            runtime=20,
        script:
            "../workflow/scripts/import_preprocessed.py"
