"""Stage embed: the HDF5 cache from the images, and gLocal caches derived from their
backbone's cache (equal to embedding the images through backbone and transform)."""

import dataclasses
import hashlib
import json
import platform

import h5py
import numpy as np
import pytest
import timm
import torch
from PIL import Image
from test_image_encoders import random_checkpoint, socket_closed

from visdecode import embed, image_encoders, image_sets
from visdecode.datasets.things_eeg2 import format as things_eeg2
from visdecode.derived_encoders import BACKBONE, GLOCAL, with_backbones
from visdecode.errors import InputError
from visdecode.weights import WeightFile


def image_set(root, n_train=5, n_test=3):
    """A data set's images in THINGS-EEG2's layout (concept folders, image_metadata.npy), and
    their image set's index (returned)."""
    rng = np.random.default_rng(0)
    meta = {}
    for part, key, n in (("training", "train", n_train), ("test", "test", n_test)):
        concepts = [f"{i + 1:05d}_thing{i}" for i in range(n)]
        files = [f"thing{i}_{part}.jpg" for i in range(n)]
        for concept, name in zip(concepts, files):
            (root / f"{part}_images" / concept).mkdir(parents=True)
            pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).resize((300, 200)).save(
                root / f"{part}_images" / concept / name
            )
        meta[f"{key}_img_concepts"], meta[f"{key}_img_files"] = concepts, files
    np.save(root / "image_metadata.npy", meta, allow_pickle=True)
    index = root.parent / f"{root.name}.tsv"
    image_sets.write(index, things_eeg2.image_set(root), root, "make them")
    return index


def glocal_world(tmp_path, name="glocal_dino_vitb16"):
    """Random backbone weights and a random gLocal transform, in the published formats."""
    spec = image_encoders.REGISTRY[name]
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    random_checkpoint(image_encoders.REGISTRY[spec.backbone], weights_dir / spec.files[0].filename)
    rng = np.random.default_rng(1)
    np.savez(weights_dir / spec.files[1].filename, weights=rng.normal(size=(spec.dim, spec.dim)),
             bias=rng.normal(size=spec.dim), mean=0.3, std=2.0)  # fmt: skip
    return spec, weights_dir, image_set(tmp_path / "images")


def read(path):
    with h5py.File(path) as f:
        arrays = {k: f[k][:] for k in ("train", "test")}
        files = {k: list(f[f"{k}_files"].asstr()[:]) for k in ("train", "test")}
        return arrays, files, dict(f.attrs)


