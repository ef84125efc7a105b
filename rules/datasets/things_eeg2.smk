# THINGS-EEG2 (kind things-eeg2; visdecode.datasets.things_eeg2): its synthetic world or its
# download into data_dir, then preprocessing (source raw) or the official release's import
# (source official_preprocessed) into the common brain-data file, and its image set.


for _name in of_kind("things-eeg2"):
    _d = DATASETS[_name]
    if not _d["synthetic"] and max(_d["subjects"]) > 10:
        raise ValueError(
            f"config: datasets.{_name}.subjects {_d['subjects']}: THINGS-EEG2 has subjects 1 "
            "to 10"
        )
    if _d["synthetic"] and _d["source"] != "raw":
        raise ValueError(
            f"config: datasets.{_name}.source '{_d['source']}' needs the real data set (the "
            "synthetic world writes raw EEG only); set source: raw or synthetic: false"
        )
    if (
        _d["synthetic"]
        and preprocess_options(_name)["test_reps"] > eeg_sessions(_name)[1]
    ):
        raise ValueError(
            f"config: datasets.{_name}.preprocess.test_reps {_d['preprocess']['test_reps']} "
            f"exceeds the {eeg_sessions(_name)[1]} test repetitions per session the synthetic "
            "world records (world.test_reps_per_session); lower it or set it to null (all)"
        )

# ---------------------------------------------------------------- the synthetic world
for _name in of_kind("things-eeg2", synthetic=True):

    rule:
        name:
            rule_name("synth_images", _name)
        output:
            metadata=eeg_metadata(_name),
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
            "../../workflow/scripts/things_eeg2_synth_images.py"

    rule:
        name:
            rule_name("synth_eeg", _name)
        input:
            truth=f"{data_dir(_name)}/synthetic_truth.h5",
        output:
            raw_paths(_name, "{subject}"),
        log:
            f"logs/{_name}/synth_eeg_sub-{{subject}}.log",
        benchmark:
            f"results/benchmarks/{_name}/synth_eeg_sub-{{subject}}.tsv"
        conda:
            "../../envs/synth.yaml"
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            world=world(_name),
        script:
            "../../workflow/scripts/things_eeg2_synth_eeg.py"


# ---------------------------------------------------------------- the real data set's files
# fetched when download.enabled (hosts: datasets.<name>.mirrors)
for _name in of_kind("things-eeg2", fetched=True):
    _sessions = eeg_sessions(_name)[0]
    for _part, _outputs, _mem, _minutes in (
        ("raw", raw_paths(_name, "{subject}"), 3000, 600),
        ("images", [eeg_metadata(_name)], 2000, 240),
        ("preprocessed", release_paths(_name, "{subject}"), 3000, 120),
    ):
        _what = f"{_part}_sub-{{subject}}" if _part != "images" else _part

        rule:
            name:
                rule_name(f"download_{_part}", _name)
            output:
                _outputs,
            log:
                f"logs/{_name}/download_{_what}.log",
            benchmark:
                f"results/benchmarks/{_name}/download_{_what}.tsv"
            conda:
                "../../envs/download.yaml"
            resources:
                mem_mb=_mem,
                runtime=_minutes,
            params:
                kind="things-eeg2",
                part=_part,
                data_dir=data_dir(_name),
                dataset=_name,
                layout={"n_sessions": _sessions},
            script:
                "../../workflow/scripts/download.py"


# ---------------------------------------------------------------- preparation
rule things_eeg2_preprocess:
    input:
        raw=lambda w: raw_paths(w.dataset, w.subject),
        metadata=lambda w: eeg_metadata(w.dataset),
    output:
        "results/preprocessed/{dataset}/sub-{subject}.h5",
    log:
        "logs/preprocess/{dataset}/sub-{subject}.log",
    benchmark:
        "results/benchmarks/preprocess/{dataset}/sub-{subject}.tsv"
    wildcard_constraints:
        dataset=one_of(of_kind("things-eeg2", source="raw")),
    conda:
        "../../envs/preprocess.yaml"
    threads: config["prepare"]["threads"]
    resources:
        mem_mb=preprocess_mem_mb,
        runtime=60,
    params:
        options=lambda w: preprocess_options(w.dataset),
    script:
        "../../workflow/scripts/things_eeg2_preprocess.py"


rule things_eeg2_import_release:
    input:
        release=lambda w: release_paths(w.dataset, w.subject),
        metadata=lambda w: eeg_metadata(w.dataset),
    output:
        "results/preprocessed/{dataset}/sub-{subject}.h5",
    log:
        "logs/preprocess/{dataset}/sub-{subject}.log",
    benchmark:
        "results/benchmarks/preprocess/{dataset}/sub-{subject}.tsv"
    wildcard_constraints:
        dataset=one_of(of_kind("things-eeg2", source="official_preprocessed")),
    conda:
        "../../envs/preprocess.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../../workflow/scripts/things_eeg2_import_release.py"


rule things_eeg2_image_set:
    input:
        metadata=lambda w: eeg_metadata(w.dataset),
    output:
        "results/images/{dataset}.tsv",
    log:
        "logs/image_set/{dataset}.log",
    benchmark:
        "results/benchmarks/image_set/{dataset}.tsv"
    wildcard_constraints:
        dataset=one_of(of_kind("things-eeg2")),
    conda:
        "../../envs/embed.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../../workflow/scripts/things_eeg2_image_set.py"
