rule summary_table:
    input:
        "results/tables/retrieval.csv",
    output:
        report(
            "results/tables/summary.csv",
            caption="../workflow/report/summary_table.rst",
            category="Tables",
        ),
    log:
        "logs/tables/summary.log",
    benchmark:
        "results/benchmarks/tables/summary.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow/scripts/summary_table.py"


rule stats_table:
    input:
        "results/tables/retrieval.csv",
    output:
        report(
            "results/tables/stats.csv",
            caption="../workflow/report/stats_table.rst",
            category="Tables",
        ),
    log:
        "logs/tables/stats.log",
    benchmark:
        "results/benchmarks/tables/stats.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        correction=config["stats"]["correction"],
    script:
        "../workflow/scripts/stats_table.py"


rule config_used:
    """The configuration of this run, defaults filled in, for the report."""
    output:
        report(
            "results/config.yaml",
            caption="../workflow/report/config_used.rst",
            category="Configuration",
        ),
    log:
        "logs/tables/config_used.log",
    benchmark:
        "results/benchmarks/tables/config_used.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    params:
        config=result_options(),
    script:
        "../workflow/scripts/config_used.py"


rule controls_table:
    input:
        control_results,
    output:
        report(
            "results/tables/controls.csv",
            caption="../workflow/report/controls_table.rst",
            category="Tables",
        ),
    log:
        "logs/tables/controls.log",
    benchmark:
        "results/benchmarks/tables/controls.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        null_pairs=NULL_PAIRS,
    script:
        "../workflow/scripts/controls_table.py"
