import os
import sys

from snakemake.utils import validate

sys.path.insert(0, os.path.join(workflow.basedir, "src"))
# torch-free tables of derived encoders
from visdecode.derived_encoders import BACKBONE, NULL, with_backbones

validate(config, "../workflow/schemas/config.schema.yaml")

DATASET = config["dataset"]
DATA_DIR = config["data_dir"]
SYNTHETIC = config["synthetic"]["enabled"]
WORLD = config["synthetic"]["world"]
SUBJECTS = [f"{s:02d}" for s in config["subjects"]]
SEEDS = config["seeds"]
BRAIN_ENCODERS = config["brain_encoders"]
REGIMES = config["regimes"]
PAIRS = config["pairs"]
IMAGE_ENCODERS = sorted({p[k] for p in PAIRS for k in ("aligned", "unaligned")})
# The null-alignment control (controls.null_alignment): for each pair whose aligned encoder is
# a transform of its unaligned one, `null_<aligned>` (the transform's directions randomised)
# is trained and tested too, and compared with the unaligned encoder in controls.csv.
NULL_PAIRS = [
    {"aligned": f"null_{p['aligned']}", "unaligned": p["unaligned"], "pair": p["name"]}
    for p in PAIRS
    if config["controls"]["null_alignment"]
    and f"null_{p['aligned']}" in NULL
    and BACKBONE[p["aligned"]] == p["unaligned"]
]
NULL_ENCODERS = sorted({p["aligned"] for p in NULL_PAIRS})
# gLocal encoders are derived from their backbone's embeddings (rule derive_embeddings);
# the backbones are embedded from the images (rule embed) even when no pair names them.
RUN_ENCODERS = IMAGE_ENCODERS + NULL_ENCODERS
DERIVED_ENCODERS = [e for e in RUN_ENCODERS if e in BACKBONE]
EMBEDDED_ENCODERS = [e for e in with_backbones(RUN_ENCODERS) if e not in BACKBONE]
# The synthetic world's encoder pair is part of the world (made by rule synth_encoders);
# weights_dir is the cache of every other encoder's downloaded weights.
SYNTH_WEIGHTS = f"{DATA_DIR}/encoders"
GPU = config["resources"]["gpu"]
EEG_SOURCE = config["eeg_source"]
DOWNLOAD = config["download"]
FETCH = not SYNTHETIC and DOWNLOAD["enabled"]
# The recording design, one source: THINGS-EEG2 has 4 sessions with 2 training and 20 test
# repetitions per condition and session; the synthetic world records its own numbers.
N_SESSIONS = WORLD["n_sessions"] if SYNTHETIC else 4
RECORDED_TEST_REPS = WORLD["test_reps_per_session"] if SYNTHETIC else 20

# Options that change how a job runs, never what it computes. They are no rule's params, so
# changing one reruns nothing; the scripts read them from the config (config/README.md).
EXECUTION_OPTIONS = {
    "weights_dir": True,
    "download": ["enabled", "timeout", "retries", "keep_archives", "mirrors"],
    "preprocess": ["threads"],
    "embed": ["batch_size", "workers", "compile"],
    "train": ["threads"],
    "resources": True,
}


def result_options(section=None):
    """The config (or one section of it) without the execution options."""
    if section is not None:
        drop = EXECUTION_OPTIONS.get(section, [])
        return {k: v for k, v in config[section].items() if k not in drop}
    return {
        k: (result_options(k) if isinstance(EXECUTION_OPTIONS.get(k), list) else v)
        for k, v in config.items()
        if EXECUTION_OPTIONS.get(k) is not True
    }


def preprocess_options():
    """preprocess's result options, with the sessions and test repetitions of the design
    (test_reps null: every recorded repetition)."""
    options = result_options("preprocess")
    if options.get("test_reps") is None:
        options["test_reps"] = RECORDED_TEST_REPS
    return {**options, "n_sessions": N_SESSIONS}


