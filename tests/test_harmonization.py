"""Harmonization encoders against their yardstick, Keras itself.

tests/keras_reference.py builds every architecture through the model definitions the
`harmonization` package uses (keras.applications, qubvel's efficientnet, vit-keras 0.1,
keras-cv-attention-models 1.3), with random weights, saves each as the package's file is, and
records Keras's outputs on the same images, resized by TensorFlow and normalised by the
package's preprocess_input. Our converter must give the same embeddings (to 1e-4), our
preprocessing the same input, and Keras must read the files our writer makes (the synthetic
world's format) and compute what our PyTorch model computes.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from visdecode import embed, harmonization_models, image_encoders
from visdecode.errors import InputError

REPO = Path(__file__).resolve().parents[1]
ARCHS = list(harmonization_models.ARCHS)
TOLERANCE = 1e-4


def sample_images(n: int = 3, size: int = 300) -> np.ndarray:
    """Smooth colour fields with edges, as uint8 (n, size, size, 3): resizing them matters."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (n, 12, 12, 3)).astype(np.uint8)
    images = np.stack([np.asarray(Image.fromarray(s).resize((size, size), Image.BICUBIC))
                       for s in small])  # fmt: skip
    images[:, size // 3 : size // 2, :, 0] = 255  # a hard edge
    return images


@pytest.fixture(scope="module")
def keras_world(tmp_path_factory):
    """Keras's files and outputs for every architecture (one TensorFlow process), and our
    writer's files of seeded PyTorch models."""
    out = tmp_path_factory.mktemp("keras")
    np.save(out / "images.npy", sample_images())
    ours = {}
    for i, arch in enumerate(ARCHS):
        torch.manual_seed(100 + i)
        model = harmonization_models.ARCHS[arch].make().eval()
        _randomise_norms(model, i)
        harmonization_models.write(arch, model, out / f"ours_{arch}.h5")
        ours[arch] = model
    shims = str(REPO / "tests" / "shims")  # tensorflow_addons' stand-in (tests/shims)
    path = os.pathsep.join(p for p in (shims, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "keras_reference.py"), str(out),
         str(out / "images.npy"), *ARCHS],
        capture_output=True, text=True, env=env, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, (
        "the Keras yardstick needs TensorFlow and the packages' model definitions (pip install "
        f"-e '.[dev]'):\n{done.stderr[-3000:]}"
    )
    yield out, ours
    shutil.rmtree(out)  # 2.6 GB of model files


def _randomise_norms(model: torch.nn.Module, seed: int) -> None:
    """Every parameter that is not a kernel away from its initial value (biases, norms,
    layer scales initialised at 1e-6, attention-bias tables at 0, tokens), so that each one
    matters to the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif tensor.dim() <= 1 and name.endswith(("weight", "gamma")):
                tensor.copy_(1 + 0.1 * torch.randn(tensor.shape, generator=gen))
            elif tensor.dim() <= 1 or "bias" in name or name in ("cls_token", "pos_embed"):
                tensor.copy_(0.3 * torch.randn(tensor.shape, generator=gen))


def reference(out: Path, name: str) -> dict:
    with np.load(out / f"{name}.npz") as npz:
        return dict(npz)


def assert_last_equal(logits: torch.Tensor, last: np.ndarray) -> None:
    """Our logits against Keras's last layer: logits, or (keras.applications' and qubvel's
    saved heads) softmax probabilities, compared as log-probabilities (probabilities of about
    1e-3 each would hide a wrong classifier at an absolute 1e-4)."""
    if np.allclose(last.sum(1), 1, atol=1e-4) and (last >= 0).all():
        ours = torch.log_softmax(logits.double(), 1).numpy()
        assert np.abs(ours - np.log(last.astype(np.float64))).max() < 1e-3
    else:
        assert np.abs(logits.numpy() - last).max() < TOLERANCE


def as_torch(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def test_preprocessing_equals_tensorflow_and_the_package(keras_world):
    out, _ = keras_world
    images = np.load(out / "images.npy")
    resized = np.load(out / "keras_resized.npy")
    ours = np.stack([harmonization_models.tf_resize_bicubic(im, 224) for im in images])
    assert np.abs(ours - resized).max() < 1e-3  # on the 0-255 scale
    x = reference(out, f"keras_{ARCHS[0]}")["x"]
    spec = image_encoders.REGISTRY["harmonization_vitb16"]
    transform = embed.preprocessing(spec)
    ours = torch.stack([transform(Image.fromarray(im)) for im in images])
    assert ours.shape == (len(images), 3, 224, 224) and ours.dtype == torch.float32
    assert (ours - as_torch(x)).abs().max() < TOLERANCE
    # not torchvision's resize: that one differs by far more than the tolerance
    import torchvision.transforms.functional as TF

    other = TF.to_tensor(TF.resize(Image.fromarray(images[0]), [224, 224]))
    assert (other - torch.from_numpy(resized[0] / 255).permute(2, 0, 1)).abs().max() > 100 * TOLERANCE


@pytest.mark.parametrize("arch", ARCHS)
def test_embeddings_equal_keras(keras_world, arch):
    """Keras's file, read and converted by us: the embedding (penultimate layer) and the
    last layer equal Keras's on the same input."""
    out, _ = keras_world
    ref = reference(out, f"keras_{arch}")
    with torch.inference_mode():
        features = harmonization_models.load(arch, out / f"{arch}.h5")(as_torch(ref["x"]))
        logits = harmonization_models.load(arch, out / f"{arch}.h5", features=False)(
            as_torch(ref["x"])
        )
    expected = ref["features"].reshape(len(ref["x"]), -1)
    assert features.shape == (3, harmonization_models.ARCHS[arch].dim) == expected.shape
    assert np.abs(features.numpy() - expected).max() < TOLERANCE
    assert np.abs(expected).max() > 100 * TOLERANCE  # not a comparison of near-zeros
    assert_last_equal(logits, ref["last"])


