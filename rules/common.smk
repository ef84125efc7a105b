import copy
import math
import os
import re
import sys

from snakemake.utils import validate

sys.path.insert(0, os.path.join(workflow.basedir, "src"))
# torch-free tables of derived encoders
from visdecode.derived_encoders import BACKBONE, NULL, with_backbones

validate(config, "../workflow/schemas/config.schema.yaml")

# ------------------------------------------------------------------------------ data sets
# config: decode names the data sets this run decodes; datasets holds each one's options (a
# data set's kind owns its files and preparation: rules/datasets/<kind>.smk).
for _name in config["decode"]:
    if _name not in config["datasets"]:
        raise ValueError(
            f"config: decode names '{_name}', which is not under datasets: (known: "
            f"{', '.join(config['datasets'])}); add it there or remove it from decode"
        )
# each its own copy: the schema's defaults are one object shared by every data set lacking a key
config["datasets"] = {name: copy.deepcopy(d) for name, d in config["datasets"].items()}
DATASETS = {name: config["datasets"][name] for name in config["decode"]}
DOWNLOAD = config["download"]
GPU = config["resources"]["gpu"]
SEEDS = config["seeds"]
PAIRS = config["pairs"]
IMAGE_ENCODERS = sorted({p[k] for p in PAIRS for k in ("aligned", "unaligned")})
BRAIN_ENCODERS = sorted({b for d in DATASETS.values() for b in d["brain_encoders"]})
REGIMES = sorted({r for d in DATASETS.values() for r in d["regimes"]})


def of_kind(kind, synthetic=None, fetched=None, **options):
    """The decoded data sets of a kind (optionally: synthetic or not, fetched or not, and
    with these option values)."""
    return [
        name
        for name, d in DATASETS.items()
        if d["kind"] == kind
        and (synthetic is None or d["synthetic"] == synthetic)
        and (fetched is None or fetches(name) == fetched)
        and all(d.get(k) == v for k, v in options.items())
    ]


def fetches(name):
    """Whether the workflow downloads the data set (real data, download.enabled)."""
    return not DATASETS[name]["synthetic"] and DOWNLOAD["enabled"]


def one_of(names):
    """A wildcard constraint matching exactly these names (none: nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def rule_name(step, name):
    """The name of a data set's own rule (those writing into its data_dir)."""
    return f"{step}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"


def data_dir(name):
    return DATASETS[name]["data_dir"]


def subjects(name):
    """A data set's subjects as the {subject} wildcard spells them (01, 02, ...)."""
    return [f"{s:02d}" for s in DATASETS[name]["subjects"]]


def world(name):
    return DATASETS[name].get("world", {})


# The synthetic world's encoder pair is part of the world (made by its synth_encoders rule);
# weights_dir is the cache of every other encoder's downloaded weights.
SYNTH_PAIR = ("synth_resnet18", "synth_resnet18_glocal")


def synth_weights(name):
    return [f"{data_dir(name)}/encoders/{e}.pt" for e in SYNTH_PAIR]


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

# Options that change how a job runs, never what it computes. They are no rule's params, so
# changing one reruns nothing; the scripts read them from the config (config/README.md).
EXECUTION_OPTIONS = {
    "weights_dir": True,
    "download": True,
    "prepare": True,
    "embed": ["batch_size", "workers", "compile"],
    "train": ["threads"],
    "resources": True,
}
# ... and of each data set: where its files come from (every file is checked on arrival)
DATASET_EXECUTION_OPTIONS = ["mirrors"]


def result_options(section=None):
    """The config (or one section of it) without the execution options; of the data sets,
    those decoded."""
    if section == "datasets":
        return {
            name: {k: v for k, v in d.items() if k not in DATASET_EXECUTION_OPTIONS}
            for name, d in DATASETS.items()
        }
    if section is not None:
        drop = EXECUTION_OPTIONS.get(section, [])
        return {k: v for k, v in config[section].items() if k not in drop}
    return {
        k: (
            result_options(k)
            if isinstance(EXECUTION_OPTIONS.get(k), list) or k == "datasets"
            else v
        )
        for k, v in config.items()
        if EXECUTION_OPTIONS.get(k) is not True
    }


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
# Figures are per data set: results/figures/<data set>/<figure>.png
FIGURE = "results/figures/{dataset}/{figure}"
FIGURES = [
    f"results/figures/{name}/{figure}.png"
    for name in DATASETS
    for figure in FIGURE_NAMES
]
TABLES = [f"results/tables/{name}.csv" for name in ("retrieval", "summary", "stats")]
TABLES += ["results/tables/controls.csv"] if CONTROLS else []
FIG = config["figures"]
TOPK = FIG["topk"]