# Control runs (config: controls): the permutation control's under their own tree.
CONTROLS = [name for name, on in config["controls"].items() if on]
TREES = {"runs": None}
TREES |= {"controls/permutation": "permutation"} if "permutation" in CONTROLS else {}
RUN = "results/{tree}/{dataset}/{regime}/sub-{subject}/{brain_encoder}/{image_encoder}/seed-{seed}"
RUN_ID = RUN.removeprefix("results/")
FIGURE_NAMES = [
    "retrieval_aligned_vs_unaligned",
    "retrieval_per_subject",
    "temporal_importance",
    "spectral_importance",
    "spatial_importance",
    "topk_retrieval",
    "training_curves",
]
FIGURES = {name: f"results/figures/{name}.png" for name in FIGURE_NAMES}
TABLES = [f"results/tables/{name}.csv" for name in ("retrieval", "summary", "stats")]
TABLES += ["results/tables/controls.csv"] if CONTROLS else []
FIG = config["figures"]
TOPK = FIG["topk"]
# Figures explain the runs of one regime: the one chosen, else intra where configured.
DEFAULT_REGIME = "intra" if "intra" in REGIMES else REGIMES[0]
ATTRIBUTION_REGIME = FIG["attribution_regime"] or DEFAULT_REGIME


wildcard_constraints:
    tree="|".join(TREES),
    dataset=r"[A-Za-z0-9_.\-]+",
    subject=r"\d\d",
    seed=r"\d+",
    regime="intra|inter",
    brain_encoder="|".join(BRAIN_ENCODERS),
    image_encoder="|".join(with_backbones(RUN_ENCODERS)),


def raw_paths(subject):
    """The raw session files of one subject (subject may be the "{subject}" wildcard)."""
    return [
        f"{DATA_DIR}/raw_eeg/sub-{subject}/ses-{s:02d}/raw_eeg_{part}.npy"
        for s in range(1, N_SESSIONS + 1)
        for part in ("training", "test")
    ]


def release_paths(subject):
    """The official preprocessed release's files of one subject."""
    return [
        f"{DATA_DIR}/preprocessed_eeg/sub-{subject}/preprocessed_eeg_{part}.npy"
        for part in ("training", "test")
    ]


def release_files(wildcards):
    return release_paths(wildcards.subject)


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
            f"{SYNTH_WEIGHTS}/synth_resnet18.pt",
            f"{SYNTH_WEIGHTS}/synth_resnet18_glocal.pt",
        ]
    local = config.get("local_weights", {}).get(wildcards.image_encoder)
    return [local] if local else []


def backbone_embeddings(wildcards):
    """The cache of the encoder a derived encoder transforms."""
    backbone = BACKBONE[wildcards.image_encoder]
    return f"results/embeddings/{wildcards.dataset}/{backbone}.h5"


def transform_weights(wildcards):
    """A derived encoder's transform: made by the workflow in the synthetic world; otherwise
    fetched into the cache on use."""
    transform = NULL.get(wildcards.image_encoder, wildcards.image_encoder)
    if SYNTHETIC and transform.startswith("synth_"):
        return [f"{SYNTH_WEIGHTS}/{transform}.pt"]
    return []


if SYNTHETIC and EEG_SOURCE != "raw":
    raise ValueError(
        f"config: eeg_source '{EEG_SOURCE}' needs the real data set (the synthetic world "
        "writes raw EEG only); set eeg_source: raw or synthetic.enabled: false"
    )
if FETCH and not DOWNLOAD["mirrors"]:
    raise ValueError(
        "config: download.mirrors is empty; list at least one host (config/README.md) or "
        "set download.enabled: false and put the files in data_dir by hand"
    )
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
    return run_files("retrieval.json", regimes)


def control_results(wildcards=None):
    """What controls.csv compares: the permutation control's runs, the null-alignment
    control's runs and the unaligned runs they face."""
    files = run_files("retrieval.json", trees=[t for t in TREES if TREES[t]])
    if NULL_PAIRS:
        encoders = NULL_ENCODERS + sorted({p["unaligned"] for p in NULL_PAIRS})
        files += run_files("retrieval.json", encoders=encoders)
    return files


def control(wildcards):
    """The control a run belongs to (None: a real run)."""
    return TREES[wildcards.tree]


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


def run_files(name, regimes=None, trees=("runs",), encoders=None):
    """One file of every run (e.g. metrics.csv, attribution.h5)."""
    return expand(
        f"{RUN}/{name}",
        tree=trees,
        dataset=DATASET,
        regime=regimes or REGIMES,
        subject=SUBJECTS,
        brain_encoder=BRAIN_ENCODERS,
        image_encoder=encoders or IMAGE_ENCODERS,
        seed=SEEDS,
    )