@pytest.mark.parametrize("arch", ARCHS)
def test_keras_reads_our_files(keras_world, arch):
    """Our writer's file (the synthetic world's format), loaded by Keras's own load_weights,
    computes what the PyTorch model it was written from computes."""
    out, ours = keras_world
    ref = reference(out, f"keras_ours_{arch}")
    x = as_torch(reference(out, f"keras_{arch}")["x"])
    model = ours[arch]
    with torch.inference_mode():
        logits = model(x)
        harmonization_models.ARCHS[arch].features(model)
        features = model(x)
    assert np.abs(features.numpy() - ref["features"].reshape(3, -1)).max() < TOLERANCE
    assert_last_equal(logits, ref["last"])


def test_whole_saved_models_are_read_from_model_weights(keras_world):
    """VGG-16, ResNet50V2 and EfficientNet-B0 are whole saved models (model_config and the
    weights under model_weights/), as the package's files are; the others weights only."""
    out, _ = keras_world
    for arch in ("vgg16", "resnet50v2", "efficientnetb0"):
        with h5py.File(out / f"{arch}.h5") as f:
            assert "model_config" in f.attrs and "model_weights" in f
    with h5py.File(out / "levit128.h5") as f:
        assert "layer_names" in f.attrs and "model_weights" not in f


def test_another_models_file_fails_in_one_line(keras_world):
    out, _ = keras_world
    with pytest.raises(InputError) as err:
        harmonization_models.load("levit128", out / "convnext_tiny.h5")
    message = str(err.value)
    assert message.startswith(str(out / "convnext_tiny.h5")) and "\n" not in message
    assert "stem_1_conv/kernel" in message and "LeViT-128" in message
    (out / "not.h5").write_text("not hdf5")
    with pytest.raises(InputError, match="not an HDF5 file"):
        harmonization_models.load("levit128", out / "not.h5")


def test_registry_entries():
    for name, spec in image_encoders.REGISTRY.items():
        if spec.family != "harmonization":
            continue
        arch = spec.model.removeprefix("keras:")
        assert spec.dim == harmonization_models.ARCHS[arch].dim and spec.build is not None
        assert spec.files[0].url.startswith("https://storage.googleapis.com/")
        assert "TensorFlow's bicubic" in spec.preprocessing
    aligned = [n for n in image_encoders.REGISTRY if n.startswith("harmonization_")]
    assert len(aligned) == 7


def test_offline_and_absent_is_one_line(tmp_path, monkeypatch):
    import pooch

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(InputError) as err:
        image_encoders.load("harmonization_levit", tmp_path)
    message = str(err.value)
    assert "\n" not in message and "levit_small_harmonized.h5" in message
    assert "local_weights" in message and not list(tmp_path.iterdir())


@pytest.mark.parametrize("arch", ARCHS)
def test_rules_run_both_ways(arch):
    """to_keras then to_torch gives back every tensor of the state dict (each layout's
    inverse is exact), and every parameter of the model has its rule."""
    model = harmonization_models.ARCHS[arch].make()
    _randomise_norms(model, 0)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    back = harmonization_models.to_torch(arch, harmonization_models.to_keras(arch, state))
    assert back.keys() == state.keys()
    for key, tensor in state.items():
        assert torch.equal(back[key], tensor), key


def test_every_entry_builds_from_a_file_in_its_format(keras_world, tmp_path):
    """Each Harmonization entry and its unaligned partner, built by the registry from a file
    of its published format (Keras .h5 by our writer; timm's safetensors), embeds to its
    dimension."""
    import timm
    from safetensors.torch import save_file

    out, _ = keras_world
    x = torch.randn(1, 3, 224, 224)
    for name, spec in image_encoders.REGISTRY.items():
        if spec.family != "harmonization" and not name.endswith("_imagenet"):
            continue
        target = tmp_path / spec.files[0].filename
        if spec.family == "harmonization":
            target.symlink_to(out / f"ours_{spec.model.removeprefix('keras:')}.h5")
        else:
            save_file(timm.create_model(spec.model).state_dict(), target)
        _, model, paths = image_encoders.load(name, tmp_path)
        with torch.inference_mode():
            assert model(x).shape == (1, spec.dim), name
        assert paths == [target]
        del model
        if not target.is_symlink():
            target.unlink()


def test_in_graph_preprocessing_is_refused_not_dropped(keras_world, tmp_path):
    """keras.applications' EfficientNet carries Rescaling and Normalization layers with
    weights: a file with weights no rule reads is one line, not a model without them."""
    out, _ = keras_world
    weights = harmonization_models.read_keras_h5(out / "efficientnetb0.h5")
    weights["normalization/mean"] = np.zeros(3, np.float32)
    harmonization_models.write_keras_h5(tmp_path / "e.h5", weights, lambda n: n.rsplit("/", 1)[0])
    with pytest.raises(InputError) as err:
        harmonization_models.load("efficientnetb0", tmp_path / "e.h5")
    assert "normalization/mean" in str(err.value) and "\n" not in str(err.value)
