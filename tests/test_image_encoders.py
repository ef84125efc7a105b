"""Image encoders: the registry against the real model definitions, the loading code with
random weights in each source's checkpoint format, and weight downloads from a loopback server."""

import dataclasses
import hashlib
import http.server
import threading
from functools import partial

import numpy as np
import pytest
import torch

from visdecode import image_encoders, weights
from visdecode.errors import InputError
from visdecode.weights import WeightFile


def output_dim(spec) -> int:
    """The embedding width of the model definition: open_clip's model config, or timm's model
    built on the meta device (no memory)."""
    if spec.family == "open_clip":
        import open_clip

        return open_clip.get_model_config(spec.model)["embed_dim"]
    import timm

    with torch.device("meta"):
        model = timm.create_model(spec.model, pretrained=False, num_classes=0)
        return getattr(model, "head_hidden_size", None) or model.num_features  # VGG: fc2


@pytest.mark.parametrize(
    "name", [n for n, s in image_encoders.REGISTRY.items() if s.family in ("open_clip", "timm")]
)
def test_registry_dims_match_the_model_definitions(name):
    spec = image_encoders.REGISTRY[name]
    assert output_dim(spec) == spec.dim
    assert len(spec.files) == 1 and spec.files[0].url.startswith("https://")


def random_checkpoint(spec, path):
    """Random weights saved in the format the source publishes: OpenAI's and OpenCLIP's
    state dicts (OpenAI's keys are open_clip's), the authors' ViT state dicts (timm's keys;
    DINOv2's at its native 518 px, so that loading at 224 px resamples the position grid)."""
    torch.manual_seed(0)
    if spec.family == "open_clip":
        import open_clip

        model = open_clip.create_model(spec.model, quick_gelu="vitb32" in spec.name)
    else:
        import timm

        model = timm.create_model(spec.model, pretrained=False, num_classes=0)
    state = model.state_dict()
    torch.save(state, path)
    return state


@pytest.mark.parametrize(
    "name, key",
    [
        ("clip_vitb32", "visual.conv1.weight"),
        ("openclip_vitb32_laion400m", "visual.conv1.weight"),
        ("dino_vitb16", "patch_embed.proj.weight"),
        ("dinov2_vitb14", "patch_embed.proj.weight"),
    ],
)
def test_loading_code_reads_the_checkpoint(tmp_path, name, key):
    spec = image_encoders.REGISTRY[name]
    state = random_checkpoint(spec, tmp_path / spec.files[0].filename)
    loaded, model, paths = image_encoders.load(name, tmp_path)  # from the cache, no download
    assert paths == [tmp_path / spec.files[0].filename]
    inner = model.clip if spec.family == "open_clip" else model
    torch.testing.assert_close(inner.state_dict()[key], state[key])
    with torch.inference_mode():
        emb = model(torch.randn(2, 3, spec.image_size, spec.image_size))
    assert emb.shape == (2, spec.dim) and torch.isfinite(emb).all()


@pytest.mark.parametrize("name", sorted(image_encoders.GLOCAL))
def test_glocal_entries_extend_their_backbone(name):
    spec = image_encoders.REGISTRY[name]
    backbone = image_encoders.REGISTRY[image_encoders.GLOCAL[name][0]]
    assert spec.dim == backbone.dim and spec.files[0] == backbone.files[0]
    assert spec.files[1].url.startswith("https://github.com/LukasMut/gLocal/")
    assert spec.preprocessing == backbone.preprocessing


def test_glocal_applies_the_published_transform(tmp_path):
    """(x - mean) / std @ weights + bias on the backbone's embedding, as gLocal defines it."""
    spec = image_encoders.REGISTRY["glocal_dino_vitb16"]
    random_checkpoint(spec, tmp_path / spec.files[0].filename)
    rng = np.random.default_rng(1)
    npz = dict(weights=rng.normal(size=(768, 768)), bias=rng.normal(size=768), mean=0.3, std=2.0)
    np.savez(tmp_path / spec.files[1].filename, **npz)
    _, model, _ = image_encoders.load(spec.name, tmp_path)
    _, backbone, _ = image_encoders.load("dino_vitb16", tmp_path)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        ours, raw = model(x).numpy(), backbone(x).numpy()
    expected = (raw - 0.3) / 2.0 @ npz["weights"] + npz["bias"]
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.savez(tmp_path / spec.files[1].filename, weights=npz["weights"][:5, :5], mean=0, std=1)
    with pytest.raises(InputError, match="wrong transform file"):
        image_encoders.load(spec.name, tmp_path)


