"""Image encoders by name: a registry of frozen models that map images to embeddings.

Each entry says its embedding dimension, its preprocessing and where its weights come from
(`visdecode.weights` fetches and caches them). Aligned/unaligned *pairs* are declared in config,
not here. Families:

* open_clip: OpenAI CLIP (ViT-B/32, ViT-L/14, RN50; OpenAI's own checkpoint files, whose URLs
  carry their SHA-256) and OpenCLIP (ViT-B/32 laion400m, ViT-L/14 laion2b and laion400m).
  The embedding is `encode_image`, unnormalised.
* timm: DINO ViT-B/16 and ViT-B/8, DINOv2 ViT-B/14 and ViT-L/14 (at 224 px, the position
  embedding resampled by timm), from the authors' checkpoint files. The embedding is the CLS
  token.
* dreamsim: DreamSim's LoRA fine-tunes (clip_vitb32, open_clip_vitb32, dino_vitb16,
  dinov2_vitb14, synclr_vitb16, ensemble) and, as `<name>_base`, the same model without its LoRA
  (its unaligned backbone, features taken the same way); see `visdecode.dreamsim_models`.
* harmonization: the Harmonization models (serre-lab's Keras .h5 files, read and converted to
  PyTorch by `visdecode.harmonization_models`), and their architectures' standard ImageNet
  weights as unaligned counterparts (timm's, or keras.applications' for ResNet50V2, which timm
  does not define).
* synthetic (offline, random-initialised, for the synthetic world only):
  ``synth_resnet18`` (timm's ResNet-18 definition, weights drawn with a fixed seed) and
  ``synth_resnet18_glocal`` (the same backbone and an affine transform fitted, as gLocal does,
  to simulated human odd-one-out judgements).
* null (the null-alignment control, `visdecode.derived_encoders.NULL`): ``null_<aligned>`` for
  every transform-aligned encoder, its transform's directions randomised (`random_directions`).
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from visdecode import weights
from visdecode.derived_encoders import GLOCAL, NULL
from visdecode.errors import InputError
from visdecode.weights import WeightFile

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SYNTH_BACKBONE_SEED = 1234


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    family: str  # open_clip | timm | glocal | dreamsim | harmonization | synthetic
    model: str  # the model definition, as the family names it
    dim: int
    image_size: int  # centre crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str  # where the weights come from, in words
    files: tuple[WeightFile, ...]  # weight files, fetched into the cache
    build: Callable[[list[Path]], nn.Module] | None  # weight file paths -> module (eval mode)
    resize: int | None = None  # shorter side before the centre crop (default: image_size)
    interpolation: str = "bicubic"  # torchvision's; tf_bicubic: TensorFlow's, to a square
    crop: bool = True  # False: resize to image_size x image_size (aspect ratio not kept)
    synthetic: bool = False
    unavailable: str | None = None  # why no weights can be had (then build is None)
    # Derived encoders (visdecode.derived_encoders): the encoder whose embeddings `head`
    # transforms; head builds that transform from its own files (files[1:]); build is the
    # backbone then the head, for embedding from the images.
    backbone: str | None = None
    head: Callable[[list[Path]], nn.Module] | None = None

    @property
    def preprocessing(self) -> str:
        if self.interpolation == "tf_bicubic":  # the Keras models (harmonization_models)
            return (
                f"resize to {self.image_size}x{self.image_size} with TensorFlow's bicubic "
                f"(aspect ratio not kept), /255, normalise mean={self.mean} std={self.std}"
            )
        if not self.crop:  # DreamSim: each backbone normalises inside the model
            return (
                f"resize to {self.image_size}x{self.image_size} {self.interpolation} (aspect "
                "ratio not kept), values in [0, 1]; normalised inside the model per backbone"
            )
        return (
            f"resize {self.resize or self.image_size} {self.interpolation}, centre crop "
            f"{self.image_size}, normalise mean={self.mean} std={self.std}"
        )


class AffineHead(nn.Module):
    """gLocal-style transform: ((x - mean) / scale) @ W + b."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(()))
        self.weight = nn.Parameter(torch.eye(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.scale) @ self.weight + self.bias

    @classmethod
    def from_glocal(cls, path: Path, dim: int) -> AffineHead:
        """A published gLocal transform (`transform.npz`: `weights` (D, D), optional `bias`
        (D,), and the THINGS embeddings' `mean` and `std`, scalars in the published files)."""
        with np.load(path) as npz:
            missing = [k for k in ("weights", "mean", "std") if k not in npz]
            if missing:
                raise InputError(f"{path}: gLocal transform lacks {', '.join(missing)}")
            weights = npz["weights"]
            if weights.shape != (dim, dim):
                raise InputError(
                    f"{path}: gLocal weights are {weights.shape}, the backbone gives {dim}-d "
                    "embeddings; wrong transform file for this encoder"
                )
            head = cls(dim)
            with torch.no_grad():
                head.weight.copy_(torch.from_numpy(weights.astype(np.float32)))
                if "bias" in npz:
                    head.bias.copy_(torch.from_numpy(npz["bias"].astype(np.float32).ravel()))
                head.mean.copy_(torch.from_numpy(np.broadcast_to(npz["mean"], (dim,)).copy()))
                head.scale.copy_(torch.tensor(float(npz["std"])))
        return head.eval()


def synth_backbone() -> nn.Module:
    """timm ResNet-18 (pooled 512-d features) with seeded random weights."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SYNTH_BACKBONE_SEED)
        model = timm.create_model("resnet18", pretrained=False, num_classes=0)
    return model.eval()


def _build_synth_resnet18(paths: list[Path]) -> nn.Module:
    model = synth_backbone()
    model.load_state_dict(torch.load(paths[0], map_location="cpu", weights_only=True))
    return model.eval()


def _synth_glocal_head(paths: list[Path]) -> nn.Module:
    head = AffineHead(512)
    head.load_state_dict(torch.load(paths[0], map_location="cpu", weights_only=True))
    return head.eval()


def _build_synth_resnet18_glocal(paths: list[Path]) -> nn.Module:
    return nn.Sequential(_build_synth_resnet18(paths[:1]), _synth_glocal_head(paths[1:])).eval()


class ImageTower(nn.Module):
    """A CLIP model's image side: forward = encode_image (unnormalised)."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(x)


def _openai_clip(paths: list[Path]) -> nn.Module:
    """OpenAI's checkpoint (a TorchScript archive or its state dict) via open_clip's loader."""
    from open_clip.openai import load_openai_model

    return ImageTower(load_openai_model(str(paths[0]), precision="fp32", device="cpu")).eval()


def _open_clip(arch: str, quick_gelu: bool) -> Callable[[list[Path]], nn.Module]:
    def build(paths: list[Path]) -> nn.Module:
        import open_clip

        model = open_clip.create_model(arch, pretrained=str(paths[0]), quick_gelu=quick_gelu)
        return ImageTower(model).eval()

    return build


def _timm(name: str, image_size: int | None) -> Callable[[list[Path]], nn.Module]:
    """image_size: for the models that take it (ViTs: their position grid is resampled);
    None for those that do not (convolutional ones)."""

    def build(paths: list[Path]) -> nn.Module:
        import timm

        size = {} if image_size is None else {"img_size": image_size}
        return timm.create_model(
            name,
            pretrained=True,  # from the file below, through timm's own checkpoint conversion
            pretrained_cfg_overlay={"file": str(paths[0])},
            num_classes=0,
            **size,
        ).eval()

    return build


OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
OPENAI_URL = "https://openaipublic.azureedge.net/clip/models/{sha}/{file}"
OPENCLIP_URL = "https://github.com/mlfoundations/open_clip/releases/download/v0.2-weights/{file}"
HF_URL = "https://huggingface.co/{repo}/resolve/main/{file}"
FB_URL = "https://dl.fbaipublicfiles.com/{path}"


def _openai(name: str, dim: int, file: str, sha: str, model: str) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        family="open_clip",
        model=model.replace("/", "-"),
        dim=dim,
        image_size=224,
        mean=OPENAI_MEAN,
        std=OPENAI_STD,
        weights=f"OpenAI CLIP {model} (OpenAI's checkpoint)",
        files=(WeightFile(f"openai-{file}", OPENAI_URL.format(sha=sha, file=file), sha256=sha),),
        build=_openai_clip,
    )