def test_cache_layout_and_identity(tmp_path):
    spec, weights_dir, images = glocal_world(tmp_path)
    out = tmp_path / "dino.h5"
    embed.run("dino_vitb16", images, weights_dir, out, batch_size=2)
    arrays, files, attrs = read(out)
    assert arrays["train"].shape == (5, 768) and arrays["test"].shape == (3, 768)
    assert arrays["train"].dtype == np.float32
    assert files["test"] == [f"test_images/{i + 1:05d}_thing{i}/thing{i}_test.jpg" for i in range(3)]
    checkpoint = weights_dir / image_encoders.REGISTRY["dino_vitb16"].files[0].filename
    assert attrs["weights_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert attrs["encoder"] == "dino_vitb16" and "centre crop 224" in attrs["preprocessing"]
    # provenance: where and how the numbers were computed
    assert attrs["device"].startswith("cpu") and attrs["dtype"] == "float32"
    assert not attrs["compile"] and attrs["python"] == platform.python_version()
    versions = json.loads(attrs["versions"])
    assert versions["torch"] == torch.__version__.split("+")[0] and versions["timm"] == timm.__version__


def test_batched_channels_last_equals_one_image_at_a_time(tmp_path):
    """The batched, channels-last path gives the embeddings of a plain per-image loop."""
    spec, weights_dir, images = glocal_world(tmp_path, "glocal_clip_rn50")
    _, model, _ = image_encoders.load("clip_rn50", weights_dir)
    paths = sorted((tmp_path / "images").glob("training_images/*/*.jpg"))
    transform = embed.preprocessing(image_encoders.REGISTRY["clip_rn50"])
    with torch.inference_mode():
        expected = torch.cat([model(transform(Image.open(p).convert("RGB"))[None]) for p in paths])
    ours = embed.embed_paths(model, image_encoders.REGISTRY["clip_rn50"], paths, batch_size=2)
    np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_derived_glocal_cache_equals_embedding_the_images(tmp_path):
    spec, weights_dir, images = glocal_world(tmp_path)
    backbone, direct, derived = tmp_path / "b.h5", tmp_path / "direct.h5", tmp_path / "derived.h5"
    embed.run("dino_vitb16", images, weights_dir, backbone, batch_size=4)
    embed.run(spec.name, images, weights_dir, direct, batch_size=4)  # backbone + transform
    embed.derive(spec.name, backbone, weights_dir, derived)  # transform of the cache only
    (a_direct, f_direct, at_direct), (a_derived, f_derived, at_derived) = (
        read(direct),
        read(derived),
    )
    for key in ("train", "test"):
        scale = np.abs(a_direct[key]).max()
        np.testing.assert_allclose(a_derived[key], a_direct[key], rtol=1e-5, atol=1e-5 * scale)
    assert f_derived == f_direct
    assert np.abs(a_derived["train"] - read(backbone)[0]["train"]).max() > 1.0  # transformed
    transform = weights_dir / spec.files[1].filename
    assert at_derived["encoder"] == spec.name and at_derived["family"] == "glocal"
    assert at_derived["weights_sha256"] == hashlib.sha256(transform.read_bytes()).hexdigest()
    assert at_derived["backbone_weights_sha256"] == read(backbone)[2]["weights_sha256"]
    assert at_derived["derived_from"] == str(backbone)
    assert at_derived["preprocessing"] == at_direct["preprocessing"]


def test_null_alignment_encoder_randomises_the_transforms_directions(tmp_path):
    """null_<aligned>: the aligned transform with random singular vectors and the same singular
    values, applied to the same cached backbone embeddings; seeded, so rebuilt identically."""
    spec, weights_dir, images = glocal_world(tmp_path)
    backbone = tmp_path / "b.h5"
    embed.run("dino_vitb16", images, weights_dir, backbone, batch_size=4)
    null = f"null_{spec.name}"
    assert BACKBONE[null] == "dino_vitb16" and null in with_backbones([null])
    embed.derive(null, backbone, weights_dir, tmp_path / "null.h5")
    embed.derive(null, backbone, weights_dir, tmp_path / "again.h5")
    _, head, _ = image_encoders.load_head(spec.name, weights_dir)
    _, null_head, _ = image_encoders.load_head(null, weights_dir)
    w, w0 = null_head.weight.detach().double(), head.weight.detach().double()
    torch.testing.assert_close(torch.linalg.svdvals(w), torch.linalg.svdvals(w0), rtol=1e-5, atol=1e-6)
    cosines = torch.nn.functional.cosine_similarity(w, w0, dim=0)
    assert cosines.abs().max() < 0.3  # no column kept its direction
    raw = torch.from_numpy(read(backbone)[0]["train"])
    with torch.no_grad():
        expected = null_head(raw).numpy()
    null_out, again = read(tmp_path / "null.h5")[0], read(tmp_path / "again.h5")[0]
    np.testing.assert_allclose(null_out["train"], expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(null_out["train"], again["train"])
    assert image_encoders.get(null).weights.startswith("CONTROL: ")
    attrs = read(tmp_path / "null.h5")[2]
    s = torch.linalg.svdvals(w0)
    assert attrs["singular_value_spread"] == pytest.approx(float(s.std() / s.mean()), rel=1e-6)
    assert attrs["null_seed"] == null_head.control["null_seed"]


def test_derive_refuses_another_encoders_cache(tmp_path):
    spec, weights_dir, images = glocal_world(tmp_path)
    wrong = tmp_path / "clip.h5"
    with h5py.File(wrong, "w") as f:
        f.attrs["encoder"] = "clip_vitl14"
    out = tmp_path / "out.h5"
    with pytest.raises(InputError, match=r"embeddings of 'clip_vitl14', but 'glocal_dino_vitb16'"):
        embed.derive(spec.name, wrong, weights_dir, out)
    assert not out.exists()
    with pytest.raises(InputError, match="'dino_vitb16' is not derived"):
        embed.derive("dino_vitb16", wrong, weights_dir, out)
    with pytest.raises(InputError, match="embeddings of 'dino_vitb16' not found; embed them"):
        embed.derive(spec.name, tmp_path / "missing.h5", weights_dir, out)
    assert not out.exists()


def test_derive_fetches_only_the_transform_and_fails_offline_clearly(tmp_path, monkeypatch):
    spec, weights_dir, images = glocal_world(tmp_path)
    (weights_dir / spec.files[0].filename).unlink()  # the backbone's weights are not needed
    _, head, paths = image_encoders.load_head(spec.name, weights_dir)
    assert paths == [weights_dir / spec.files[1].filename]
    assert head(torch.zeros(1, 768)).shape == (1, 768)
    with socket_closed() as port:  # the transform neither cached nor reachable
        url = f"http://127.0.0.1:{port}/transform.npz"
        offline = dataclasses.replace(spec, files=(spec.files[0], WeightFile("t.npz", url)))
        monkeypatch.setitem(image_encoders.REGISTRY, spec.name, offline)
        cache, out = tmp_path / "backbone.h5", tmp_path / "out.h5"
        with h5py.File(cache, "w") as f:
            for key in ("train", "test"):
                f[key] = np.ones((2, 768), np.float32)
                f[f"{key}_files"] = ["a.jpg", "b.jpg"]
            f.attrs.update(encoder="dino_vitb16", weights_files=["w"], weights_sha256="0" * 64)
        with pytest.raises(InputError) as err:
            embed.derive(spec.name, cache, weights_dir, out)
    text = str(err.value)
    assert f"image encoder '{spec.name}'" in text and str(weights_dir / "t.npz") in text
    assert url in text and "\n" not in text and not out.exists()


def test_derive_names_a_transform_file_that_is_not_one(tmp_path):
    spec, weights_dir, images = glocal_world(tmp_path)
    transform = weights_dir / spec.files[1].filename
    out = tmp_path / "out.h5"
    embed.run("dino_vitb16", images, weights_dir, tmp_path / "dino.h5", batch_size=4)
    transform.write_bytes(b"not an npz file")  # e.g. an HTML error page saved by a proxy
    with pytest.raises(InputError) as err:
        embed.derive(spec.name, tmp_path / "dino.h5", weights_dir, out)
    text = str(err.value)
    assert text.startswith(f"{transform}: not the transform of image encoder '{spec.name}' (")
    assert text.endswith("delete it to download it again") and "\n" not in text
    np.savez(transform, weights=np.eye(512), mean=0.0, std=1.0)  # another backbone's size
    with pytest.raises(InputError, match=r"gLocal weights are \(512, 512\), the backbone gives"):
        embed.derive(spec.name, tmp_path / "dino.h5", weights_dir, out)
    assert not out.exists()


def test_the_workflow_table_matches_the_registry():
    derived = {n: s.backbone for n, s in image_encoders.REGISTRY.items() if s.backbone}
    assert derived == BACKBONE
    assert set(GLOCAL) <= set(derived)
    for name, backbone in derived.items():
        spec = image_encoders.REGISTRY[name]
        assert spec.files[0] == image_encoders.REGISTRY[backbone].files[0]
        assert spec.head is not None and spec.build is not None
    assert with_backbones(["glocal_clip_vitl14", "dreamsim_ensemble"]) == [
        "clip_vitl14", "dreamsim_ensemble", "glocal_clip_vitl14",
    ]  # fmt: skip