def default_regime(name):
    """The regime a data set's figures explain: intra where configured."""
    regimes = DATASETS[name]["regimes"]
    return "intra" if "intra" in regimes else regimes[0]


def attribution_regime(name):
    return FIG["attribution_regime"] or default_regime(name)


wildcard_constraints:
    tree="|".join(TREES),
    dataset=one_of(DATASETS),
    subject=r"\d\d",
    seed=r"\d+",
    regime="intra|inter",
    brain_encoder="|".join(BRAIN_ENCODERS),
    image_encoder="|".join(with_backbones(RUN_ENCODERS)),
    figure="|".join(FIGURE_NAMES),


def encoder_weights(wildcards):
    """Weights of synthetic encoders are made by the workflow (with the synthetic world); a
    local checkpoint given in config is an input (a new one re-embeds); others are fetched
    into the cache on use."""
    if (
        DATASETS[wildcards.dataset]["synthetic"]
        and wildcards.image_encoder in SYNTH_PAIR
    ):
        return synth_weights(wildcards.dataset)
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
    if DATASETS[wildcards.dataset]["synthetic"] and transform in SYNTH_PAIR:
        return [f"{data_dir(wildcards.dataset)}/encoders/{transform}.pt"]
    return []


# ------------------------------------------------------------------- start-up checks
_dirs, _rules = {}, {}
for _name, _d in DATASETS.items():
    _dirs.setdefault(os.path.normpath(_d["data_dir"]), []).append(_name)
    _rules.setdefault(rule_name("", _name), []).append(_name)
for _names in _dirs.values():
    # the workflow writes a synthetic world's or a fetched data set's files: one owner
    if len(_names) > 1 and any(DATASETS[n]["synthetic"] or fetches(n) for n in _names):
        raise ValueError(
            f"config: data sets {' and '.join(_names)} share data_dir "
            f"{DATASETS[_names[0]]['data_dir']}, and the workflow writes it; give each its own"
        )
for _names in _rules.values():
    if len(_names) > 1:
        raise ValueError(
            f"config: data set names {' and '.join(_names)} differ only in '-', '.' or '_', "
            "which their rules' names cannot tell apart; rename one"
        )
for _name, _d in DATASETS.items():
    if fetches(_name) and not _d["mirrors"]:
        raise ValueError(
            f"config: datasets.{_name}.mirrors is empty; list at least one host "
            "(config/README.md) or set download.enabled: false and put the files in its "
            "data_dir by hand"
        )
    if "inter" in _d["regimes"] and len(_d["subjects"]) < 2:
        raise ValueError(
            f"config: datasets.{_name}: regime 'inter' (leave-one-subject-out) needs at least "
            "2 subjects; add subjects or set regimes: [intra]"
        )
    if FIG["attribution_regime"] and FIG["attribution_regime"] not in _d["regimes"]:
        raise ValueError(
            f"config: figures.attribution_regime '{FIG['attribution_regime']}' is not in "
            f"datasets.{_name}.regimes {_d['regimes']}; add it there or set it to null"
        )
for _name in BRAIN_ENCODERS:
    if _name not in config["train"]["recipes"]:
        raise ValueError(
            f"config: brain encoder '{_name}' has no train.recipes.{_name} entry; add one "
            "(config/README.md lists the published recipes)"
        )


def run_results(wildcards=None, regimes=None):
    """Every run's retrieval result: data sets x their regimes x subjects x brain encoders x
    image encoders x seeds (for regime inter, the subject is the held-out one)."""
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


def brain_file(name, subject):
    """A subject's common brain-data file (every kind's preparation writes it)."""
    return f"results/preprocessed/{name}/sub-{subject}.h5"


def training_brains(wildcards):
    """intra: the subject's own data; inter: every other subject's (leave-one-out)."""
    name = wildcards.dataset
    if wildcards.regime == "intra":
        return [brain_file(name, wildcards.subject)]
    others = [s for s in subjects(name) if s != wildcards.subject]
    if not others:
        raise ValueError(
            f"{name}: regime 'inter' (leave-one-subject-out) needs at least 2 subjects"
        )
    return [brain_file(name, s) for s in others]


def recipe(wildcards):
    """The brain encoder's recipe (train.recipes, with the data set's recipes' keys); for
    regime inter, with train.inter_subject's keys."""
    brain = wildcards.brain_encoder
    base = dict(config["train"]["recipes"][brain])
    base.update(DATASETS[wildcards.dataset]["recipes"].get(brain, {}))
    if wildcards.regime == "inter":
        base.update(config["train"].get("inter_subject", {}).get(brain, {}))
    return base