def _openclip(name, dim, arch, quick_gelu, words, file, mean=OPENAI_MEAN, std=OPENAI_STD):
    return EncoderSpec(
        name=name,
        family="open_clip",
        model=arch,
        dim=dim,
        image_size=224,
        mean=mean,
        std=std,
        weights=f"OpenCLIP {arch} {words}",
        files=(file,),
        build=_open_clip(arch, quick_gelu),
    )


def _dino(name: str, dim: int, timm_name: str, words: str, path: str) -> EncoderSpec:
    """Resize to 256, centre crop 224 (crop fraction 0.875, the usual ImageNet evaluation)."""
    return EncoderSpec(
        name=name,
        family="timm",
        model=timm_name,
        dim=dim,
        image_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights=f"{words} (the authors' checkpoint, loaded by timm)",
        files=(WeightFile(f"{name}-{Path(path).name}", FB_URL.format(path=path)),),
        build=_timm(timm_name, 224),
        resize=256,
    )


GLOCAL_URL = "https://github.com/LukasMut/gLocal/raw/main/transforms/{path}/transform.npz"


def _glocal(name: str, backbone: EncoderSpec, path: str) -> EncoderSpec:
    """A backbone followed by its published gLocal transform (no published checksum: the
    files' SHA-256 is recorded with the embeddings)."""

    def head(paths: list[Path]) -> nn.Module:
        return AffineHead.from_glocal(paths[0], backbone.dim)

    def build(paths: list[Path]) -> nn.Module:
        return nn.Sequential(backbone.build(paths[:1]), head(paths[1:])).eval()

    slug = path.replace("/", "_")
    return dataclasses.replace(
        backbone,
        name=name,
        family="glocal",
        weights=f"{backbone.weights} + gLocal transform ({path}, LukasMut/gLocal)",
        files=(backbone.files[0], WeightFile(f"glocal-{slug}.npz", GLOCAL_URL.format(path=path))),
        build=build,
        backbone=backbone.name,
        head=head,
    )


