"""`visdecode <stage>`: every stage has --help; bad input is one clear line and exit code 2."""

import subprocess
import sys

import h5py
import pytest

STAGES = [
    "synth", "preprocess", "image-set", "embed", "derive-embeddings", "train", "evaluate",
    "table", "summary", "stats", "attribution", "figure",
]  # fmt: skip


def visdecode(*args):
    return subprocess.run(
        [sys.executable, "-m", "visdecode.cli", *args], capture_output=True, text=True
    )


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_help(stage):
    done = visdecode(stage, "--help")
    assert done.returncode == 0
    assert f"usage: visdecode {stage}" in done.stdout


def test_bad_input_is_one_line(tmp_path):
    (tmp_path / "images").mkdir()
    done = visdecode("preprocess", "--raw-dir", str(tmp_path), "--subject", "1", "--out",
                     str(tmp_path / "out.h5"))  # fmt: skip
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        f"visdecode preprocess: error: {tmp_path}/images/image_metadata.npy: image metadata "
        "not found; fetch or synthesise the images"
    ]
    assert not (tmp_path / "out.h5").exists()


def test_figure_names_what_it_needs_and_stats_names_a_bad_table(tmp_path):
    done = visdecode("figure", "topk_retrieval", "--out", str(tmp_path / "f.png"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "visdecode figure: error: figure topk_retrieval needs --brain --images --aligned "
        "--unaligned"
    ]
    bad = tmp_path / "runs.csv"
    bad.write_text("top1\n0.5\n")
    done = visdecode("stats", "--table", str(bad), "--out", str(tmp_path / "stats.csv"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"visdecode stats: error: {bad}: not a retrieval table, columns ['alignment', "
        "'brain_encoder', 'dataset', 'image_encoder', 'pair', 'regime', 'seed', 'subject', "
        "'top5'] missing; rebuild it with `snakemake results/tables/retrieval.csv`"
    ]
    assert not (tmp_path / "stats.csv").exists() and not (tmp_path / "f.png").exists()


def test_derive_embeddings_names_the_cache_it_cannot_use(tmp_path):
    wrong = tmp_path / "clip.h5"
    h5py.File(wrong, "w").close()
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "synth_resnet18_glocal.pt").write_bytes(b"")  # present: only the cache is wrong
    done = visdecode("derive-embeddings", "--encoder", "synth_resnet18_glocal",
                     "--backbone-embeddings", str(wrong), "--weights-dir", str(weights),
                     "--out", str(tmp_path / "out.h5"))  # fmt: skip
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        f"visdecode derive-embeddings: error: {wrong}: embeddings of '', but "
        "'synth_resnet18_glocal' transforms those of 'synth_resnet18'; embed synth_resnet18 "
        "into that file first"
    ]
    assert not (tmp_path / "out.h5").exists()