def run_files(name, regimes=None, trees=("runs",), encoders=None, datasets=None):
    """One file of every run (e.g. metrics.csv, attribution.h5), of every decoded data set
    (or those given), in its own regimes (those of `regimes` it has), subjects and brain
    encoders."""
    files = []
    for ds in datasets or DATASETS:
        d = DATASETS[ds]
        files += expand(
            f"{RUN}/{name}",
            tree=trees,
            dataset=ds,
            regime=[r for r in d["regimes"] if regimes is None or r in regimes],
            subject=subjects(ds),
            brain_encoder=d["brain_encoders"],
            image_encoder=encoders or IMAGE_ENCODERS,
            seed=SEEDS,
        )
    return files


def attribution_files(wildcards):
    name = wildcards.dataset
    return run_files("attribution.h5", [attribution_regime(name)], datasets=[name])


def metrics_files(wildcards):
    return run_files("metrics.csv", datasets=[wildcards.dataset])


def sensor_file(wildcards):
    """A brain file of the data set, for its sensors (names, types, positions)."""
    name = wildcards.dataset
    return brain_file(name, subjects(name)[0])


def topk_choice(name):
    """The runs a data set's retrieval grid shows: figures.topk's choices, null = the first
    configured."""
    d = DATASETS[name]
    pair = TOPK["pair"] or PAIRS[0]["name"]
    pairs = {p["name"]: p for p in PAIRS}
    choice = {
        "regime": TOPK["regime"] or default_regime(name),
        "subject": f"{TOPK['subject'] or d['subjects'][0]:02d}",
        "brain_encoder": TOPK["brain_encoder"] or d["brain_encoders"][0],
        "seed": TOPK["seed"] if TOPK["seed"] is not None else SEEDS[0],
    }
    for key, allowed in (
        ("regime", d["regimes"]),
        ("subject", subjects(name)),
        ("brain_encoder", d["brain_encoders"]),
        ("seed", SEEDS),
    ):
        if choice[key] not in allowed:
            raise ValueError(
                f"config: figures.topk.{key} {choice[key]} is not among data set '{name}'s "
                f"{key}s {allowed}; choose one of them or null"
            )
    if pair not in pairs:
        raise ValueError(
            f"config: figures.topk.pair '{pair}' is not a configured pair; use one of "
            f"{sorted(pairs)} or null"
        )
    return choice, pairs[pair]


def topk_inputs(wildcards):
    name = wildcards.dataset
    choice, pair = topk_choice(name)
    model = f"{RUN}/model.pt"
    files = {
        "brain": brain_file(name, choice["subject"]),
        "images": f"results/images/{name}.tsv",
    }
    for alignment in ("aligned", "unaligned"):
        files[f"{alignment}_model"] = model.format(
            tree="runs", dataset=name, image_encoder=pair[alignment], **choice
        )
        files[f"{alignment}_embeddings"] = (
            f"results/embeddings/{name}/{pair[alignment]}.h5"
        )
    return files


def topk_names(wildcards):
    pair = topk_choice(wildcards.dataset)[1]
    return {a: pair[a] for a in ("aligned", "unaligned")}


if config["controls"]["null_alignment"] and not NULL_PAIRS:
    raise ValueError(
        "config: controls.null_alignment needs a pair whose aligned encoder is a transform of "
        f"its unaligned one (gLocal: {sorted(NULL.values())[0]} with its backbone); none of "
        "the pairs is"
    )
for _name in DATASETS:
    topk_choice(_name)  # fails at start-up on a choice outside the configuration


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


def _averaged_train_mb(path):
    """The size of a brain file's training data once its repetitions are averaged (what
    training holds): conditions x sensors x times float32; 0 when not there yet."""
    import h5py

    if not os.path.exists(path):
        return 0.0
    with h5py.File(path, "r") as f:
        n, _, *rest = f["train"].shape
    return 4 * n * math.prod(rest) / 1e6


def train_mem_mb(wildcards, input, attempt):
    """0.55x the preprocessed files trained on (measured on THINGS-EEG2: 4 repetitions per
    image), but at least 2x their averaged training data (THINGS-MEG has one repetition, so the
    file is mostly what training holds; not measured at full scale), plus 2 GB (the model, the
    embeddings)."""
    files = sum(_size_mb(input.brain))
    averaged = sum(_averaged_train_mb(p) for p in input.brain)
    return int((max(0.55 * files, 2 * averaged) + 2000) * attempt)


def evaluate_mem_mb(wildcards, input, attempt):
    """0.85x the subject's preprocessed file, plus 1 GB."""
    return int((0.85 * _size_mb([input.brain])[0] + 1000) * attempt)