HARMONIZATION_URL = "https://storage.googleapis.com/serrelab/prj_harmonization/models/{file}"
KERAS_APPS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/{path}"
TIMM_HF_URL = "https://huggingface.co/timm/{model}/resolve/main/model.safetensors"


def _keras(arch: str) -> Callable[[list[Path]], nn.Module]:
    def build(paths: list[Path]) -> nn.Module:
        from visdecode import harmonization_models

        return harmonization_models.load(arch, paths[0])

    return build


def _keras_spec(name: str, arch: str, weights: str, file: WeightFile, mean, std) -> EncoderSpec:
    """A Keras model's file (no published SHA-256: the file's is recorded with the
    embeddings), converted to PyTorch on load (visdecode.harmonization_models); TensorFlow's
    bicubic resize to 224 x 224, then the normalisation its weights were trained with."""
    from visdecode.harmonization_models import ARCHS

    return EncoderSpec(
        name=name,
        family="harmonization",
        model=f"keras:{arch}",
        dim=ARCHS[arch].dim,
        image_size=224,
        mean=mean,
        std=std,
        weights=f"{weights} (Keras weights converted on load)",
        files=(file,),
        build=_keras(arch),
        interpolation="tf_bicubic",
    )


def _harmonization(name: str, arch: str, file: str) -> EncoderSpec:
    """A Harmonization model: the package's preprocess_input (ImageNet mean and s.d.)."""
    from visdecode.harmonization_models import ARCHS

    wf = WeightFile(f"harmonization-{file}", HARMONIZATION_URL.format(file=file))
    words = f"Harmonization {ARCHS[arch].words} (serre-lab, {file})"
    return _keras_spec(name, arch, words, wf, IMAGENET_MEAN, IMAGENET_STD)


def _imagenet_keras(name: str, arch: str, path: str, mean, std) -> EncoderSpec:
    """The same Keras architecture with keras.applications' ImageNet weights and their own
    preprocessing (ResNet50V2: mode 'tf', [-1, 1])."""
    from visdecode.harmonization_models import ARCHS

    wf = WeightFile(f"keras-{Path(path).name}", KERAS_APPS_URL.format(path=path))
    words = f"keras.applications {ARCHS[arch].words} ImageNet weights"
    return _keras_spec(name, arch, words, wf, mean, std)


def _imagenet_timm(name: str, model: str, dim: int, crop_pct: float, words: str,
                   mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic",
                   img_size: bool = False) -> EncoderSpec:  # fmt: skip
    """The same architecture's standard ImageNet weights in timm, with timm's evaluation
    transform for them (resize to 224 / crop_pct, centre crop 224, their normalisation)."""
    return EncoderSpec(
        name=name,
        family="timm",
        model=model,
        dim=dim,
        image_size=224,
        mean=mean,
        std=std,
        weights=f"{words} (timm {model}, Hugging Face; no published checksum)",
        files=(WeightFile(f"timm-{model}.safetensors", TIMM_HF_URL.format(model=model)),),
        build=_timm(model, 224 if img_size else None),
        resize=int(224 / crop_pct),
        interpolation=interpolation,
    )


