"""The download rules inside the workflow, against a data host on loopback: a dead mirror then a
good one, the files laid out exactly as the preprocessing reads them, no network at all, and the
official preprocessed release as the EEG source."""

import re
import subprocess
import sys
from dataclasses import fields

import h5py
import numpy as np
import pytest
import yaml
from mirror import Mirror, closed_port_url
from test_download import npy_bytes, release_file, zip_tree
from test_workflow import REPO, snakemake

from visdecode.datasets.things_eeg2 import preprocess
from visdecode.datasets.things_eeg2 import format as fmt

DATASET = "things-eeg2-fetched"
RULES = "things_eeg2_fetched"  # as its own rules spell it
TARGET = f"results/preprocessed/{DATASET}/sub-01.h5"


@pytest.fixture(scope="module")
def host(world):
    m = Mirror()
    m.add("raw", "sub-01.zip", zip_tree(world / "raw_eeg", "sub-01"))
    for folder in ("training_images", "test_images"):
        m.add("images", f"{folder}.zip", zip_tree(world / "images", folder))
    m.add("images", "image_metadata.npy", world / "images" / "image_metadata.npy")
    meta = fmt.load_image_metadata(world / "images" / "image_metadata.npy")
    m.release = {
        "training": release_file(len(meta["train_img_files"]), 4, 5),
        "test": release_file(len(meta["test_img_files"]), 80, 6),
    }
    for partition, data in m.release.items():
        m.add("preprocessed", f"sub-01/preprocessed_eeg_{partition}.npy", npy_bytes(data))
    yield m
    m.close()


def config(workdir, mirrors, **extra) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["datasets"][DATASET] = dict(
        kind="things-eeg2",
        data_dir=str(workdir / "data"),
        synthetic=False,
        subjects=[1],
        regimes=["intra"],
        preprocess={"test_reps": 4},  # the tiny world shows each test image 4 times
        mirrors=mirrors,
        **extra,
    )
    cfg.update(decode=[DATASET], weights_dir=str(workdir / "weights"))
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return cfg


def good(host):
    ids = {"raw": "raw", "images": "images", "preprocessed": "preprocessed"}
    return {"name": "lab", "type": "http", "url": f"{host.url}/http", "ids": ids}


def dead():
    return {"name": "dead", "type": "osf", "url": f"{closed_port_url()}/v2",
            "ids": {"raw": "crxs4", "images": "y63gw", "preprocessed": "anp5v"}}  # fmt: skip


def test_fetched_data_preprocess_like_the_local_files(host, world, tmp_path):
    cfg = config(tmp_path, [dead(), good(host)])
    done = snakemake(tmp_path, TARGET)
    assert done.returncode == 0, done.stderr[-3000:]
    for rule in (f"download_raw_{RULES}", f"download_images_{RULES}", "things_eeg2_preprocess"):
        assert f"rule {rule}:" in done.stderr or f"localrule {rule}:" in done.stderr
    log = (tmp_path / f"logs/{DATASET}/download_raw_sub-01.log").read_text()
    assert "mirror dead failed: dead: cannot connect" in log
    # the same preprocessing on the original files gives the same arrays
    options = {f.name: f.default for f in fields(preprocess.Params)}  # = the schema's (null: 20)
    options.update(cfg["datasets"][DATASET]["preprocess"])
    options["n_sessions"] = 4  # THINGS-EEG2's design, not an option
    assert set(options) == {f.name for f in fields(preprocess.Params)}
    direct = tmp_path / "direct.h5"
    preprocess.run(world, 1, direct, preprocess.Params(**options), threads=1)
    with h5py.File(tmp_path / TARGET) as got, h5py.File(direct) as want:
        for name in ("train", "test"):
            np.testing.assert_array_equal(got[name][:], want[name][:])
    # archives gone once unpacked
    assert not (tmp_path / "data" / "downloads").exists()


def test_offline_download_rule_fails_cleanly(tmp_path):
    config(tmp_path, [dead()])
    done = snakemake(tmp_path, TARGET)
    assert done.returncode != 0
    log = (tmp_path / f"logs/{DATASET}/download_raw_sub-01.log").read_text().strip().splitlines()
    assert any(
        line.startswith("visdecode.errors.InputError: raw EEG of sub-01: no mirror could provide")
        and "by hand from https://osf.io/crxs4/" in line
        for line in log
    )
    data = tmp_path / "data"
    assert not [p for p in data.rglob("*") if p.is_file()]  # nothing, partial or whole


