# The synthetic THINGS worlds' shared part: the aligned/unaligned encoder pair each world
# carries in its data_dir/encoders (visdecode.datasets.synthetic_things), trained on the
# world's images and simulated human judgements.
for _name in [n for n, d in DATASETS.items() if d["synthetic"]]:

    rule:
        name:
            rule_name("synth_encoders", _name)
        input:
            truth=f"{data_dir(_name)}/synthetic_truth.h5",
        output:
            synth_weights(_name),
        log:
            f"logs/{_name}/synth_encoders.log",
        benchmark:
            f"results/benchmarks/{_name}/synth_encoders.tsv"
        conda:
            "../../envs/synth.yaml"
        threads: 2
        resources:
            mem_mb=3000,
            runtime=30,
        script:
            "../../workflow/scripts/synth_encoders.py"
