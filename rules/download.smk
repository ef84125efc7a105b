# The real data set's files, fetched when the synthetic world is off (config: download).
if FETCH:

    rule download_raw:
        output:
            raw_paths("{subject}"),
        log:
            "logs/download/raw_sub-{subject}.log",
        benchmark:
            "results/benchmarks/download/raw_sub-{subject}.tsv"
        conda:
            "../envs/download.yaml"
        resources:
            mem_mb=3000,
            runtime=600,
        params:
            part="raw",
            n_sessions=N_SESSIONS,
            data_dir=DATA_DIR,
        script:
            "../workflow/scripts/download.py"

    rule download_images:
        output:
            image_metadata(),
        log:
            "logs/download/images.log",
        benchmark:
            "results/benchmarks/download/images.tsv"
        conda:
            "../envs/download.yaml"
        resources:
            mem_mb=2000,
            runtime=240,
        params:
            part="images",
            n_sessions=N_SESSIONS,
            data_dir=DATA_DIR,
        script:
            "../workflow/scripts/download.py"

    rule download_preprocessed:
        output:
            release_paths("{subject}"),
        log:
            "logs/download/preprocessed_sub-{subject}.log",
        benchmark:
            "results/benchmarks/download/preprocessed_sub-{subject}.tsv"
        conda:
            "../envs/download.yaml"
        resources:
            mem_mb=3000,
            runtime=120,
        params:
            part="preprocessed",
            n_sessions=N_SESSIONS,
            data_dir=DATA_DIR,
        script:
            "../workflow/scripts/download.py"
