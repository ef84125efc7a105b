if SYNTHETIC:

    rule synth_images:
        output:
            metadata=f"{DATA_DIR}/images/image_metadata.npy",
            truth=f"{DATA_DIR}/synthetic_truth.h5",
        log:
            "logs/synth/images.log",
        benchmark:
            "results/benchmarks/synth/images.tsv"
        conda:
            "../envs/synth.yaml"
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            world=config["synthetic"].get("world", {}),
        script:
            "../workflow/scripts/synth_images.py"

    rule synth_encoders:
        input:
            truth=f"{DATA_DIR}/synthetic_truth.h5",
        output:
            backbone=f"{SYNTH_WEIGHTS}/synth_resnet18.pt",
            glocal=f"{SYNTH_WEIGHTS}/synth_resnet18_glocal.pt",
        log:
            "logs/synth/encoders.log",
        benchmark:
            "results/benchmarks/synth/encoders.tsv"
        conda:
            "../envs/synth.yaml"
        threads: 2
        resources:
            mem_mb=3000,
            runtime=30,
        script:
            "../workflow/scripts/synth_encoders.py"

    rule synth_eeg:
        input:
            truth=f"{DATA_DIR}/synthetic_truth.h5",
        output:
            raw_paths("{subject}"),
        log:
            "logs/synth/eeg_sub-{subject}.log",
        benchmark:
            "results/benchmarks/synth/eeg_sub-{subject}.tsv"
        conda:
            "../envs/synth.yaml"
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            world=config["synthetic"].get("world", {}),
        script:
            "../workflow/scripts/synth_eeg.py"
