# Input functions and options of each kind's rules (rules/datasets/<kind>.smk), kept apart
# from the rules as Snakemake's style asks.


# ------------------------------------------------------------------------ things-eeg2
def eeg_sessions(name):
    """The recording design, one source: THINGS-EEG2 has 4 sessions with 20 test repetitions
    per session; the synthetic world records its own numbers."""
    if DATASETS[name]["synthetic"]:
        w = world(name)
        return w.get("n_sessions", 4), w.get("test_reps_per_session", 20)
    return 4, 20


def raw_paths(name, subject):
    """The raw session files of one subject (subject may be the "{subject}" wildcard)."""
    return [
        f"{data_dir(name)}/raw_eeg/sub-{subject}/ses-{s:02d}/raw_eeg_{part}.npy"
        for s in range(1, eeg_sessions(name)[0] + 1)
        for part in ("training", "test")
    ]


def release_paths(name, subject):
    """The official preprocessed release's files of one subject."""
    return [
        f"{data_dir(name)}/preprocessed_eeg/sub-{subject}/preprocessed_eeg_{part}.npy"
        for part in ("training", "test")
    ]


def eeg_metadata(name):
    return f"{data_dir(name)}/images/image_metadata.npy"


def preprocess_options(name):
    """The data set's preprocess options, with the sessions and test repetitions of the
    design (test_reps null: every recorded repetition)."""
    options = dict(DATASETS[name]["preprocess"])
    sessions, recorded = eeg_sessions(name)
    if options.get("test_reps") is None:
        options["test_reps"] = recorded
    return {**options, "n_sessions": sessions}


# ------------------------------------------------------------------------ things-meg
def meg_csv(name, subject):
    return f"{data_dir(name)}/sourcedata/sample_attributes_P{subject}.csv"


def meg_epochs(name, subject):
    return f"{data_dir(name)}/derivatives/preprocessed/preprocessed_P{subject}-epo.fif"


def meg_images_dir(name):
    """The THINGS images: the world's own folder, else the user's images_dir."""
    d = DATASETS[name]
    return data_dir(name) if d["synthetic"] else d["images_dir"]


def meg_subject(name):
    """The participant whose sample attributes list the image set: every participant sees the
    same images; the lowest configured, so reordering subjects reruns nothing."""
    return min(DATASETS[name]["subjects"])
