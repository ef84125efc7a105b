# THINGS-MEG (kind things-meg; visdecode.datasets.things_meg): its synthetic world or its
# download into data_dir (OpenNeuro ds004212's preprocessed derivative), then preparation into
# the common brain-data file, and its image set (the THINGS images: images_dir).


for _name in of_kind("things-meg"):
    _window = DATASETS[_name]["prepare"]
    if not _window["tmin"] < _window["tmax"]:
        raise ValueError(
            f"config: datasets.{_name}.prepare: tmin {_window['tmin']} is not below tmax "
            f"{_window['tmax']}; the published window is 0.0..1.0 s"
        )
for _name in of_kind("things-meg", synthetic=False):
    if max(DATASETS[_name]["subjects"]) > 4:
        raise ValueError(
            f"config: datasets.{_name}.subjects {DATASETS[_name]['subjects']}: THINGS-MEG has "
            "participants 1 to 4"
        )
    if not DATASETS[_name]["images_dir"]:
        raise ValueError(
            f"config: datasets.{_name}.images_dir is not set; the THINGS images are not part "
            "of ds004212: get the THINGS image database (https://things-initiative.org, "
            "password-protected) and give the folder holding images_meg/ and images_test_meg/"
        )

# ---------------------------------------------------------------- the synthetic world
for _name in of_kind("things-meg", synthetic=True):

    rule:
        name:
            rule_name("synth_images", _name)
        output:
            truth=f"{data_dir(_name)}/synthetic_truth.h5",
        log:
            f"logs/{_name}/synth_images.log",
        benchmark:
            f"results/benchmarks/{_name}/synth_images.tsv"
        conda:
            "../../envs/synth.yaml"
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            world=world(_name),
        script:
            "../../workflow/scripts/things_meg_synth_images.py"

    rule:
        name:
            rule_name("synth_meg", _name)
        input:
            truth=f"{data_dir(_name)}/synthetic_truth.h5",
        output:
            csv=meg_csv(_name, "{subject}"),
            epochs=meg_epochs(_name, "{subject}"),
        log:
            f"logs/{_name}/synth_meg_P{{subject}}.log",
        benchmark:
            f"results/benchmarks/{_name}/synth_meg_P{{subject}}.tsv"
        wildcard_constraints:
            subject=r"\d+",
        conda:
            "../../envs/synth.yaml"
        resources:
            mem_mb=3000,
            runtime=30,
        params:
            world=world(_name),
        script:
            "../../workflow/scripts/things_meg_synth_meg.py"


# ---------------------------------------------------------------- the real data set's files
# fetched when download.enabled (hosts: datasets.<name>.mirrors; OpenNeuro by default)
for _name in of_kind("things-meg", fetched=True):

    rule:
        name:
            rule_name("download_participant", _name)
        output:
            csv=meg_csv(_name, "{subject}"),
            epochs=meg_epochs(_name, "{subject}"),
        log:
            f"logs/{_name}/download_P{{subject}}.log",
        benchmark:
            f"results/benchmarks/{_name}/download_P{{subject}}.tsv"
        wildcard_constraints:
            subject=r"\d+",
        conda:
            "../../envs/download.yaml"
        resources:
            mem_mb=3000,
            runtime=600,
        params:
            kind="things-meg",
            part="participant",
            data_dir=data_dir(_name),
            dataset=_name,
            layout={},
        script:
            "../../workflow/scripts/download.py"


# ---------------------------------------------------------------- preparation
rule things_meg_prepare:
    input:
        csv=lambda w: meg_csv(w.dataset, int(w.subject)),
        epochs=lambda w: meg_epochs(w.dataset, int(w.subject)),
    output:
        "results/preprocessed/{dataset}/sub-{subject}.h5",
    log:
        "logs/preprocess/{dataset}/sub-{subject}.log",
    benchmark:
        "results/benchmarks/preprocess/{dataset}/sub-{subject}.tsv"
    wildcard_constraints:
        dataset=one_of(of_kind("things-meg")),
    conda:
        "../../envs/preprocess.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        data_dir=lambda w: data_dir(w.dataset),
        options=lambda w: DATASETS[w.dataset]["prepare"],
    script:
        "../../workflow/scripts/things_meg_prepare.py"


rule things_meg_image_set:
    input:
        csv=lambda w: meg_csv(w.dataset, meg_subject(w.dataset)),
        truth=lambda w: (
            [f"{data_dir(w.dataset)}/synthetic_truth.h5"]
            if DATASETS[w.dataset]["synthetic"]
            else []
        ),
    output:
        "results/images/{dataset}.tsv",
    log:
        "logs/image_set/{dataset}.log",
    benchmark:
        "results/benchmarks/image_set/{dataset}.tsv"
    wildcard_constraints:
        dataset=one_of(of_kind("things-meg")),
    conda:
        "../../envs/preprocess.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        images_dir=lambda w: meg_images_dir(w.dataset),
    script:
        "../../workflow/scripts/things_meg_image_set.py"
