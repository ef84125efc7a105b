rule figure_retrieval_aligned_vs_unaligned:
    input:
        table="results/tables/retrieval.csv",
        stats="results/tables/stats.csv",
    output:
        report(
            "results/figures/retrieval_aligned_vs_unaligned.png",
            caption="../workflow/report/retrieval_aligned_vs_unaligned.rst",
            category="Figures",
        ),
        "results/figures/retrieval_aligned_vs_unaligned.pdf",
    log:
        "logs/figures/retrieval_aligned_vs_unaligned.log",
    benchmark:
        "results/benchmarks/figures/retrieval_aligned_vs_unaligned.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dpi=FIG["dpi"],
        test=FIG["significance_test"],
    script:
        "../workflow/scripts/figure_retrieval_aligned_vs_unaligned.py"


rule figure_retrieval_per_subject:
    input:
        table="results/tables/retrieval.csv",
    output:
        report(
            "results/figures/retrieval_per_subject.png",
            caption="../workflow/report/retrieval_per_subject.rst",
            category="Figures",
        ),
        "results/figures/retrieval_per_subject.pdf",
    log:
        "logs/figures/retrieval_per_subject.log",
    benchmark:
        "results/benchmarks/figures/retrieval_per_subject.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dpi=FIG["dpi"],
    script:
        "../workflow/scripts/figure_retrieval_per_subject.py"


rule figure_temporal_importance:
    input:
        attribution_files,
    output:
        report(
            "results/figures/temporal_importance.png",
            caption="../workflow/report/temporal_importance.rst",
            category="Figures",
        ),
        "results/figures/temporal_importance.pdf",
    log:
        "logs/figures/temporal_importance.log",
    benchmark:
        "results/benchmarks/figures/temporal_importance.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dpi=FIG["dpi"],
        pairs=PAIRS,
    script:
        "../workflow/scripts/figure_temporal_importance.py"


rule figure_spectral_importance:
    input:
        attribution_files,
    output:
        report(
            "results/figures/spectral_importance.png",
            caption="../workflow/report/spectral_importance.rst",
            category="Figures",
        ),
        "results/figures/spectral_importance.pdf",
    log:
        "logs/figures/spectral_importance.log",
    benchmark:
        "results/benchmarks/figures/spectral_importance.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dpi=FIG["dpi"],
        pairs=PAIRS,
    script:
        "../workflow/scripts/figure_spectral_importance.py"


rule figure_spatial_importance:
    input:
        attribution_files,
    output:
        report(
            "results/figures/spatial_importance.png",
            caption="../workflow/report/spatial_importance.rst",
            category="Figures",
        ),
        "results/figures/spatial_importance.pdf",
    log:
        "logs/figures/spatial_importance.log",
    benchmark:
        "results/benchmarks/figures/spatial_importance.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dpi=FIG["dpi"],
        pairs=PAIRS,
    script:
        "../workflow/scripts/figure_spatial_importance.py"


rule figure_topk_retrieval:
    input:
        unpack(topk_inputs),
    output:
        report(
            "results/figures/topk_retrieval.png",
            caption="../workflow/report/topk_retrieval.rst",
            category="Figures",
        ),
        "results/figures/topk_retrieval.pdf",
    log:
        "logs/figures/topk_retrieval.log",
    benchmark:
        "results/benchmarks/figures/topk_retrieval.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        dpi=FIG["dpi"],
        queries=TOPK["queries"],
        k=TOPK["k"],
        names=lambda wildcards: {
            a: topk_choice()[1][a] for a in ("aligned", "unaligned")
        },
    script:
        "../workflow/scripts/figure_topk_retrieval.py"


rule figure_training_curves:
    input:
        metrics_files,
    output:
        report(
            "results/figures/training_curves.png",
            caption="../workflow/report/training_curves.rst",
            category="Figures",
        ),
        "results/figures/training_curves.pdf",
    log:
        "logs/figures/training_curves.log",
    benchmark:
        "results/benchmarks/figures/training_curves.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dpi=FIG["dpi"],
        pairs=PAIRS,
    script:
        "../workflow/scripts/figure_training_curves.py"