def _dreamsim(kind: str, lora: bool, authors: dict[str, WeightFile]) -> EncoderSpec:
    """DreamSim `kind`: the release zip, plus the authors' DINO/DINOv2 files it builds on."""
    from visdecode import dreamsim_models

    spec = dreamsim_models.TYPES[kind]
    needs = [b for b in spec.backbones if dreamsim_models.BACKBONES[b].member is None]
    zip_file = WeightFile(f"dreamsim_{kind}_checkpoint.zip", spec.url(kind))

    def build(paths: list[Path]) -> nn.Module:
        return dreamsim_models.build(kind, paths[0], paths[1:], lora=lora)

    return EncoderSpec(
        name=f"dreamsim_{kind}" + ("" if lora else "_base"),
        family="dreamsim",
        model=f"dreamsim:{kind}" + ("" if lora else " without LoRA"),
        dim=spec.dim,
        image_size=dreamsim_models.IMAGE_SIZE,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        weights=(
            f"DreamSim {kind} ({spec.release}, ssundaram21/dreamsim; no published checksum, "
            "the SHA-256 is recorded with the embeddings)"
            + ("" if lora else ": the backbone without its LoRA")
        ),
        files=(zip_file, *(authors[b] for b in needs)),
        build=build,
        crop=False,
    )


REGISTRY: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        _openai("clip_vitb32", 512, "ViT-B-32.pt",
                "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af", "ViT-B/32"),
        _openai("clip_vitl14", 768, "ViT-L-14.pt",
                "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836", "ViT-L/14"),
        _openai("clip_rn50", 1024, "RN50.pt",
                "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762", "RN50"),
        _openclip("openclip_vitb32_laion400m", 512, "ViT-B-32", True, "laion400m_e32",
                  WeightFile("vit_b_32-quickgelu-laion400m_e32-46683a32.pt",
                             OPENCLIP_URL.format(file="vit_b_32-quickgelu-laion400m_e32-46683a32.pt"),
                             sha256_prefix="46683a32")),
        _openclip("openclip_vitl14_laion400m", 768, "ViT-L-14", False, "laion400m_e32",
                  WeightFile("vit_l_14-laion400m_e32-3d133497.pt",
                             OPENCLIP_URL.format(file="vit_l_14-laion400m_e32-3d133497.pt"),
                             sha256_prefix="3d133497")),
        _openclip("openclip_vitl14_laion2b", 768, "ViT-L-14", False, "laion2b_s32b_b82k (no "
                  "published checksum; the SHA-256 is recorded with the embeddings)",
                  WeightFile("openclip-vit-l-14-laion2b_s32b_b82k.bin",
                             HF_URL.format(repo="laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
                                           file="open_clip_pytorch_model.bin")),
                  mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        _dino("dino_vitb16", 768, "vit_base_patch16_224.dino", "DINO ViT-B/16",
              "dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"),
        _dino("dino_vitb8", 768, "vit_base_patch8_224.dino", "DINO ViT-B/8",
              "dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth"),
        _dino("dinov2_vitb14", 768, "vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14",
              "dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth"),
        _dino("dinov2_vitl14", 1024, "vit_large_patch14_dinov2.lvd142m", "DINOv2 ViT-L/14",
              "dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth"),
        _harmonization("harmonization_vitb16", "vitb16", "vit-b16_harmonized.h5"),
        _harmonization("harmonization_resnet50", "resnet50v2", "resnet50v2_harmonized.h5"),
        _harmonization("harmonization_vgg16", "vgg16", "vgg16_harmonized.h5"),
        _harmonization("harmonization_convnext", "convnext_tiny", "convnext_tiny_harmonized.h5"),
        _harmonization("harmonization_levit", "levit128", "levit_small_harmonized.h5"),
        _harmonization("harmonization_efficientnetb0", "efficientnetb0",
                       "efficientnetB0_harmonized.h5"),
        _harmonization("harmonization_maxvit", "maxvit_tiny", "maxvit_tiny_harmonized.h5"),
        _imagenet_timm("vitb16_imagenet", "vit_base_patch16_224.orig_in21k_ft_in1k", 768, 0.9,
                       "ViT-B/16, Google's original weights (ImageNet-21k, fine-tuned on 1k)",
                       mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), img_size=True),
        _imagenet_keras("resnet50v2_imagenet", "resnet50v2",
                        "resnet/resnet50v2_weights_tf_dim_ordering_tf_kernels.h5",
                        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        _imagenet_timm("vgg16_imagenet", "vgg16.tv_in1k", 4096, 0.875,
                       "VGG-16, torchvision's ImageNet weights", interpolation="bilinear"),
        _imagenet_timm("convnext_imagenet", "convnext_tiny.fb_in1k", 768, 0.875,
                       "ConvNeXt-T, the authors' ImageNet-1k weights"),
        _imagenet_timm("levit_imagenet", "levit_128.fb_dist_in1k", 384, 0.9,
                       "LeViT-128, the authors' ImageNet-1k weights", img_size=True),
        _imagenet_timm("efficientnetb0_imagenet", "tf_efficientnet_b0.aa_in1k", 1280, 0.875,
                       "EfficientNet-B0, the TensorFlow release's AutoAugment ImageNet weights "
                       "(those of qubvel's efficientnet package)"),
        _imagenet_timm("maxvit_imagenet", "maxvit_tiny_tf_224.in1k", 512, 0.95,
                       "MaxViT-T, the TensorFlow release's ImageNet-1k weights", img_size=True),
        EncoderSpec(
            name="synth_resnet18",
            family="synthetic",
            model="resnet18",
            dim=512,
            image_size=128,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            weights="synthetic world: timm resnet18, RANDOM weights (seed 1234), not pretrained",
            files=(WeightFile("synth_resnet18.pt"),),
            build=_build_synth_resnet18,
            synthetic=True,
        ),
        EncoderSpec(
            name="synth_resnet18_glocal",
            family="synthetic",
            model="resnet18",
            dim=512,
            image_size=128,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            weights=(
                "synthetic world: synth_resnet18 (RANDOM weights) + gLocal-style affine "
                "transform fitted to simulated human odd-one-out judgements"
            ),
            files=(WeightFile("synth_resnet18.pt"), WeightFile("synth_resnet18_glocal.pt")),
            build=_build_synth_resnet18_glocal,
            synthetic=True,
            backbone="synth_resnet18",
            head=_synth_glocal_head,
        ),
    )
}  # fmt: skip
REGISTRY.update(
    {name: _glocal(name, REGISTRY[backbone], path) for name, (backbone, path) in GLOCAL.items()}
)


