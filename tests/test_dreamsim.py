"""DreamSim: our loader against the `dreamsim` package itself, on the same random-weight files.

For each DreamSim type the test writes what a release zip holds (the backbone in DreamSim's
DINO layout, a LoRA adapter saved by peft with random non-zero weights) and the authors'
DINO/DINOv2 backbone files, which the package gets through torch.hub (here a local hub whose
entry points build the authors' model definitions: DINO's ViT, which DreamSim ships a copy of;
DINOv2 as timm defines it, with DINOv2's run-time position-grid resampling). Then
`dreamsim.dreamsim(...).embed(x)` must equal our model on the same images, with and without
the LoRA.
"""

import math
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

import dreamsim  # the package itself, a dev dependency (with peft)
from dreamsim.config import dreamsim_args
from dreamsim.feature_extraction.vision_transformer import DINOHead, vit_base
from PIL import Image
from visdecode import dreamsim_models, embed, image_encoders
from visdecode.errors import InputError

HUB_LOAD = torch.hub.load

HUBCONF_DINO = """
import torch
from dreamsim.feature_extraction.vision_transformer import vit_base

def dino_vitb16(pretrained=True, **kwargs):
    model = vit_base(patch_size=16, num_classes=0)
    model.load_state_dict(torch.load({path!r}, map_location="cpu", weights_only=True))
    return model
"""

HUBCONF_DINOV2 = """
import math
import torch
import timm
from timm.models.vision_transformer import VisionTransformer

class DinoV2(VisionTransformer):
    # DINOv2's run-time resampling: bicubic, no antialiasing, scale (grid + 0.1) / native
    def _pos_embed(self, x):
        n = self.pos_embed.shape[1] - 1
        m = int(math.sqrt(n))
        g = x.shape[1]  # x: (batch, grid, grid, dim)
        patch = self.pos_embed[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
        s = (g + 0.1) / m
        patch = torch.nn.functional.interpolate(patch, scale_factor=(s, s), mode="bicubic",
                                                antialias=False)
        pos = torch.cat([self.pos_embed[:, :1], patch.permute(0, 2, 3, 1).reshape(1, g * g, -1)], 1)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x.flatten(1, 2)], 1)
        return x + pos

def dinov2_vitb14(pretrained=True, **kwargs):
    model = DinoV2(img_size=518, patch_size=14, embed_dim=768, depth=12, num_heads=12,
                   init_values=1e-5, num_classes=0, dynamic_img_size=True)
    state = torch.load({path!r}, map_location="cpu", weights_only=True)
    state = {{k: v for k, v in state.items() if k != "mask_token"}}
    model.load_state_dict(state)
    return model
"""


