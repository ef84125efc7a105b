rule figure_aligned_vs_unaligned:
    input:
        "results/tables/retrieval.csv",
    output:
        report(
            FIGURES["retrieval_aligned_vs_unaligned"],
            caption="../workflow/report/retrieval_aligned_vs_unaligned.rst",
            category="Figures",
        ),
    log:
        "logs/figures/retrieval_aligned_vs_unaligned.log",
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow/scripts/figure_aligned_vs_unaligned.py"