def random_directions(head: AffineHead, seed: int) -> AffineHead:
    """The transform with W = U S V^T replaced by Q1 S Q2^T, Q1 and Q2 seeded random orthogonal
    matrices (Haar, from the QR of Gaussian matrices): the same singular values, so a change of
    the space as large, in directions that carry nothing of the judgements it was fitted to.
    Centring, scale and bias are kept."""
    gen = torch.Generator().manual_seed(seed)
    w = head.weight.detach().double()
    s = torch.linalg.svdvals(w)

    def haar(n: int) -> torch.Tensor:
        q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
        return q * torch.sign(torch.diagonal(r))

    with torch.no_grad():
        head.weight.copy_((haar(len(s)) * s) @ haar(len(s)).T)
    # recorded with the embeddings: near 0, the transform is close to a scaled rotation, and
    # both it and this null change the space little
    head.control = {"null_seed": seed, "singular_value_spread": float(s.std() / s.mean())}
    return head.eval()


def _null(name: str, aligned: EncoderSpec) -> EncoderSpec:
    seed = zlib.crc32(name.encode())

    def head(paths: list[Path]) -> nn.Module:
        return random_directions(aligned.head(paths), seed)

    def build(paths: list[Path]) -> nn.Module:
        return nn.Sequential(REGISTRY[aligned.backbone].build(paths[:1]), head(paths[1:])).eval()

    return dataclasses.replace(
        aligned,
        name=name,
        weights=f"CONTROL: {aligned.weights}, the transform's directions randomised (seed "
        f"{seed}, singular values kept)",
        build=build,
        head=head,
    )


REGISTRY.update({null: _null(null, REGISTRY[aligned]) for null, aligned in NULL.items()})


DREAMSIM = ("clip_vitb32", "open_clip_vitb32", "dino_vitb16", "dinov2_vitb14", "synclr_vitb16",
            "ensemble")  # fmt: skip