def attribution_files(wildcards):
    return run_files("attribution.h5", [ATTRIBUTION_REGIME])


def metrics_files(wildcards):
    return run_files("metrics.csv")


def topk_choice():
    """The runs the retrieval grid shows: figures.topk's choices, null = the first configured."""
    pair = TOPK["pair"] or PAIRS[0]["name"]
    pairs = {p["name"]: p for p in PAIRS}
    choice = {
        "regime": TOPK["regime"] or DEFAULT_REGIME,
        "subject": f"{TOPK['subject'] or config['subjects'][0]:02d}",
        "brain_encoder": TOPK["brain_encoder"] or BRAIN_ENCODERS[0],
        "seed": TOPK["seed"] if TOPK["seed"] is not None else SEEDS[0],
    }
    for key, allowed in (
        ("regime", REGIMES),
        ("subject", SUBJECTS),
        ("brain_encoder", BRAIN_ENCODERS),
        ("seed", SEEDS),
    ):
        if choice[key] not in allowed:
            raise ValueError(
                f"config: figures.topk.{key} {choice[key]} is not among the configured "
                f"{key}s {allowed}; choose one of them or null"
            )
    if pair not in pairs:
        raise ValueError(
            f"config: figures.topk.pair '{pair}' is not a configured pair; use one of "
            f"{sorted(pairs)} or null"
        )
    return choice, pairs[pair]


def topk_inputs(wildcards):
    choice, pair = topk_choice()
    model = f"{RUN}/model.pt"
    files = {
        "brain": f"results/preprocessed/{DATASET}/sub-{choice['subject']}.h5",
        "images": f"results/images/{DATASET}.tsv",
    }
    for alignment in ("aligned", "unaligned"):
        files[f"{alignment}_model"] = model.format(
            tree="runs", dataset=DATASET, image_encoder=pair[alignment], **choice
        )
        files[f"{alignment}_embeddings"] = (
            f"results/embeddings/{DATASET}/{pair[alignment]}.h5"
        )
    return files


if ATTRIBUTION_REGIME not in REGIMES:
    raise ValueError(
        f"config: figures.attribution_regime '{ATTRIBUTION_REGIME}' is not in "
        f"regimes {REGIMES}; add it there, choose one of them or null"
    )
if config["controls"]["null_alignment"] and not NULL_PAIRS:
    raise ValueError(
        "config: controls.null_alignment needs a pair whose aligned encoder is a transform of "
        f"its unaligned one (gLocal: {sorted(NULL.values())[0]} with its backbone); none of "
        "the pairs is"
    )
if SYNTHETIC and preprocess_options()["test_reps"] > RECORDED_TEST_REPS:
    raise ValueError(
        f"config: preprocess.test_reps {config['preprocess']['test_reps']} exceeds the "
        f"{RECORDED_TEST_REPS} test repetitions per session the synthetic world records "
        "(synthetic.world.test_reps_per_session); lower it or set it to null (all)"
    )
topk_choice()  # fails at start-up on a choice outside the configuration


# ---------------------------------------------------------------- resources from data size
# Scales measured at full THINGS-EEG2 size (benchmarks/results/preprocess_full_scale.md,
# paper_scale.md): preprocessing peaks at 1.00x its largest raw file, training at 0.54x one
# subject's preprocessed input, evaluation and attribution at 0.69x (leave-one-subject-out on
# nine subjects was not measured; it is the same scale applied to their sum). Each gets a
# margin and a base, and a retry (restart-times) twice the memory. Sizes are read when the job
# is scheduled.
def _size_mb(paths):
    return [os.path.getsize(p) / 1e6 if os.path.exists(p) else 0.0 for p in paths]


def preprocess_mem_mb(wildcards, input, attempt):
    """1.3x the largest raw session file, plus 1 GB."""
    return int((1.3 * max(_size_mb(input.raw), default=0) + 1000) * attempt)


def train_mem_mb(wildcards, input, attempt):
    """0.5x the preprocessed data trained on, plus 2 GB (the model, the embeddings)."""
    return int((0.5 * sum(_size_mb(input.brain)) + 2000) * attempt)


def evaluate_mem_mb(wildcards, input, attempt):
    """0.85x the subject's preprocessed file, plus 1 GB."""
    return int((0.85 * _size_mb([input.brain])[0] + 1000) * attempt)
