"""DreamSim (Fu et al., NeurIPS 2023) from its published checkpoint zips, on timm's ViTs.

A DreamSim checkpoint zip (github.com/ssundaram21/dreamsim releases) holds the backbone
weights in DINO's ViT layout (the CLIP, OpenCLIP and SynCLR backbones) and the LoRA adapter
that peft saved (`<tag>_lora/adapter_config.json` and `adapter_model.bin` or
`.safetensors`). The DINO and DINOv2 backbones are their authors' files, which the `dreamsim`
package gets through torch.hub. This module builds what `dreamsim.dreamsim(dreamsim_type=...)`
followed by `model.embed(img)` computes, without peft, transformers or torch.hub (which needs
GitHub each time a model is built):

* input: the image resized to 224 x 224, bicubic (the aspect ratio is not kept), in [0, 1];
  each backbone applies its own mean/std normalisation.
* one feature per backbone: for CLIP and OpenCLIP, the projected embedding (final LayerNorm
  on the CLS token, then the projection); for DINO, DINOv2 and SynCLR, the CLS token as it
  leaves the last block, before the final LayerNorm (DreamSim hooks block 11).
* the LoRA update merged into each weight it adapts: W + (lora_alpha / r) B A, which is what
  peft computes in eval mode.
* the features concatenated (the ensemble), then centred and L2-normalised per image, as
  `model.embed` does by default (`normalize_embeds=True`).

Without the LoRA (`lora=False`) the same model is DreamSim's unaligned backbone, with the same
features. Checked against the `dreamsim` package on the same files in tests/test_dreamsim.py.
DreamSim's OpenCLIP backbones use exact GELU, as the package does (the laion400m ViT-B/32 was
trained with QuickGELU; DreamSim was fine-tuned on the GELU version).
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from visdecode.errors import InputError

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
OPENAI = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
IMAGE_SIZE = 224
URL = (
    "https://github.com/ssundaram21/dreamsim/releases/download/{tag}/dreamsim_{kind}_checkpoint.zip"
)


@dataclass(frozen=True)
class Backbone:
    timm_name: str
    feature: str  # "cls": CLS token before the final norm; "embedding": CLIP's projected one
    dim: int
    norm: tuple[tuple[float, float, float], tuple[float, float, float]]  # mean, std
    member: str | None  # its file in the zip; None: the authors' file (DINO, DINOv2)


BACKBONES = {
    "dino_vitb16": Backbone("vit_base_patch16_224.dino", "cls", 768, IMAGENET, None),
    "dinov2_vitb14": Backbone("vit_base_patch14_dinov2.lvd142m", "cls", 768, IMAGENET, None),
    "synclr_vitb16": Backbone("vit_base_patch16_224", "cls", 768, IMAGENET, "synclr_vit_b_16.pth"),
    "clip_vitb32": Backbone("vit_base_patch32_clip_quickgelu_224", "embedding", 512, OPENAI,
                            "clip_vitb32_pretrain.pth.tar"),
    "clip_vitb16": Backbone("vit_base_patch16_clip_quickgelu_224", "embedding", 512, OPENAI,
                            "clip_vitb16_pretrain.pth.tar"),
    "open_clip_vitb32": Backbone("vit_base_patch32_clip_224", "embedding", 512, OPENAI,
                                 "open_clip_vitb32_pretrain.pth.tar"),
    "open_clip_vitb16": Backbone("vit_base_patch16_clip_224", "embedding", 512, OPENAI,
                                 "open_clip_vitb16_pretrain.pth.tar"),
}  # fmt: skip


@dataclass(frozen=True)
class DreamSimType:
    backbones: tuple[str, ...]
    lora_dir: str  # the adapter's folder in the zip
    release: str  # the GitHub release tag that holds the zip

    @property
    def dim(self) -> int:
        return sum(BACKBONES[b].dim for b in self.backbones)

    def url(self, kind: str) -> str:
        return URL.format(tag=self.release, kind=kind)


TYPES = {
    "clip_vitb32": DreamSimType(("clip_vitb32",), "clip_vitb32_single_lora", "v0.2.0-checkpoints"),
    "open_clip_vitb32": DreamSimType(
        ("open_clip_vitb32",), "open_clip_vitb32_single_lora", "v0.2.0-checkpoints"
    ),
    "dino_vitb16": DreamSimType(("dino_vitb16",), "dino_vitb16_single_lora", "v0.2.0-checkpoints"),
    "dinov2_vitb14": DreamSimType(
        ("dinov2_vitb14",), "dinov2_vitb14_single_lora", "v0.2.1-checkpoints"
    ),
    "synclr_vitb16": DreamSimType(
        ("synclr_vitb16",), "synclr_vitb16_single_lora", "v0.2.1-checkpoints"
    ),
    "ensemble": DreamSimType(
        ("dino_vitb16", "clip_vitb16", "open_clip_vitb16"), "ensemble_lora", "v0.2.0-checkpoints"
    ),
}


class DreamSim(nn.Module):
    """Backbones over a [0, 1] image batch -> concatenated features, centred and L2-normalised
    per image."""

    def __init__(self, backbones: list[nn.Module], norms: list[tuple]):
        super().__init__()
        self.extractors = nn.ModuleList(backbones)
        for i, (mean, std) in enumerate(norms):
            self.register_buffer(f"mean{i}", torch.tensor(mean).view(1, 3, 1, 1))
            self.register_buffer(f"std{i}", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [
            extractor((x - getattr(self, f"mean{i}")) / getattr(self, f"std{i}"))
            for i, extractor in enumerate(self.extractors)
        ]
        z = torch.cat(feats, dim=1)
        z = z - z.mean(dim=1, keepdim=True)
        return z / z.norm(dim=1, keepdim=True)


class _Zip:
    """Members of a checkpoint zip, found by their path's end (the zip may add a folder)."""

    def __init__(self, path: Path):
        self.path = path
        with zipfile.ZipFile(path) as zf:
            self.names = [n for n in zf.namelist() if not n.endswith("/")]

    def find(self, suffix: str) -> str | None:
        hits = [n for n in self.names if n == suffix or n.endswith("/" + suffix)]
        return hits[0] if hits else None

    def read(self, suffix: str) -> bytes:
        name = self.find(suffix)
        if name is None:
            raise InputError(
                f"{self.path}: DreamSim checkpoint zip lacks {suffix}; delete it to download "
                "it again"
            )
        with zipfile.ZipFile(self.path) as zf:
            return zf.read(name)

    def torch_load(self, suffix: str):
        return torch.load(io.BytesIO(self.read(suffix)), map_location="cpu", weights_only=True)