def test_official_release_as_the_eeg_source(host, tmp_path):
    config(tmp_path, [good(host)], source="official_preprocessed")
    done = snakemake(tmp_path, TARGET)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "download_preprocessed" in done.stderr and "things_eeg2_import_release" in done.stderr
    assert "download_raw" not in done.stderr and "things_eeg2_preprocess" not in done.stderr
    with h5py.File(tmp_path / TARGET) as f:
        for name, partition in (("train", "training"), ("test", "test")):
            want = host.release[partition]["preprocessed_eeg_data"].astype(np.float32)
            np.testing.assert_array_equal(f[name][:], want)
        assert f.attrs["sfreq"] == 100.0 and len(f["ch_names"]) == 17


def test_release_source_refused_for_the_synthetic_world(tmp_path):
    cfg = config(tmp_path, [dead()], source="official_preprocessed")
    cfg["datasets"][DATASET]["synthetic"] = True
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    done = snakemake(tmp_path, "-n", TARGET)
    assert done.returncode != 0
    assert (f"datasets.{DATASET}.source 'official_preprocessed' needs the real data set"
            in done.stdout + done.stderr)  # fmt: skip


def test_paper_scale_config(tmp_path):
    """config/things-eeg2.yaml: the real data set, 10 subjects, the paper's seeds and pairs,
    every brain encoder and the published recipes; its dry run plans every job."""
    from visdecode.datasets.things_eeg2 import sources
    from visdecode.image_encoders import REGISTRY

    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    defaults = schema["definitions"]["things-eeg2"]["properties"]["mirrors"]["default"]
    assert defaults == sources.DEFAULT_MIRRORS  # the kind's default hosts
    paper = yaml.safe_load((REPO / "config" / "things-eeg2.yaml").read_text())
    assert paper["decode"] == ["things-eeg2"]
    eeg = paper["datasets"]["things-eeg2"]
    assert eeg["synthetic"] is False and eeg["kind"] == "things-eeg2"
    assert eeg["subjects"] == list(range(1, 11))
    assert paper["seeds"] == [7, 42, 191, 2025, 96723]
    assert eeg["brain_encoders"] == ["nice", "atms", "eegnet", "eegconformer"]
    recipes = paper["train"]["recipes"]
    assert [(recipes[b]["epochs"], recipes[b]["batch_size"], recipes[b]["lr"]) for b in
            ("nice", "atms", "eegconformer", "eegnet")] == [
        (50, 128, 2e-4), (80, 128, 2e-4), (200, 128, 2e-4), (200, 512, 1e-2)]  # fmt: skip
    assert recipes["eegconformer"]["temperature"] == 0.07
    assert paper["train"]["inter_subject"]["nice"] == {"epochs": 150, "batch_size": 512,
                                                        "lr": 1e-4}  # fmt: skip
    methods = {p["method"] for p in paper["pairs"]}
    assert methods == {"DreamSim", "gLocal", "Harmonization"} and len(paper["pairs"]) == 21
    for pair in paper["pairs"]:
        assert REGISTRY[pair["aligned"]].dim == REGISTRY[pair["unaligned"]].dim
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(base))
    # one seed and one regime keep the dry run's DAG (42,000 jobs and more in full) to seconds
    (tmp_path / "fewer.yaml").write_text("seeds: [7]\ndatasets: {things-eeg2: {regimes: [intra]}}\n")
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(tmp_path / "config/config.yaml"),
         str(REPO / "config/things-eeg2.yaml"), str(tmp_path / "fewer.yaml"), "-n", "--quiet",
         "rules"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", r.stdout + r.stderr, re.MULTILINE))
    runs = 10 * 4 * 42  # subjects x brain encoders x image encoders
    # the 8 gLocal encoders are derived from their backbones' embeddings, not embedded
    assert {k: int(counts[k]) for k in ("download_raw_things_eeg2", "download_images_things_eeg2",
                                         "things_eeg2_preprocess", "embed", "derive_embeddings",
                                         "train", "evaluate")} == {
        "download_raw_things_eeg2": 10, "download_images_things_eeg2": 1,
        "things_eeg2_preprocess": 10, "embed": 34, "derive_embeddings": 8, "train": runs,
        "evaluate": runs}  # fmt: skip
    assert not [job for job in counts if "synthetic" in job]  # only the decoded data set