def randomise(module: nn.Module, gen: torch.Generator) -> dict:
    """Every parameter drawn at random (LayerNorm scales around 1), as a state dict."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.ndim == 1 and ("norm" in name or name.endswith("gamma")):
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_(0.05 * noise)
    return {k: v.clone() for k, v in module.state_dict().items()}


def write_backbone(name: str, cache, authors, gen):
    """One backbone's files: in the zip's DINO layout, or as the authors' file (+ for DINO
    ViT-B/16 the full training checkpoint the zip carries, whose head the package reads)."""
    if name == "dino_vitb16":
        torch.save(randomise(vit_base(patch_size=16), gen), authors["dino_vitb16"])
        head = DINOHead(768, 2048)
        head.last_layer = nn.Linear(256, 2048, bias=False)
        sd = {f"module.head.{k}": v for k, v in randomise(head, gen).items()}
        torch.save({"student": sd}, cache / "dino_vitb16_pretrain.pth")
    elif name == "dinov2_vitb14":
        import timm

        model = timm.create_model("vit_base_patch14_dinov2", pretrained=False, num_classes=0)
        state = randomise(model, gen)
        state["mask_token"] = torch.zeros(1, 768)  # in the authors' file, unused
        torch.save(state, authors["dinov2_vitb14"])
        torch.save(state, cache / "dinov2_vitb14_pretrain.pth")
    elif name == "synclr_vitb16":
        sd = randomise(vit_base(patch_size=16), gen)
        torch.save({"model": {f"module.visual.{k}": v for k, v in sd.items()}},
                   cache / "synclr_vit_b_16.pth")  # fmt: skip
    else:  # (open_)clip_vitbNN: DINO layout, ln_pre as pos_drop, zero patch bias, + proj
        vit = vit_base(patch_size=int(name[-2:]))
        vit.pos_drop = nn.LayerNorm(768)
        sd = randomise(vit, gen)
        sd["patch_embed.proj.bias"].zero_()
        sd["proj"] = 0.05 * torch.randn(768, 512, generator=gen)
        torch.save({"state_dict": sd}, cache / f"{name}_pretrain.pth.tar")


def package_model(kind: str, cache, lora_scale: float, monkeypatch):
    """The package's model on the files in `cache`, after writing a LoRA adapter (saved by
    peft) into it: random A and B drawn with `lora_scale`, or (0) peft's own initialisation,
    where B is zero, so the adapter changes nothing."""
    from peft import LoraConfig, get_peft_model

    def local_hub(repo, model, *args, **kwargs):  # the authors' repos, served locally
        folder = repo.split(":")[0].replace("/", "_")
        return HUB_LOAD(str(cache / "hub" / folder), model, source="local")

    monkeypatch.setattr(torch.hub, "load", local_hub)
    tag = dreamsim_models.TYPES[kind].lora_dir
    base = dreamsim.model.PerceptualModel(
        **dreamsim_args["model_config"][kind], device="cpu", load_dir=str(cache)
    )
    config = LoraConfig(r=16, lora_alpha=0.5, lora_dropout=0.3, bias="none",
                        target_modules=["qkv"])  # fmt: skip
    peft_model = get_peft_model(base, config)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name and lora_scale:
                p.copy_(lora_scale * torch.randn(p.shape, generator=gen))
    peft_model.save_pretrained(str(cache / tag))
    del peft_model, base
    return dreamsim.dreamsim(
        pretrained=True, device="cpu", cache_dir=str(cache), dreamsim_type=kind
    )  # (model, preprocess); fmt: skip


def make_world(kind: str, tmp_path, monkeypatch):
    """Files for one type: the package's cache folder, the same files as our zip, and the
    authors' files; returns (package model, zip path, authors' paths)."""
    cache = tmp_path / "package"
    (cache / "hub").mkdir(parents=True)
    authors = {b: tmp_path / f"authors-{b}.pth" for b in ("dino_vitb16", "dinov2_vitb14")}
    hubconf = {"dino_vitb16": ("facebookresearch_dino", HUBCONF_DINO),
               "dinov2_vitb14": ("facebookresearch_dinov2", HUBCONF_DINOV2)}  # fmt: skip
    gen = torch.Generator().manual_seed(3)
    for name in dreamsim_models.TYPES[kind].backbones:
        write_backbone(name, cache, authors, gen)
        if name in hubconf:
            folder, text = hubconf[name]
            (cache / "hub" / folder).mkdir()
            (cache / "hub" / folder / "hubconf.py").write_text(text.format(path=str(authors[name])))
    model, preprocess = package_model(kind, cache, 0.5, monkeypatch)
    zip_path = tmp_path / f"dreamsim_{kind}_checkpoint.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for path in sorted(cache.rglob("*")):
            if path.is_file() and "hub" not in path.relative_to(cache).parts:
                zf.write(path, path.relative_to(cache))
    needs = [b for b in dreamsim_models.TYPES[kind].backbones if b in authors]
    return model, preprocess, zip_path, [authors[b] for b in needs], cache


@pytest.mark.parametrize("kind", sorted(dreamsim_models.TYPES))
def test_dreamsim_equals_the_package(kind, tmp_path, monkeypatch):
    package, preprocess, zip_path, authors, cache = make_world(kind, tmp_path, monkeypatch)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 500, 3), np.uint8))
    ours_pre = embed.preprocessing(image_encoders.REGISTRY[f"dreamsim_{kind}"])(image)
    assert torch.equal(ours_pre[None], preprocess(image))  # squashed to 224 x 224, in [0, 1]
    x = torch.rand(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():  # one model in memory at a time
        expected = package.embed(x)
        del package
        ours = dreamsim_models.build(kind, zip_path, authors, lora=True)(x)
        base = dreamsim_models.build(kind, zip_path, authors, lora=False)(x)
    assert ours.shape == (3, dreamsim_models.TYPES[kind].dim)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=2e-5)
    # the LoRA matters at this scale, so equality above is not the backbone's alone
    assert (base - expected).abs().max() > 100 * 2e-5
    # without LoRA: the package's model with an untrained (zero-B) adapter, i.e. the backbone
    untrained, _ = package_model(kind, cache, 0.0, monkeypatch)
    with torch.inference_mode():
        torch.testing.assert_close(base, untrained.embed(x), rtol=1e-4, atol=2e-5)


def cubic_weights(coords: np.ndarray, size: int) -> np.ndarray:
    """(len(coords), size) bicubic convolution matrix: Keys' kernel with a = -0.75 (as
    PyTorch), taps floor(c) - 1 .. floor(c) + 2 clamped to the border."""
    a = -0.75
    out = np.zeros((len(coords), size))
    for row, c in enumerate(coords):
        base = int(np.floor(c))
        for tap in range(base - 1, base + 3):
            d = abs(c - tap)
            w = (
                ((a + 2) * d - (a + 3)) * d * d + 1
                if d <= 1
                else ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
            )
            out[row, min(max(tap, 0), size - 1)] += w
    return out


def test_dinov2_position_grid_resampled_as_dinov2_does():
    """37 x 37 -> 16 x 16 with DINOv2's scale 16.1 / 37, against bicubic convolution written
    out at the centres (i + 0.5) / scale - 0.5; a plain 16 x 16 resize differs."""
    native, grid, dim = 37, 16, 3
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(1, 1 + native * native, dim))
    out = dreamsim_models._dinov2_pos_embed(torch.tensor(pos, dtype=torch.float32), grid)
    assert out.shape == (1, 1 + grid * grid, dim)
    np.testing.assert_allclose(out[0, 0].numpy(), pos[0, 0], rtol=1e-6)
    field = pos[0, 1:].reshape(native, native, dim)

    def resample(centres):
        w = cubic_weights(centres, native)
        return np.einsum("iy,jx,yxd->ijd", w, w, field).reshape(-1, dim)

    ours = out[0, 1:].numpy()
    np.testing.assert_allclose(
        ours, resample((np.arange(grid) + 0.5) * native / (grid + 0.1) - 0.5), atol=1e-4
    )
    plain = resample((np.arange(grid) + 0.5) * native / grid - 0.5)
    assert np.abs(ours - plain).max() > 0.1


def test_registry_entries(tmp_path):
    for kind, spec in dreamsim_models.TYPES.items():
        aligned = image_encoders.REGISTRY[f"dreamsim_{kind}"]
        base = image_encoders.REGISTRY[f"dreamsim_{kind}_base"]
        assert aligned.dim == base.dim == spec.dim
        assert aligned.files == base.files
        assert aligned.files[0].url == (
            f"https://github.com/ssundaram21/dreamsim/releases/download/{spec.release}/"
            f"dreamsim_{kind}_checkpoint.zip"
        )
        assert "aspect ratio not kept" in aligned.preprocessing
    assert image_encoders.REGISTRY["dreamsim_ensemble"].dim == 768 + 512 + 512
    dino = image_encoders.REGISTRY["dreamsim_dino_vitb16"]
    assert dino.files[1] == image_encoders.REGISTRY["dino_vitb16"].files[0]  # shared cache


def test_a_zip_without_its_adapter_fails_clearly(tmp_path):
    zip_path = tmp_path / "dreamsim_clip_vitb32_checkpoint.zip"
    vit = vit_base(patch_size=32)
    vit.pos_drop = nn.LayerNorm(768)
    sd = dict(vit.state_dict(), proj=torch.randn(768, 512))
    sd["patch_embed.proj.bias"].zero_()
    torch.save({"state_dict": sd}, tmp_path / "b.pth.tar")
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.write(tmp_path / "b.pth.tar", "clip_vitb32_pretrain.pth.tar")
    with pytest.raises(InputError, match="lacks clip_vitb32_single_lora/adapter_config.json"):
        dreamsim_models.build("clip_vitb32", zip_path, [])
    model = dreamsim_models.build("clip_vitb32", zip_path, [], lora=False)
    assert model(torch.rand(1, 3, 224, 224)).shape == (1, 512)
    assert math.isclose(model(torch.rand(1, 3, 224, 224)).norm().item(), 1.0, rel_tol=1e-5)
