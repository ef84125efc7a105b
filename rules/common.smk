from snakemake.utils import validate

validate(config, "../workflow/schemas/config.schema.yaml")

DATASET = config["dataset"]
DATA_DIR = config["data_dir"]
WEIGHTS_DIR = config["weights_dir"]
SYNTHETIC = config["synthetic"]["enabled"]
SUBJECTS = [f"{s:02d}" for s in config["subjects"]]
SEEDS = config["seeds"]
BRAIN_ENCODERS = config["brain_encoders"]
REGIMES = config["regimes"]
PAIRS = config["pairs"]
IMAGE_ENCODERS = sorted({p[k] for p in PAIRS for k in ("aligned", "unaligned")})
N_SESSIONS = config["preprocess"]["n_sessions"]
GPU = config["resources"]["gpu"]

RUN = "results/runs/{dataset}/{regime}/sub-{subject}/{brain_encoder}/{image_encoder}/seed-{seed}"
FIGURES = {
    "retrieval_aligned_vs_unaligned": "results/figures/retrieval_aligned_vs_unaligned.png",
}


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.\-]+",
    subject=r"\d\d",
    seed=r"\d+",
    regime="intra|inter",
    brain_encoder="|".join(BRAIN_ENCODERS),
    image_encoder="|".join(IMAGE_ENCODERS),


def raw_paths(subject):
    """The raw session files of one subject (subject may be the "{subject}" wildcard)."""
    return [
        f"{DATA_DIR}/raw_eeg/sub-{subject}/ses-{s:02d}/raw_eeg_{part}.npy"
        for s in range(1, N_SESSIONS + 1)
        for part in ("training", "test")
    ]


def raw_files(wildcards):
    return raw_paths(wildcards.subject)


def image_metadata():
    return f"{DATA_DIR}/images/image_metadata.npy"


def encoder_weights(wildcards):
    """Weights of synthetic encoders are made by the workflow; a local checkpoint given in
    config is an input (a new one re-embeds); others are fetched into the cache on use.
    """
    if SYNTHETIC and wildcards.image_encoder.startswith("synth_"):
        return [
            f"{WEIGHTS_DIR}/synth_resnet18.pt",
            f"{WEIGHTS_DIR}/synth_resnet18_glocal.pt",
        ]
    local = local_weights(wildcards)
    return [local] if local else []


def local_weights(wildcards):
    return config.get("local_weights", {}).get(wildcards.image_encoder)


if "inter" in REGIMES and len(SUBJECTS) < 2:
    raise ValueError(
        "config: regime 'inter' (leave-one-subject-out) needs at least 2 subjects; "
        "add subjects or set regimes: [intra]"
    )
for _name in BRAIN_ENCODERS:
    if _name not in config["train"]["recipes"]:
        raise ValueError(
            f"config: brain encoder '{_name}' has no train.recipes.{_name} entry; add one "
            "(config/README.md lists the published recipes)"
        )


def run_results(wildcards=None, regimes=None):
    """Every run's retrieval result: regimes x subjects x brain encoders x image encoders x
    seeds (for regime inter, the subject is the held-out one)."""
    return expand(
        f"{RUN}/retrieval.json",
        dataset=DATASET,
        regime=regimes or REGIMES,
        subject=SUBJECTS,
        brain_encoder=BRAIN_ENCODERS,
        image_encoder=IMAGE_ENCODERS,
        seed=SEEDS,
    )


def training_brains(wildcards):
    """intra: the subject's own data; inter: every other subject's (leave-one-out)."""
    if wildcards.regime == "intra":
        return [f"results/preprocessed/{wildcards.dataset}/sub-{wildcards.subject}.h5"]
    if len(SUBJECTS) < 2:
        raise ValueError(
            "regime 'inter' (leave-one-subject-out) needs at least 2 subjects"
        )
    return [
        f"results/preprocessed/{wildcards.dataset}/sub-{s}.h5"
        for s in SUBJECTS
        if s != wildcards.subject
    ]


def recipe(wildcards):
    """The brain encoder's recipe; for regime inter, with train.inter_subject's keys."""
    base = dict(config["train"]["recipes"][wildcards.brain_encoder])
    if wildcards.regime == "inter":
        base.update(
            config["train"].get("inter_subject", {}).get(wildcards.brain_encoder, {})
        )
    return base