def _dinov2_pos_embed(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """DINOv2's own resampling of its position grid (done at run time in DINOv2's model):
    bicubic, no antialiasing, scale factor (grid + 0.1) / native grid."""
    n = pos.shape[1] - 1
    native = math.isqrt(n)
    patches = pos[:, 1:].float().reshape(1, native, native, -1).permute(0, 3, 1, 2)
    scale = (grid + 0.1) / native
    patches = nn.functional.interpolate(
        patches, scale_factor=(scale, scale), mode="bicubic", antialias=False
    )
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
    return torch.cat([pos[:, :1].float(), patches], dim=1)


def _from_authors_file(backbone: Backbone, path: Path) -> nn.Module:
    """DINO / DINOv2 from the authors' checkpoint through timm's conversion, at 224 px."""
    import timm

    model = timm.create_model(
        backbone.timm_name,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(path)},
        num_classes=0,
        img_size=IMAGE_SIZE,
    )
    if "dinov2" in backbone.timm_name:
        state = torch.load(path, map_location="cpu", weights_only=True)
        grid = IMAGE_SIZE // model.patch_embed.patch_size[0]
        with torch.no_grad():
            model.pos_embed.copy_(_dinov2_pos_embed(state["pos_embed"], grid))
    return model


def _from_zip(backbone: Backbone, archive: _Zip) -> nn.Module:
    """A backbone stored in DINO's ViT layout (DreamSim's conversion of CLIP and SynCLR)."""
    import timm

    loaded = archive.torch_load(backbone.member)
    if backbone.feature == "embedding":  # CLIP: {"state_dict": DINO layout + "proj"}
        state = dict(loaded["state_dict"])
        proj = state.pop("proj")
        bias = state.pop("patch_embed.proj.bias", None)
        if bias is not None and bias.abs().max() > 0:
            raise InputError(f"{archive.path}: {backbone.member} has a patch-embedding bias, "
                             "which CLIP does not; not a DreamSim CLIP backbone")  # fmt: skip
        state["norm_pre.weight"] = state.pop("pos_drop.weight")  # DreamSim keeps ln_pre there
        state["norm_pre.bias"] = state.pop("pos_drop.bias")
        state["head.weight"] = proj.T
        state["head.bias"] = torch.zeros(proj.shape[1])
        model = timm.create_model(backbone.timm_name, pretrained=False, num_classes=proj.shape[1])
    else:  # SynCLR: {"model": {"module.visual." + DINO layout}}
        prefix = "module.visual."
        state = {k.removeprefix(prefix): v for k, v in loaded["model"].items()}
        model = timm.create_model(backbone.timm_name, pretrained=False, num_classes=0)
    model.load_state_dict(state)
    return model