_AUTHORS = {b: REGISTRY[b].files[0] for b in ("dino_vitb16", "dinov2_vitb14")}
REGISTRY.update(
    {s.name: s for kind in DREAMSIM for s in (_dreamsim(kind, True, _AUTHORS),
                                               _dreamsim(kind, False, _AUTHORS))}
)  # fmt: skip


def get(name: str) -> EncoderSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown image encoder '{name}'; known: {', '.join(sorted(REGISTRY))}"
        ) from None


def load(name: str, cache_dir: Path | str, local: Path | str | None = None):
    """(spec, model in eval mode, weight file paths): the weights fetched into `cache_dir` on
    first use, or read from `local` (a checkpoint file, for single-file encoders)."""
    spec = get(name)
    if spec.unavailable:
        raise InputError(f"image encoder '{name}' cannot be loaded: {spec.unavailable}")
    if local is not None and len(spec.files) != 1:
        raise InputError(f"image encoder '{name}' has {len(spec.files)} weight files; "
                         "local_weights takes encoders with one")  # fmt: skip
    paths = [weights.fetch(name, wf, cache_dir, local) for wf in spec.files]
    return spec, _built(spec.build, paths, f"a checkpoint of image encoder '{name}'"), paths


def _built(make: Callable[[list[Path]], nn.Module], paths: list[Path], what: str) -> nn.Module:
    """make(paths) in eval mode; a file that is not `what` gives one line naming it."""
    try:
        return make(paths).eval()
    except InputError:
        raise
    except Exception as err:
        raise InputError(
            f"{paths[0]}: not {what} ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}); delete it to download it again"
        ) from None


def derived(name: str) -> EncoderSpec:
    """The spec of a derived encoder; a clear error for any other."""
    spec = get(name)
    if spec.head is None:
        raise InputError(
            f"image encoder '{name}' is not derived from another encoder's embeddings; embed "
            "it from the images (rule embed, `visdecode embed`)"
        )
    return spec


def load_head(name: str, cache_dir: Path | str):
    """(spec, transform in eval mode, its weight file paths) of a derived encoder: what it
    applies to its backbone's embeddings. Only the transform's own files are fetched."""
    spec = derived(name)
    own = spec.files[1:]  # files[0] is the backbone's
    paths = [weights.fetch(name, wf, cache_dir) for wf in own]
    return spec, _built(spec.head, paths, f"the transform of image encoder '{name}'"), paths


def fit_glocal(
    embeddings: np.ndarray,
    triplets: np.ndarray,
    odd: np.ndarray,
    reg: float = 1e-5,
    steps: int = 600,
    lr: float = 0.01,
    seed: int = 0,
) -> tuple[AffineHead, dict]:
    """Fit an affine transform so that dot-product similarity predicts the odd one out.

    gLocal's global objective (odd-one-out cross-entropy over the three pair similarities)
    with a penalty ||W - I||^2 that keeps the transform near the original space (gLocal keeps
    the local structure with a contrastive term; the penalty plays that role here).
    10% of triplets are held out to report the fit.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(embeddings, dtype=torch.float32)
    head = AffineHead(x.shape[1])
    head.mean.copy_(x.mean(0))
    head.scale.copy_((x - x.mean(0)).norm(dim=1).mean())
    trip = torch.as_tensor(triplets)
    target = torch.as_tensor(odd)
    perm = torch.randperm(len(trip), generator=gen)
    n_val = max(1, len(trip) // 10)
    val, tr = perm[:n_val], perm[n_val:]
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    eye = torch.eye(x.shape[1])

    def pair_logits(idx: torch.Tensor) -> torch.Tensor:
        z = head(x)
        gram = z @ z.T
        a, b, c = (trip[idx, i] for i in range(3))
        return torch.stack([gram[b, c], gram[a, c], gram[a, b]], dim=1)

    def accuracy(idx: torch.Tensor) -> float:
        with torch.no_grad():
            return (pair_logits(idx).argmax(1) == target[idx]).float().mean().item()

    before = accuracy(val)
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(pair_logits(tr), target[tr])
        loss = loss + reg * ((head.weight - eye) ** 2).sum()
        loss.backward()
        opt.step()
    after = accuracy(val)
    log.info("gLocal fit: held-out odd-one-out accuracy %.3f -> %.3f", before, after)
    return head, {"val_accuracy_before": before, "val_accuracy_after": after}
