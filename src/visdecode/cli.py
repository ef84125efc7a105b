"""`visdecode <stage>`: every pipeline stage from the shell; the Snakemake rules call the same code."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

from visdecode.datasets import KINDS
from visdecode.errors import InputError
from visdecode.io import setup_logging

log = logging.getLogger("visdecode")
FIGURES = [
    "retrieval_aligned_vs_unaligned", "retrieval_per_subject", "temporal_importance",
    "spectral_importance", "spatial_importance", "topk_retrieval", "training_curves",
]  # fmt: skip


# per kind: synth's brain-data part and the function writing one subject of it
SYNTH_BRAIN = {"things-eeg2": ("eeg", "write_subject"), "things-meg": ("meg", "write_participant")}


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _synth(a: argparse.Namespace) -> None:
    from visdecode import datasets
    from visdecode.datasets import synthetic_things

    brain, write_subject = SYNTH_BRAIN[a.kind]
    if a.part in ("eeg", "meg") and a.part != brain:
        raise InputError(f"synth {a.part}: {a.kind} records {brain.upper()}; its part is '{brain}'")
    synth = datasets.module(a.kind, "synth")
    try:
        world = yaml.safe_load(a.world) if a.world else {}
        if not isinstance(world, dict):
            raise ValueError(f"{a.world!r} is not a mapping of world options")
        cfg = synth.WorldConfig.from_dict(world)
    except (yaml.YAMLError, ValueError) as err:
        raise InputError(f"--world: {_one_line(err)}") from None
    root = Path(a.root)
    if a.part in ("images", "all"):
        synth.write_images_atomic(root, cfg)
    if a.part != "images" and not (root / "synthetic_truth.h5").is_file():
        raise InputError(
            f"{root / 'synthetic_truth.h5'}: not found; write the world's images first "
            f"(`visdecode synth images --kind {a.kind}`)"
        )
    if a.part in ("encoders", "all"):
        fit = synthetic_things.write_encoders(root, a.weights_dir)
        log.info("synthetic encoder pair written: %s", fit)
    if a.part in (brain, "all"):
        subjects = a.subject or [1, 2]
        for subject in subjects:
            getattr(synth, write_subject)(root, subject, cfg)


def _mirrors(path: str, kind: str) -> list[dict]:
    """The hosts in a YAML file: the list itself, or a config file's datasets.<name>.mirrors of
    the one data set of `kind` that lists them (or the former download.mirrors)."""
    if not Path(path).is_file():
        raise InputError(f"{path}: mirrors file not found")
    try:
        cfg = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not YAML ({_one_line(err)})") from None
    if isinstance(cfg, list):
        return cfg
    cfg = cfg if isinstance(cfg, dict) else {}
    found = {
        name: d["mirrors"] for name, d in (cfg.get("datasets") or {}).items()
        if isinstance(d, dict) and d.get("kind") == kind and d.get("mirrors")
    }  # fmt: skip
    if len(found) == 1:
        return next(iter(found.values()))
    if len(found) > 1:
        raise InputError(
            f"{path}: data sets {', '.join(sorted(found))} of kind {kind} list mirrors; give "
            "one list of hosts instead"
        )
    if isinstance(cfg.get("download"), dict) and cfg["download"].get("mirrors"):
        return cfg["download"]["mirrors"]
    raise InputError(
        f"{path}: no mirrors of a {kind} data set (datasets.<name>.mirrors) in it; give that "
        "or the list of hosts itself (without --mirrors: the kind's default hosts)"
    )


def _download(a: argparse.Namespace) -> None:
    from visdecode import datasets, download

    sources = datasets.module(a.kind, "sources")
    part = a.part or (next(iter(sources.PARTS)) if len(sources.PARTS) == 1 else None)
    if part not in sources.PARTS:
        given = f" {part}" if part else ""
        raise InputError(f"download{given}: {a.kind}'s parts are {', '.join(sources.PARTS)}")
    mirrors = _mirrors(a.mirrors, a.kind) if a.mirrors else sources.DEFAULT_MIRRORS
    if sources.PARTS[part].per_subject and not a.subject:
        raise InputError(f"download {part}: give --subject")
    layout = {}
    if a.kind == "things-eeg2":
        layout["n_sessions"] = a.sessions or 4
    elif a.sessions:
        raise InputError(f"download: --sessions is for things-eeg2's raw EEG, not {a.kind}")
    download.fetch(
        sources,
        part,
        a.data_dir,
        mirrors,
        subject=a.subject,
        timeout=a.timeout,
        retries=a.retries,
        keep_archives=a.keep_archives,
        **layout,
    )


def _import_release(a: argparse.Namespace) -> None:
    from visdecode.datasets.things_eeg2 import release

    release.run(a.data_dir, a.subject, a.out)


def _preprocess(a: argparse.Namespace) -> None:
    from visdecode.datasets.things_eeg2 import preprocess

    params = preprocess.Params(
        mvnn=a.mvnn,
        cov_fit=a.cov_fit,
        channels=a.channels,
        tmin=a.tmin,
        tmax=a.tmax,
        baseline=(None if a.baseline[0] == "none" else float(a.baseline[0]), float(a.baseline[1])),
        sfreq=a.sfreq,
        drop_samples=a.drop_samples,
        train_reps=a.train_reps,
        test_reps=a.test_reps,
        n_sessions=a.sessions,
        seed=a.seed,
    )
    preprocess.run(a.raw_dir, a.subject, a.out, params, threads=a.threads)


def _prepare(a: argparse.Namespace) -> None:
    if a.kind == "things-eeg2":
        raise InputError(
            "prepare things-eeg2: its EEG is prepared by `visdecode preprocess` (raw sessions) "
            "or `visdecode import-release` (the official preprocessed release)"
        )
    from visdecode.datasets.things_meg import prepare

    prepare.run(a.data_dir, a.subject, a.out, tmin=a.tmin, tmax=a.tmax)


def _image_set(a: argparse.Namespace) -> None:
    from visdecode import image_sets
    from visdecode.datasets.things_eeg2 import format as things_eeg2
    from visdecode.datasets.things_meg import format as things_meg

    if a.kind == "things-eeg2":
        images = things_eeg2.image_set(a.images_dir)
        how = things_eeg2.IMAGES_HOW
    else:
        if not a.attributes:
            raise InputError("image-set things-meg: give --attributes (a sample_attributes CSV)")
        images = things_meg.image_set(things_meg.read_attributes(a.attributes), a.images_dir)
        how = things_meg.IMAGES_HOW
    image_sets.write(a.out, images, a.images_dir, how)


def _embed(a: argparse.Namespace) -> None:
    from visdecode import embed

    embed.run(
        a.encoder,
        a.images,
        a.weights_dir,
        a.out,
        a.batch_size,
        a.workers,
        a.local_weights,
        a.compile,
    )


def _derive_embeddings(a: argparse.Namespace) -> None:
    from visdecode import embed

    embed.derive(a.encoder, a.backbone_embeddings, a.weights_dir, a.out)


def _train(a: argparse.Namespace) -> None:
    from visdecode import train

    recipe = train.Recipe(**(yaml.safe_load(a.recipe) if a.recipe else {}))
    regime = "inter" if len(a.brain) > 1 or a.test_subject is not None else "intra"
    train.run(
        a.brain, a.embeddings, a.brain_encoder, a.seed, a.out_dir, recipe, a.threads,
        regime=regime, test_subject=a.test_subject, val_split=a.val_split, permute=a.permute,
        selection=a.selection,
    )  # fmt: skip


def _evaluate(a: argparse.Namespace) -> None:
    from visdecode import evaluate

    meta = json.loads(a.meta) if a.meta else {}
    result = evaluate.run(a.model, a.brain, a.embeddings, a.out, meta, a.n_way)
    print(json.dumps(result))


def _table(a: argparse.Namespace) -> None:
    from visdecode import evaluate

    pairs = yaml.safe_load(Path(a.pairs).read_text())
    evaluate.table(a.runs, pairs, a.out)


def _summary(a: argparse.Namespace) -> None:
    from visdecode import tables

    tables.write_summary(a.table, a.out)


def _stats(a: argparse.Namespace) -> None:
    from visdecode import tables

    tables.write_statistics(a.table, a.out, a.correction)


def _controls(a: argparse.Namespace) -> None:
    from visdecode import tables

    null_pairs = [{"aligned": n, "unaligned": u} for n, u in a.null_pair or []]
    tables.write_controls(a.runs, a.out, null_pairs)


def _attribution(a: argparse.Namespace) -> None:
    from visdecode import attribution

    attribution.run(a.model, a.brain, a.embeddings, a.out)


def _figure(a: argparse.Namespace) -> None:
    from visdecode import figures

    def need(*names):
        missing = [f"--{n.replace('_', '-')}" for n in names if not getattr(a, n)]
        if missing:
            raise InputError(f"figure {a.name} needs {' '.join(missing)}")

    if a.sensors and a.name != "spatial_importance":
        raise InputError(f"figure {a.name}: --sensors is for spatial_importance only")
    if a.sensors and not Path(a.sensors).is_file():
        raise InputError(f"{a.sensors}: brain-data file not found (--sensors)")
    pairs = yaml.safe_load(Path(a.pairs).read_text()) if a.pairs else None
    dataset = a.dataset
    if a.name == "retrieval_aligned_vs_unaligned":
        need("table", "stats")
        figures.aligned_vs_unaligned(a.table, a.stats, a.out, a.dpi, a.test, dataset=dataset)
    elif a.name == "retrieval_per_subject":
        need("table")
        figures.per_subject(a.table, a.out, a.dpi, dataset=dataset)
    elif a.name in ("temporal_importance", "spectral_importance"):
        need("attributions", "pairs")
        getattr(figures, a.name)(a.attributions, pairs, a.out, a.dpi, dataset=dataset)
    elif a.name == "spatial_importance":
        need("attributions", "pairs")
        figures.spatial_importance(
            a.attributions, pairs, a.out, a.dpi, sensors=a.sensors, dataset=dataset
        )
    elif a.name == "training_curves":
        need("metrics", "pairs")
        figures.training_curves(a.metrics, pairs, a.out, a.dpi, dataset=dataset)
    else:  # topk_retrieval
        need("brain", "images", "aligned", "unaligned")
        runs = {
            alignment: {"model": model, "embeddings": emb, "name": Path(emb).stem}
            for alignment, (model, emb) in (("aligned", a.aligned), ("unaligned", a.unaligned))
        }
        queries = a.queries[0] if len(a.queries) == 1 and not a.query_indices else a.queries
        figures.topk_grid(runs, a.brain, a.images, a.out, queries, a.k, a.dpi, dataset=dataset)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="visdecode", description=__doc__)
    p.add_argument("--log", help="also write the log to this file")
    sub = p.add_subparsers(dest="stage", required=True, metavar="STAGE")

    s = sub.add_parser("synth", help="write a synthetic world (THINGS-EEG2 or THINGS-MEG)")
    s.add_argument(
        "part", nargs="?", default="all", choices=["images", "encoders", "eeg", "meg", "all"],
        help="images (and the planted truth), encoders, the subjects' brain data (eeg: "
        "things-eeg2, meg: things-meg) or all of them in that order (default)",
    )  # fmt: skip
    s.add_argument("--kind", default="things-eeg2", choices=list(KINDS))
    s.add_argument("--root", required=True, help="data set root to write (config: data_dir)")
    s.add_argument(
        "--world", help="YAML/JSON mapping of world options (config: datasets.<name>.world)"
    )
    s.add_argument(
        "--subject", "--subjects", type=int, nargs="+", action="extend", dest="subject",
        help="subject(s) for eeg/meg (default: 1 and 2)",
    )  # fmt: skip
    s.add_argument(
        "--weights-dir", help="where 'encoders' writes the pair (default: ROOT/encoders)"
    )
    s.set_defaults(func=_synth)

    s = sub.add_parser(
        "download", help="fetch a real data set: THINGS-EEG2 (raw EEG, images, official "
        "release) or THINGS-MEG (a participant's preprocessed epochs and sample attributes)",
    )  # fmt: skip
    s.add_argument(
        "part", nargs="?", choices=["raw", "images", "preprocessed", "participant"],
        help="things-eeg2: raw, images or preprocessed; things-meg: participant (the default)",
    )  # fmt: skip
    s.add_argument("--kind", default="things-eeg2", choices=list(KINDS))
    s.add_argument("--data-dir", required=True, help="data set root to fill (config: data_dir)")
    s.add_argument("--subject", type=int, help="subject (raw, preprocessed, participant)")
    s.add_argument(
        "--mirrors", help="YAML: a config file with datasets.<name>.mirrors of a data set of "
        "the kind, or the list itself (default: OSF; things-meg: OpenNeuro)",
    )  # fmt: skip
    s.add_argument("--sessions", type=int, help="sessions per subject (things-eeg2 raw; 4)")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds to connect or stall")
    s.add_argument("--retries", type=int, default=3, help="resumed attempts per file")
    s.add_argument("--keep-archives", action="store_true", help="keep archives once unpacked")
    s.set_defaults(func=_download)

    s = sub.add_parser("import-release", help="official preprocessed release of a subject -> HDF5")
    s.add_argument("--data-dir", required=True, help="data set root (preprocessed_eeg/, images/)")
    s.add_argument("--subject", type=int, required=True)
    s.add_argument("--out", required=True, help="output HDF5 file")
    s.set_defaults(func=_import_release)

    s = sub.add_parser("preprocess", help="raw sessions -> epochs -> MVNN -> HDF5")
    s.add_argument("--raw-dir", required=True, help="data set root (holds raw_eeg/, images/)")
    s.add_argument("--subject", type=int, required=True)
    s.add_argument("--out", required=True, help="output HDF5 file")
    s.add_argument("--mvnn", default="epochs", choices=["epochs", "time", "none"])
    s.add_argument("--cov-fit", default="train", choices=["train", "both"])
    s.add_argument("--channels", default="all", choices=["all", "occipito-parietal"])
    s.add_argument("--tmin", type=float, default=-0.2)
    s.add_argument("--tmax", type=float, default=1.0)
    s.add_argument(
        "--baseline", nargs=2, default=["none", "0"], metavar=("START", "END"),
        help="baseline window in s; START 'none' = from the epoch start",
    )  # fmt: skip
    s.add_argument("--sfreq", type=float, default=250.0, help="output sampling rate (Hz)")
    s.add_argument("--drop-samples", type=int, default=50, help="samples dropped at the start")
    s.add_argument("--train-reps", type=int, default=2, help="repetitions kept per session")
    s.add_argument("--test-reps", type=int, default=20, help="repetitions kept per session")
    s.add_argument("--sessions", type=int, default=4)
    s.add_argument("--seed", type=int, default=20200220, help="repetition-selection seed")
    s.add_argument(
        "--threads", type=int, default=None,
        help="worker threads (default: every CPU available); the output does not depend on it",
    )  # fmt: skip
    s.set_defaults(func=_preprocess)

    s = sub.add_parser(
        "prepare", help="a THINGS-MEG participant's epochs -> the common brain-data HDF5"
    )
    s.add_argument(
        "--kind", required=True, choices=list(KINDS),
        help="things-meg (things-eeg2: use preprocess or import-release)",
    )  # fmt: skip
    s.add_argument("--data-dir", required=True, help="data set root (derivatives/, sourcedata/)")
    s.add_argument("--subject", type=int, required=True, help="participant")
    s.add_argument("--out", required=True, help="output HDF5 file")
    s.add_argument("--tmin", type=float, default=0.0, help="window start (s)")
    s.add_argument("--tmax", type=float, default=1.0, help="window end (s), included")
    s.set_defaults(func=_prepare)

    s = sub.add_parser("image-set", help="a data set's images, by stimulus identity -> TSV index")
    s.add_argument("--kind", required=True, choices=["things-eeg2", "things-meg"])
    s.add_argument("--images-dir", required=True, help="things-eeg2: images/; things-meg: the "
                   "folder holding images_meg/ and images_test_meg/")  # fmt: skip
    s.add_argument("--attributes", help="things-meg: a participant's sample_attributes CSV")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_image_set)

    s = sub.add_parser("embed", help="image embeddings of one encoder -> HDF5")
    s.add_argument("--encoder", required=True)
    s.add_argument("--images", required=True, help="the image set's index (`visdecode image-set`)")
    s.add_argument("--weights-dir", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--workers", type=int, default=0, help="JPEG-decoding processes")
    s.add_argument("--compile", action="store_true", help="torch.compile the encoder first")
    s.add_argument(
        "--local-weights", default=None,
        help="a checkpoint file to use instead of the cached/downloaded weights",
    )  # fmt: skip
    s.set_defaults(func=_embed)

    s = sub.add_parser(
        "derive-embeddings",
        help="a gLocal encoder's embeddings from its backbone's HDF5 (no pass over the images)",
    )
    s.add_argument("--encoder", required=True, help="e.g. glocal_dino_vitb16")
    s.add_argument("--backbone-embeddings", required=True, help="the backbone's embeddings HDF5")
    s.add_argument("--weights-dir", required=True, help="where the transform is cached")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_derive_embeddings)

    s = sub.add_parser("train", help="train a brain encoder with symmetric InfoNCE")
    s.add_argument(
        "--brain", required=True, nargs="+",
        help="preprocessed HDF5; several: leave-one-subject-out training on these subjects",
    )  # fmt: skip
    s.add_argument(
        "--test-subject", type=int,
        help="the held-out subject (regime inter; recorded with the model)",
    )  # fmt: skip
    s.add_argument("--embeddings", required=True, help="image embeddings HDF5")
    s.add_argument("--brain-encoder", default="nice", help="nice, atms, eegnet or eegconformer")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--recipe", help="YAML/JSON mapping: epochs, batch_size, lr, ...")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument(
        "--val-split", default="concept", choices=["concept", "image"],
        help="validation images: whole held-out concepts (default) or random images (published)",
    )  # fmt: skip
    s.add_argument(
        "--selection", default="top1", choices=["top1", "loss"],
        help="the epoch kept: highest validation top-1 (default) or lowest loss (published)",
    )  # fmt: skip
    s.add_argument(
        "--permute", action="store_true",
        help="the permutation control: train with the brain/image pairing shuffled",
    )  # fmt: skip
    s.set_defaults(func=_train)

    s = sub.add_parser("evaluate", help="n-way retrieval of one trained run")
    s.add_argument("--model", required=True)
    s.add_argument("--brain", required=True)
    s.add_argument("--embeddings", required=True)
    s.add_argument("--out", required=True, help="JSON result")
    s.add_argument("--n-way", type=int, help="default: all test images")
    s.add_argument("--meta", help="JSON mapping stored with the result")
    s.set_defaults(func=_evaluate)

    s = sub.add_parser("table", help="collect run results into the tidy retrieval table")
    s.add_argument("--runs", nargs="+", required=True)
    s.add_argument("--pairs", required=True, help="YAML list of {name, aligned, unaligned}")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_table)

    s = sub.add_parser("summary", help="mean and sd per pair: results/tables/summary.csv")
    s.add_argument("--table", required=True, help="the tidy retrieval table")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_summary)

    s = sub.add_parser("stats", help="paired tests, aligned vs unaligned: stats.csv")
    s.add_argument("--table", required=True, help="the tidy retrieval table")
    s.add_argument("--out", required=True)
    s.add_argument("--correction", default="holm", help="statsmodels multipletests method")
    s.set_defaults(func=_stats)

    s = sub.add_parser("controls", help="control runs' retrieval against chance: controls.csv")
    s.add_argument(
        "--runs", nargs="+", required=True,
        help="retrieval.json of the control runs (and of the unaligned runs the null faces)",
    )  # fmt: skip
    s.add_argument(
        "--null-pair", nargs=2, action="append", metavar=("NULL", "UNALIGNED"),
        help="a null-alignment encoder and the unaligned encoder it is compared with",
    )  # fmt: skip
    s.add_argument("--out", required=True)
    s.set_defaults(func=_controls)

    s = sub.add_parser("attribution", help="temporal, spectral, spatial importance of a run")
    s.add_argument("--model", required=True)
    s.add_argument("--brain", required=True, help="the subject's preprocessed HDF5")
    s.add_argument("--embeddings", required=True)
    s.add_argument("--out", required=True, help="HDF5")
    s.set_defaults(func=_attribution)

    s = sub.add_parser("figure", help="one of the paper's figures (PNG, PDF by suffix)")
    s.add_argument("name", choices=FIGURES)
    s.add_argument("--out", nargs="+", required=True, help="files; the format from the suffix")
    s.add_argument("--dpi", type=int, default=300)
    s.add_argument("--table", help="retrieval.csv")
    s.add_argument("--stats", help="stats.csv")
    s.add_argument("--test", default="t", choices=["t", "wilcoxon"])
    s.add_argument("--pairs", help="YAML list of {name, aligned, unaligned}")
    s.add_argument("--attributions", nargs="+", help="attribution .h5 files of runs")
    s.add_argument("--metrics", nargs="+", help="metrics.csv files of runs")
    s.add_argument("--brain", help="preprocessed HDF5 of the subject (topk_retrieval)")
    s.add_argument(
        "--images", help="the image set's index, results/images/<set>.tsv (topk_retrieval)"
    )
    s.add_argument("--aligned", nargs=2, metavar=("MODEL", "EMBEDDINGS"))
    s.add_argument("--unaligned", nargs=2, metavar=("MODEL", "EMBEDDINGS"))
    s.add_argument("--queries", nargs="+", type=int, default=[6],
                   help="a count of evenly spaced test images, or indices with --query-indices")  # fmt: skip
    s.add_argument("--query-indices", action="store_true")
    s.add_argument("--k", type=int, default=5)
    s.add_argument(
        "--dataset", help="the data set drawn (config: its name under datasets): its rows of "
        "the tables (needed when they hold several); its name leads the title",
    )  # fmt: skip
    s.add_argument(
        "--sensors", help="a brain-data file whose stored sensor positions draw the maps "
        "(spatial_importance; needed for MEG; default: EEG 10-20 positions by name)",
    )  # fmt: skip
    s.set_defaults(func=_figure)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.log)
    try:
        args.func(args)
    except InputError as err:
        print(f"visdecode {args.stage}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