ADAPTER_KEY = re.compile(
    r"^base_model\.model\.extractor_list\.(\d+)\.model\.(.+)\.lora_([AB])\.weight$"
)


def merge_lora(model: DreamSim, archive: _Zip, lora_dir: str) -> int:
    """Add DreamSim's LoRA update to the weights it adapts; returns how many it changed."""
    config = json.loads(archive.read(f"{lora_dir}/adapter_config.json"))
    for key, supported in (("bias", "none"), ("use_dora", False), ("fan_in_fan_out", False)):
        if config.get(key, supported) != supported:
            raise InputError(f"{archive.path}: LoRA adapter with {key}={config[key]!r} is not "
                             f"supported (DreamSim's adapters use {supported!r})")  # fmt: skip
    rank = config["r"]
    scaling = config["lora_alpha"] / (math.sqrt(rank) if config.get("use_rslora") else rank)
    if archive.find(f"{lora_dir}/adapter_model.safetensors"):
        from safetensors.torch import load as load_safetensors

        state = load_safetensors(archive.read(f"{lora_dir}/adapter_model.safetensors"))
    else:
        state = archive.torch_load(f"{lora_dir}/adapter_model.bin")
    pairs: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = ADAPTER_KEY.match(key)
        if match is None:
            raise InputError(f"{archive.path}: unexpected LoRA weight {key}; not a DreamSim "
                             "adapter")  # fmt: skip
        index, module, half = match.groups()
        pairs.setdefault((int(index), module), {})[half] = value
    if not pairs:
        raise InputError(f"{archive.path}: {lora_dir} holds no LoRA weights")
    with torch.no_grad():
        for (index, module), ab in pairs.items():
            target = model.extractors[index].get_submodule(module)
            a, b = ab["A"].double(), ab["B"].double()
            if not isinstance(target, nn.Linear) or target.weight.shape != (b.shape[0], a.shape[1]):
                raise InputError(f"{archive.path}: LoRA weight for {module} does not fit this "
                                 "model; wrong zip for this DreamSim type")  # fmt: skip
            target.weight.copy_((target.weight.double() + scaling * (b @ a)).float())
    return len(pairs)


def build(kind: str, zip_path: Path, authors_files: list[Path], lora: bool = True) -> DreamSim:
    """DreamSim `kind` (a key of TYPES) from its zip, and the authors' DINO/DINOv2 files in the
    order of the type's backbones that need them; `lora=False`: the unaligned backbone."""
    spec = TYPES[kind]
    archive = _Zip(zip_path)
    authors = iter(authors_files)
    models, norms = [], []
    for name in spec.backbones:
        backbone = BACKBONES[name]
        if backbone.member is None:
            model = _from_authors_file(backbone, next(authors))
        else:
            model = _from_zip(backbone, archive)
        if backbone.feature == "cls":
            model.norm = nn.Identity()  # the CLS token as it leaves the last block
        models.append(model)
        norms.append(backbone.norm)
    dreamsim = DreamSim(models, norms)
    if lora:
        merge_lora(dreamsim, archive, spec.lora_dir)
    return dreamsim.eval()