def test_a_file_that_is_not_the_checkpoint_fails_clearly(tmp_path):
    spec = image_encoders.REGISTRY["dino_vitb16"]
    (tmp_path / spec.files[0].filename).write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a checkpoint of image encoder 'dino_vitb16'"):
        image_encoders.load("dino_vitb16", tmp_path)


# ------------------------------------------------------------------ downloads over loopback
@pytest.fixture()
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served; counts the requests."""
    root = tmp_path / "served"
    root.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=root))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()


def serve(root, name, payload: bytes) -> str:
    (root / name).write_bytes(payload)
    return hashlib.sha256(payload).hexdigest()


def test_fetch_downloads_verifies_and_caches(server, tmp_path):
    root, url, requests = server
    digest = serve(root, "w.bin", b"weights" * 1000)
    wf = WeightFile("w.bin", f"{url}/w.bin", sha256=digest)
    cache = tmp_path / "cache"
    path = weights.fetch("enc", wf, cache)
    assert path == cache / "w.bin" and path.read_bytes() == b"weights" * 1000
    assert weights.fetch("enc", wf, cache) == path
    assert requests == ["/w.bin"]  # the second call used the cache


@pytest.mark.parametrize("check", ["sha256", "sha256_prefix"])
def test_fetch_rejects_a_wrong_checksum_and_keeps_nothing(server, tmp_path, check):
    root, url, _ = server
    serve(root, "w.bin", b"tampered")
    wf = WeightFile("w.bin", f"{url}/w.bin", **{check: "0" * (64 if check == "sha256" else 8)})
    cache = tmp_path / "cache"
    with pytest.raises(InputError) as err:
        weights.fetch("enc", wf, cache)
    text = str(err.value)
    assert "image encoder 'enc'" in text and "SHA-256" in text and "\n" not in text
    assert list(cache.iterdir()) == []


def test_fetch_offline_names_the_encoder_the_file_and_the_fix(tmp_path):
    with socket_closed() as port:
        wf = WeightFile("w.bin", f"http://127.0.0.1:{port}/w.bin")
        cache = tmp_path / "cache"
        with pytest.raises(InputError) as err:
            weights.fetch("clip_vitb32", wf, cache)
    text = str(err.value)
    assert str(cache / "w.bin") in text and "image encoder 'clip_vitb32'" in text
    assert f"http://127.0.0.1:{port}/w.bin" in text and "local_weights" in text
    assert "\n" not in text and not (cache / "w.bin").exists()


def socket_closed():
    """A loopback port with nothing listening."""
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        yield port

    return closed()


def test_local_weights_are_used_instead_of_a_download(tmp_path):
    spec = image_encoders.REGISTRY["dino_vitb16"]
    state = random_checkpoint(spec, tmp_path / "my-dino.pth")
    cache = tmp_path / "cache"
    _, model, paths = image_encoders.load("dino_vitb16", cache, local=tmp_path / "my-dino.pth")
    assert paths == [tmp_path / "my-dino.pth"] and not cache.exists()
    torch.testing.assert_close(model.state_dict()["cls_token"], state["cls_token"])
    with pytest.raises(InputError, match="local weights for image encoder 'dino_vitb16'"):
        image_encoders.load("dino_vitb16", cache, local=tmp_path / "missing.pth")


def test_registry_entry_downloads_and_loads_end_to_end(server, tmp_path, monkeypatch):
    """The real entry, its URL pointed at the loopback server: download, check, load, embed."""
    root, url, requests = server
    spec = image_encoders.REGISTRY["openclip_vitb32_laion400m"]
    random_checkpoint(spec, root / "ckpt.pt")
    digest = hashlib.sha256((root / "ckpt.pt").read_bytes()).hexdigest()
    wf = dataclasses.replace(spec.files[0], url=f"{url}/ckpt.pt", sha256_prefix=digest[:8])
    monkeypatch.setitem(image_encoders.REGISTRY, spec.name, dataclasses.replace(spec, files=(wf,)))
    cache = tmp_path / "cache"
    _, model, paths = image_encoders.load(spec.name, cache)
    assert requests == ["/ckpt.pt"] and paths[0].parent == cache
    with torch.inference_mode():
        emb = model(torch.randn(1, 3, 224, 224)).numpy()
    assert emb.shape == (1, 512) and np.isfinite(emb).all()
