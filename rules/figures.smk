rule figure_retrieval_aligned_vs_unaligned:
    input:
        table="results/tables/retrieval.csv",
        stats="results/tables/stats.csv",
    output:
        report(
            "results/figures/{dataset}/retrieval_aligned_vs_unaligned.png",
            caption="../workflow/report/retrieval_aligned_vs_unaligned.rst",
            category="{dataset}",
            subcategory="Figures",
        ),
        "results/figures/{dataset}/retrieval_aligned_vs_unaligned.pdf",
    log:
        "logs/figures/{dataset}/retrieval_aligned_vs_unaligned.log",
    benchmark:
        "results/benchmarks/figures/{dataset}/retrieval_aligned_vs_unaligned.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dpi=FIG["dpi"],
        dataset=lambda w: w.dataset,
        test=FIG["significance_test"],
    script:
        "../workflow/scripts/figure_retrieval_aligned_vs_unaligned.py"


rule figure_retrieval_per_subject:
    input:
        table="results/tables/retrieval.csv",
    output:
        report(
            "results/figures/{dataset}/retrieval_per_subject.png",
            caption="../workflow/report/retrieval_per_subject.rst",
            category="{dataset}",
            subcategory="Figures",
        ),
        "results/figures/{dataset}/retrieval_per_subject.pdf",
    log:
        "logs/figures/{dataset}/retrieval_per_subject.log",
    benchmark:
        "results/benchmarks/figures/{dataset}/retrieval_per_subject.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dpi=FIG["dpi"],
        dataset=lambda w: w.dataset,
    script:
        "../workflow/scripts/figure_retrieval_per_subject.py"


rule figure_temporal_importance:
    input:
        attribution_files,
    output:
        report(
            "results/figures/{dataset}/temporal_importance.png",
            caption="../workflow/report/temporal_importance.rst",
            category="{dataset}",
            subcategory="Figures",
        ),
        "results/figures/{dataset}/temporal_importance.pdf",
    log:
        "logs/figures/{dataset}/temporal_importance.log",
    benchmark:
        "results/benchmarks/figures/{dataset}/temporal_importance.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dpi=FIG["dpi"],
        dataset=lambda w: w.dataset,
        pairs=PAIRS,
    script:
        "../workflow/scripts/figure_temporal_importance.py"


rule figure_spectral_importance:
    input:
        attribution_files,
    output:
        report(
            "results/figures/{dataset}/spectral_importance.png",
            caption="../workflow/report/spectral_importance.rst",
            category="{dataset}",
            subcategory="Figures",
        ),
        "results/figures/{dataset}/spectral_importance.pdf",
    log:
        "logs/figures/{dataset}/spectral_importance.log",
    benchmark:
        "results/benchmarks/figures/{dataset}/spectral_importance.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dpi=FIG["dpi"],
        dataset=lambda w: w.dataset,
        pairs=PAIRS,
    script:
        "../workflow/scripts/figure_spectral_importance.py"


rule figure_spatial_importance:
    input:
        attributions=attribution_files,
        sensors=sensor_file,
    output:
        report(
            "results/figures/{dataset}/spatial_importance.png",
            caption="../workflow/report/spatial_importance.rst",
            category="{dataset}",
            subcategory="Figures",
        ),
        "results/figures/{dataset}/spatial_importance.pdf",
    log:
        "logs/figures/{dataset}/spatial_importance.log",
    benchmark:
        "results/benchmarks/figures/{dataset}/spatial_importance.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dpi=FIG["dpi"],
        dataset=lambda w: w.dataset,
        pairs=PAIRS,
    script:
        "../workflow/scripts/figure_spatial_importance.py"


rule figure_topk_retrieval:
    input:
        unpack(topk_inputs),
    output:
        report(
            "results/figures/{dataset}/topk_retrieval.png",
            caption="../workflow/report/topk_retrieval.rst",
            category="{dataset}",
            subcategory="Figures",
        ),
        "results/figures/{dataset}/topk_retrieval.pdf",
    log:
        "logs/figures/{dataset}/topk_retrieval.log",
    benchmark:
        "results/benchmarks/figures/{dataset}/topk_retrieval.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        dpi=FIG["dpi"],
        dataset=lambda w: w.dataset,
        queries=TOPK["queries"],
        k=TOPK["k"],
        names=topk_names,
    script:
        "../workflow/scripts/figure_topk_retrieval.py"


rule figure_training_curves:
    input:
        metrics_files,
    output:
        report(
            "results/figures/{dataset}/training_curves.png",
            caption="../workflow/report/training_curves.rst",
            category="{dataset}",
            subcategory="Figures",
        ),
        "results/figures/{dataset}/training_curves.pdf",
    log:
        "logs/figures/{dataset}/training_curves.log",
    benchmark:
        "results/benchmarks/figures/{dataset}/training_curves.tsv"
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        dpi=FIG["dpi"],
        dataset=lambda w: w.dataset,
        pairs=PAIRS,
    script:
        "../workflow/scripts/figure_training_curves.py"
