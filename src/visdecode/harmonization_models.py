"""Harmonization models (Fel et al. 2022, serre-lab) in PyTorch, from their Keras `.h5` files.

The Harmonization weights are published only as Keras models (the `harmonization` package,
0.0.9: files under storage.googleapis.com/serrelab/prj_harmonization/models/, no checksums).
Rather than run TensorFlow beside PyTorch, the weights are read from the `.h5` file with h5py
and mapped onto the same architecture in PyTorch: timm's definitions where they compute what
the Keras one computes (VGG-16, ViT-B/16, ConvNeXt-T, LeViT-128, EfficientNet-B0 with TF
padding, MaxViT-T in its TF variant), and `KerasResNet50V2` below, Keras's ResNet50V2 layer for
layer (timm's `resnetv2_50` places its strides differently and has no conv biases). One
framework on the GPU, no second environment; `tests/test_harmonization.py` shows that the
result equals Keras's output, built from the same model definitions the package uses.

Files: Keras's legacy HDF5 layout, as `model.save_weights('x.h5')` writes it (one group per
layer, attribute `weight_names`; a '/' in a name is a nested group; long attribute lists are
split into `layer_names0`, `layer_names1`, ...) or, for a whole saved model
(`model.save('x.h5')`, the VGG-16, ResNet50V2 and EfficientNet-B0 files), the same under
`model_weights/`. Weights are matched by name, the names of the libraries the files were made
with (vit-keras 0.1.x, keras-cv-attention-models 1.3.x, keras.applications; vit-keras 0.2's
renamed layers are accepted too); a file that lacks one, or holds one of another shape, is one
clear line naming the file, the weight and what was expected.

The mapping of each architecture is a list of rules, each a PyTorch parameter, the Keras
weights it comes from and the change of layout between them (conv kernels HWIO -> OIHW,
dense kernels transposed, ViT's separate query/key/value into one qkv, LeViT's attention-bias
table transposed, MaxViT's relative-position table flipped, VGG's flattening order). The rules
run both ways: `to_keras` writes a PyTorch model's weights as a Keras file (the synthetic
world's random-weight files, in the real format).

The embedding is each model's penultimate layer, as AlignVis takes it: VGG-16 `fc2` (4096),
ResNet50V2's pooled features (2048), ViT-B/16's class token after the final norm (768),
ConvNeXt-T `head_ln` (768), LeViT-128's pooled tokens after the head's batch norm (384,
keras-cv-attention-models' `flatten`), EfficientNet-B0's pooled features (1280), MaxViT-T
`features` after its tanh (512).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visdecode.errors import InputError

BN_EPS_RESNET = 1.001e-5  # keras.applications' ResNet batch norms
FIX = "delete it to download it again, or point local_weights in config at the right file"


# ------------------------------------------------------------------------------ h5 files
def _names(group, key: str) -> list[str]:
    """An attribute list of names; Keras splits long ones into key0, key1, ..."""
    if key in group.attrs:
        values = list(group.attrs[key])
    else:
        values, i = [], 0
        while f"{key}{i}" in group.attrs:
            values += list(group.attrs[f"{key}{i}"])
            i += 1
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def read_keras_h5(path: Path | str) -> dict[str, np.ndarray]:
    """Every weight of a Keras legacy HDF5 file by its name without ':0' (e.g.
    `block1_conv1/kernel`)."""
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not an HDF5 file ({err}), not a Keras .h5 file: {FIX}") from None
    with f:
        root = f["model_weights"] if "model_weights" in f and "layer_names" not in f.attrs else f
        layers = _names(root, "layer_names")
        if not layers:
            raise InputError(
                f"{path}: no Keras layer list (attribute layer_names), not a Keras .h5 file "
                f"written by model.save_weights or model.save: {FIX}"
            )
        out = {}
        for layer in layers:
            group = root[layer]
            for name in _names(group, "weight_names"):
                out[name.split(":")[0]] = np.asarray(group[name])
    return out


def write_keras_h5(path: Path | str, weights: dict[str, np.ndarray], layer_of, rank=None) -> None:
    """Weights (by name, without ':0') in Keras's legacy weights-only layout, grouped into
    layers by `layer_of(name)` in the order given (within a layer by `rank`, if given), as
    Keras's own load_weights reads them: by order."""
    import h5py

    layers: dict[str, list[str]] = {}
    for name in weights:
        layers.setdefault(layer_of(name), []).append(name)
    if rank is not None:
        layers = {layer: sorted(names, key=rank) for layer, names in layers.items()}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.11.0"
        for layer, names in layers.items():
            group = f.require_group(layer)
            group.attrs["weight_names"] = [f"{n}:0".encode() for n in names]
            for n in names:
                group.create_dataset(f"{n}:0", data=weights[n])


# ------------------------------------------------------------------------------ layouts
# Each layout: (Keras arrays -> PyTorch tensor, PyTorch tensor -> Keras arrays).
def _conv(ks):
    return ks[0].transpose(3, 2, 0, 1)  # HWIO -> OIHW


def _conv_inv(t):
    return [t.transpose(2, 3, 1, 0)]


def _dw(ks):
    return ks[0].transpose(2, 3, 0, 1)  # (H, W, C, 1) -> (C, 1, H, W)


def _dw_inv(t):
    return [t.transpose(2, 3, 0, 1)]


def _dense(ks):
    return ks[0].T


def _dense_inv(t):
    return [t.T]


def _same(ks):
    return ks[0]


def _same_inv(t):
    return [t]


def _cat_dense(ks):  # ViT: query, key and value kernels -> one qkv weight
    return np.concatenate([k.T for k in ks], 0)


def _cat_dense_inv(t):
    return [p.T for p in np.split(t, 3, 0)]


def _cat(ks):
    return np.concatenate(ks, 0)


def _cat_inv(t):
    return list(np.split(t, 3, 0))


def _vgg_fc1(ks):  # Keras flattens (7, 7, 512) channels-last; timm's fc1 is a 7x7 conv
    return ks[0].reshape(7, 7, 512, -1).transpose(3, 2, 0, 1)


def _vgg_fc1_inv(t):
    return [t.transpose(2, 3, 1, 0).reshape(7 * 7 * 512, -1)]


def _conv1x1(ks):  # a 1x1 Dense written as a conv kernel (VGG fc2)
    return ks[0].reshape(1, 1, *ks[0].shape).transpose(3, 2, 0, 1)


def _conv1x1_inv(t):
    return [t[:, :, 0, 0].T]


def _linear_from_conv1x1(ks):  # MaxViT's qkv: a 1x1 conv in Keras, a Linear in timm
    return ks[0][0, 0].T


def _linear_from_conv1x1_inv(t):
    return [t.T[None, None]]


def _flip_table(ks):  # MaxViT: (heads, 169) query-minus-key -> (heads, 13, 13) key-minus-query
    t = ks[0]
    n = int(round(np.sqrt(t.shape[1])))
    return t.reshape(t.shape[0], n, n)[:, ::-1, ::-1]


def _flip_table_inv(t):
    return [t[:, ::-1, ::-1].reshape(t.shape[0], -1)]


LAYOUTS = {
    "conv": (_conv, _conv_inv),
    "dw": (_dw, _dw_inv),
    "dense": (_dense, _dense_inv),
    "same": (_same, _same_inv),
    "T": (_dense, _dense_inv),  # LeViT's bias table (blocks, heads) -> (heads, blocks)
    "qkv": (_cat_dense, _cat_dense_inv),
    "cat": (_cat, _cat_inv),
    "vgg_fc1": (_vgg_fc1, _vgg_fc1_inv),
    "conv1x1": (_conv1x1, _conv1x1_inv),
    "linear_1x1": (_linear_from_conv1x1, _linear_from_conv1x1_inv),
    "flip_table": (_flip_table, _flip_table_inv),
}


@dataclass(frozen=True)
class Rule:
    torch: str  # PyTorch state-dict key
    keras: tuple[str, ...]  # Keras weight names (without ':0')
    layout: str  # key of LAYOUTS


def _bn(t: str, k: str) -> list[Rule]:
    return [
        Rule(f"{t}.weight", (f"{k}/gamma",), "same"),
        Rule(f"{t}.bias", (f"{k}/beta",), "same"),
        Rule(f"{t}.running_mean", (f"{k}/moving_mean",), "same"),
        Rule(f"{t}.running_var", (f"{k}/moving_variance",), "same"),
    ]


def _ln(t: str, k: str) -> list[Rule]:
    return [Rule(f"{t}.weight", (f"{k}/gamma",), "same"), Rule(f"{t}.bias", (f"{k}/beta",), "same")]


def _cv(t: str, k: str, bias: bool = True, layout: str = "conv") -> list[Rule]:
    rules = [Rule(f"{t}.weight", (f"{k}/kernel",), layout)]
    return rules + ([Rule(f"{t}.bias", (f"{k}/bias",), "same")] if bias else [])


def _lin(t: str, k: str, bias: bool = True) -> list[Rule]:
    return _cv(t, k, bias, "dense")


# ------------------------------------------------------------------------------ VGG-16
def vgg16_rules() -> list[Rule]:
    """keras.applications.VGG16 -> timm `vgg16`."""
    rules, index = [], 0
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
        for c in range(1, convs + 1):
            rules += _cv(f"features.{index}", f"block{block}_conv{c}")
            index += 2
        index += 1  # the block's max-pool
    rules += [Rule("pre_logits.fc1.weight", ("fc1/kernel",), "vgg_fc1"),
              Rule("pre_logits.fc1.bias", ("fc1/bias",), "same"),
              Rule("pre_logits.fc2.weight", ("fc2/kernel",), "conv1x1"),
              Rule("pre_logits.fc2.bias", ("fc2/bias",), "same")]  # fmt: skip
    return rules + _lin("head.fc", "predictions")


# ------------------------------------------------------------------------------ ResNet50V2
class _PreactBottleneck(nn.Module):
    """keras.applications' residual_block_v2: batch norm and ReLU first; the first block of a
    stack has a 1x1 conv shortcut (with bias) from the pre-activation, the others the raw
    input, subsampled (Keras: a 1x1 max-pool) in the strided block; the stride sits on the 3x3
    conv of the stack's last block."""

    def __init__(self, cin: int, width: int, stride: int, conv_shortcut: bool):
        super().__init__()
        self.preact_bn = nn.BatchNorm2d(cin, eps=BN_EPS_RESNET)
        self.shortcut = nn.Conv2d(cin, 4 * width, 1) if conv_shortcut else None
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=BN_EPS_RESNET)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width, eps=BN_EPS_RESNET)
        self.conv3 = nn.Conv2d(width, 4 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.preact_bn(x))
        if self.shortcut is not None:
            short = self.shortcut(pre)
        else:
            short = x[:, :, :: self.stride, :: self.stride]
        y = F.relu(self.bn1(self.conv1(pre)))
        y = F.relu(self.bn2(self.conv2(y)))
        return short + self.conv3(y)


RESNET50V2_STACKS = (("conv2", 64, 3, 2), ("conv3", 128, 4, 2), ("conv4", 256, 6, 2),
                     ("conv5", 512, 3, 1))  # fmt: skip


class KerasResNet50V2(nn.Module):
    """keras.applications.ResNet50V2 in PyTorch: 7x7 stem conv with bias, max-pool over a
    zero-padded border (Keras pads with zeros, not -inf, and the stem has no activation before
    it), four stacks of pre-activation bottlenecks, a final batch norm and ReLU, average
    pooling, the classifier. `num_classes=0`: the pooled 2048-d features."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3)
        stacks, cin = [], 64
        for _, width, blocks, stride in RESNET50V2_STACKS:
            stacks.append(
                nn.Sequential(
                    *(_PreactBottleneck(cin if b == 0 else 4 * width, width,
                                        stride if b == blocks - 1 else 1, b == 0)
                      for b in range(blocks))
                )
            )  # fmt: skip
            cin = 4 * width
        self.stacks = nn.Sequential(*stacks)
        self.post_bn = nn.BatchNorm2d(2048, eps=BN_EPS_RESNET)
        self.fc = nn.Linear(2048, num_classes) if num_classes else nn.Identity()

    def reset_classifier(self, num_classes: int = 0) -> None:
        self.fc = nn.Linear(2048, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.pad(self.conv1(x), (1, 1, 1, 1)), 3, 2)
        x = F.relu(self.post_bn(self.stacks(x)))
        return self.fc(x.mean((2, 3)))


def resnet50v2_rules() -> list[Rule]:
    rules = _cv("conv1", "conv1_conv")
    for s, (name, _, blocks, _) in enumerate(RESNET50V2_STACKS):
        for b in range(blocks):
            k, t = f"{name}_block{b + 1}_", f"stacks.{s}.{b}."
            rules += _bn(t + "preact_bn", k + "preact_bn")
            rules += _cv(t + "conv1", k + "1_conv", bias=False) + _bn(t + "bn1", k + "1_bn")
            rules += _cv(t + "conv2", k + "2_conv", bias=False) + _bn(t + "bn2", k + "2_bn")
            if b == 0:  # Keras's layer order (its load_weights goes by order)
                rules += _cv(t + "shortcut", k + "0_conv")
            rules += _cv(t + "conv3", k + "3_conv")
    return rules + _bn("post_bn", "post_bn") + _lin("fc", "predictions")


# ------------------------------------------------------------------------------ ViT-B/16
def vitb16_rules() -> list[Rule]:
    """vit-keras 0.1.x `vit_b16` (the names the Harmonization file was written with) -> timm
    `vit_base_patch16_224` (class token first, LayerNorm eps 1e-6, exact GELU in both)."""
    rules = _cv("patch_embed.proj", "embedding")
    rules += [Rule("cls_token", ("class_token/cls",), "same"),
              Rule("pos_embed", ("Transformer/posembed_input/pos_embedding",), "same")]  # fmt: skip
    for i in range(12):
        k, t = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        att = k + "MultiHeadDotProductAttention_1/"
        rules += _ln(t + "norm1", k + "LayerNorm_0") + _ln(t + "norm2", k + "LayerNorm_2")
        rules += [
            Rule(t + "attn.qkv.weight", tuple(f"{att}{n}/kernel" for n in ("query", "key", "value")), "qkv"),
            Rule(t + "attn.qkv.bias", tuple(f"{att}{n}/bias" for n in ("query", "key", "value")), "cat"),
        ]  # fmt: skip
        rules += _lin(t + "attn.proj", att + "out")
        rules += _lin(t + "mlp.fc1", k + "Dense_0") + _lin(t + "mlp.fc2", k + "Dense_1")
    return rules + _ln("norm", "Transformer/encoder_norm") + _lin("head", "head")


def _vit_names(name: str) -> str:
    """vit-keras 0.2 names (Transformer_encoderblock_0_Dense_0, ...) as 0.1.x wrote them."""
    name = re.sub(r"^Transformer_", "Transformer/", name)
    name = re.sub(r"(encoderblock_\d+)_", r"\1/", name)
    return re.sub(r"Transformer/(encoderblock_\d+)/Transformer/", r"Transformer/\1/", name)


VIT_BLOCK_ORDER = [f"MultiHeadDotProductAttention_1/{n}/{w}" for n in ("query", "key", "value", "out")
                   for w in ("kernel", "bias")] + [
    f"{n}/{w}" for n, ws in (("Dense_0", ("kernel", "bias")), ("Dense_1", ("kernel", "bias")),
                             ("LayerNorm_0", ("gamma", "beta")), ("LayerNorm_2", ("gamma", "beta")))
    for w in ws]  # fmt: skip


def _vit_rank(name: str) -> int:
    """A weight's place in its layer as vit-keras 0.1 orders a transformer block's weights."""
    m = re.match(r"Transformer/encoderblock_\d+/(.+)$", name)
    return VIT_BLOCK_ORDER.index(m.group(1)) if m else 0


def _vit_layer(name: str) -> str:
    m = re.match(r"(Transformer/encoderblock_\d+)/", name)
    return m.group(1) if m else name.rsplit("/", 1)[0]


# ------------------------------------------------------------------------------ ConvNeXt-T
def convnext_tiny_rules() -> list[Rule]:
    """keras-cv-attention-models ConvNeXtTiny -> timm `convnext_tiny`."""
    rules = _cv("stem.0", "stem_conv") + _ln("stem.1", "stem_ln")
    for s, blocks in enumerate((3, 3, 9, 3)):
        k = f"stack{s + 1}_"
        if s:
            rules += _ln(f"stages.{s}.downsample.0", k + "downsample_ln")
            rules += _cv(f"stages.{s}.downsample.1", k + "downsample_conv")
        for b in range(blocks):
            kb, t = f"{k}block{b + 1}_", f"stages.{s}.blocks.{b}."
            rules += [Rule(t + "conv_dw.weight", (kb + "dw_conv/depthwise_kernel",), "dw"),
                      Rule(t + "conv_dw.bias", (kb + "dw_conv/bias",), "same")]  # fmt: skip
            rules += _ln(t + "norm", kb + "ln")
            rules += _lin(t + "mlp.fc1", kb + "up_dense") + _lin(t + "mlp.fc2", kb + "down_dense")
            rules += [Rule(t + "gamma", (kb + "gamma/weight",), "same")]
    return rules + _ln("head.norm", "head_ln") + _lin("head.fc", "predictions")


# ------------------------------------------------------------------------------ LeViT-128
def levit128_rules() -> list[Rule]:
    """keras-cv-attention-models LeViT128 (use_distillation=False: the Harmonization "LeViT
    small") -> timm `levit_128` with distilled=False. kecam ends stacks 1 and 2 with their
    down-sampling attention; timm starts stages 2 and 3 with it."""

    def linear_norm(t: str, dense: str, bn: str) -> list[Rule]:
        return [Rule(f"{t}.linear.weight", (f"{dense}/kernel",), "dense"), *_bn(f"{t}.bn", bn)]

    rules = []
    for i in range(4):
        rules += [Rule(f"stem.conv{i + 1}.linear.weight", (f"stem_{i + 1}_conv/kernel",), "conv")]
        rules += _bn(f"stem.conv{i + 1}.bn", f"stem_{i + 1}_bn")
    for s in range(3):
        for b in range(4):
            k, t = f"stack{s + 1}_block{b + 1}_", f"stages.{s}.blocks.{b}."
            rules += linear_norm(t + "attn.qkv", k + "qkv", k + "qkv_bn")
            rules += [Rule(t + "attn.attention_biases", (k + "attn_pos/positional_embedding",), "T")]
            rules += linear_norm(t + "attn.proj.ln", k + "out", k + "out_bn")
            rules += linear_norm(t + "mlp.ln1", k + "mlp_1_dense", k + "mlp_1_bn")
            rules += linear_norm(t + "mlp.ln2", k + "mlp_2_dense", k + "mlp_2_bn")
        if s < 2:
            k, t = f"stack{s + 1}_downsample_", f"stages.{s + 1}.downsample."
            rules += [Rule(t + "attn_downsample.kv.linear.weight", (k + "kv/kernel",), "dense"),
                      Rule(t + "attn_downsample.q.ln.linear.weight", (k + "q/kernel",), "dense")]
            rules += _bn(t + "attn_downsample.kv.bn", k + "kv_bn")  # Keras's layer order
            rules += _bn(t + "attn_downsample.q.ln.bn", k + "q_bn")
            rules += [Rule(t + "attn_downsample.attention_biases",
                           (k + "attn_pos/positional_embedding",), "T")]  # fmt: skip
            rules += linear_norm(t + "attn_downsample.proj.ln", k + "out", k + "out_bn")
            rules += linear_norm(t + "mlp.ln1", k + "mlp_1_dense", k + "mlp_1_bn")
            rules += linear_norm(t + "mlp.ln2", k + "mlp_2_dense", k + "mlp_2_bn")
    return rules + _bn("head.bn", "head_bn") + _lin("head.linear", "head")


# ------------------------------------------------------------------------------ EfficientNet-B0
def efficientnetb0_rules() -> list[Rule]:
    """qubvel `efficientnet` EfficientNetB0 (the names keras.applications uses too) -> timm
    `tf_efficientnet_b0` (TF's asymmetric 'same' padding, batch-norm eps 1e-3)."""
    rules = _cv("conv_stem", "stem_conv", bias=False) + _bn("bn1", "stem_bn")
    for stage, blocks in enumerate((1, 2, 2, 3, 3, 4, 1)):
        for j in range(blocks):
            k, t = f"block{stage + 1}{'abcd'[j]}_", f"blocks.{stage}.{j}."
            dw = [Rule(t + "conv_dw.weight", (k + "dwconv/depthwise_kernel",), "dw")]
            se = _cv(t + "se.conv_reduce", k + "se_reduce") + _cv(t + "se.conv_expand", k + "se_expand")
            if stage == 0:  # no expansion
                rules += dw + _bn(t + "bn1", k + "bn") + se
                rules += _cv(t + "conv_pw", k + "project_conv", bias=False)
                rules += _bn(t + "bn2", k + "project_bn")
            else:
                rules += _cv(t + "conv_pw", k + "expand_conv", bias=False)
                rules += _bn(t + "bn1", k + "expand_bn") + dw + _bn(t + "bn2", k + "bn") + se
                rules += _cv(t + "conv_pwl", k + "project_conv", bias=False)
                rules += _bn(t + "bn3", k + "project_bn")
    rules += _cv("conv_head", "top_conv", bias=False) + _bn("bn2", "top_bn")
    return rules + _lin("classifier", "probs")


# ------------------------------------------------------------------------------ MaxViT-T
def maxvit_tiny_rules() -> list[Rule]:
    """keras-cv-attention-models MaxViT_Tiny -> timm `maxvit_tiny_tf_224`."""
    rules = _cv("stem.conv1", "stem_1_conv") + _bn("stem.norm1", "stem_1_bn")
    rules += _cv("stem.conv2", "stem_2_conv")
    for s, blocks in enumerate((2, 2, 5, 2)):
        for b in range(blocks):
            k, t = f"stack_{s + 1}_block_{b + 1}/", f"stages.{s}.blocks.{b}."
            m, c = k + "mbconv/", t + "conv."
            rules += _bn(c + "pre_norm", m + "preact_bn")
            rules += _cv(c + "conv1_1x1", m + "expand_conv", bias=False) + _bn(c + "norm1", m + "expand_bn")
            rules += [Rule(c + "conv2_kxk.weight", (m + "MB_dw_conv/depthwise_kernel",), "dw")]
            rules += _bn(c + "norm2", m + "MB_dw_bn")
            rules += _cv(c + "se.fc1", m + "se/1_conv") + _cv(c + "se.fc2", m + "se/2_conv")
            if b == 0 and s > 0:  # the stage widens: a 1x1 conv on the shortcut
                rules += _cv(c + "shortcut.expand", m + "shortcut_conv")
            rules += _cv(c + "conv3_1x1", m + "MB_pw_conv")
            for part, attn in (("block_", "attn_block."), ("grid_", "attn_grid.")):
                q, r = k + part, t + attn
                rules += _ln(r + "norm1", q + "attn_preact_ln")
                rules += [Rule(r + "attn.qkv.weight", (q + "window_mhsa/qkv_conv/kernel",), "linear_1x1"),
                          Rule(r + "attn.qkv.bias", (q + "window_mhsa/qkv_conv/bias",), "same"),
                          Rule(r + "attn.rel_pos.relative_position_bias_table",
                               (q + "window_mhsa/pos_emb/positional_embedding",), "flip_table")]  # fmt: skip
                rules += _lin(r + "attn.proj", q + "window_mhsa/output")
                rules += _ln(r + "norm2", q + "ffn_preact_ln")
                rules += _lin(r + "mlp.fc1", q + "ffn/1_dense") + _lin(r + "mlp.fc2", q + "ffn/2_dense")
    rules += _ln("head.norm", "post_ln") + _lin("head.pre_logits.fc", "features")
    return rules + _lin("head.fc", "predictions")


# ------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class Arch:
    make: Callable[[], nn.Module]  # the PyTorch definition, 1000 classes, random weights
    rules: Callable[[], list[Rule]]
    dim: int  # the embedding (penultimate layer)
    words: str
    layer_of: Callable[[str], str] = lambda name: name.rsplit("/", 1)[0]
    rename: Callable[[str], str] = lambda name: name  # other library versions' names
    rank: Callable[[str], int] | None = None  # a weight's place in its layer, where the
    # rules' order is not Keras's (Keras's load_weights reads a layer's weights by order)
    features: Callable[[nn.Module], None] = lambda model: model.reset_classifier(0)


def _levit_features(model: nn.Module) -> None:
    """LeViT's embedding as AlignVis takes it (keras-cv-attention-models' `flatten`): the
    pooled tokens after the head's batch norm, before its linear layer."""
    model.head.linear = nn.Identity()


def _timm(name: str, **kwargs) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, **kwargs)

    return make


ARCHS: dict[str, Arch] = {
    "vgg16": Arch(_timm("vgg16"), vgg16_rules, 4096, "VGG-16"),
    "resnet50v2": Arch(KerasResNet50V2, resnet50v2_rules, 2048, "ResNet50V2"),
    "vitb16": Arch(_timm("vit_base_patch16_224"), vitb16_rules, 768, "ViT-B/16",
                   layer_of=_vit_layer, rename=_vit_names, rank=_vit_rank),
    "convnext_tiny": Arch(_timm("convnext_tiny"), convnext_tiny_rules, 768, "ConvNeXt-T"),
    "levit128": Arch(_timm("levit_128", distilled=False), levit128_rules, 384, "LeViT-128",
                     features=_levit_features),
    "efficientnetb0": Arch(_timm("tf_efficientnet_b0"), efficientnetb0_rules, 1280,
                           "EfficientNet-B0", rename=lambda n: re.sub(r"^predictions/", "probs/", n)),
    "maxvit_tiny": Arch(_timm("maxvit_tiny_tf_224"), maxvit_tiny_rules, 512, "MaxViT-T"),
}  # fmt: skip


def to_torch(arch: str, keras: dict[str, np.ndarray], source: str = "weights") -> dict:
    """The PyTorch state dict of `arch` from its Keras weights (by name)."""
    spec = ARCHS[arch]
    keras = {spec.rename(k): v for k, v in keras.items()}
    state, used = {}, set()
    for rule in spec.rules():
        missing = [k for k in rule.keras if k not in keras]
        if missing:
            raise InputError(
                f"{source}: no Keras weight '{missing[0]}' (for {rule.torch}); not a Keras "
                f"{spec.words} file of the published layout: {FIX}"
            )
        array = LAYOUTS[rule.layout][0]([keras[k] for k in rule.keras])
        state[rule.torch] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        used.update(rule.keras)
    unused = [k for k in keras if k not in used]
    if unused:  # e.g. keras.applications' in-graph Rescaling/Normalization: not emulated
        raise InputError(
            f"{source}: {len(unused)} Keras weights that {spec.words} as published does not "
            f"have (first: '{unused[0]}'; in-graph preprocessing or another variant): {FIX}"
        )
    return state


def to_keras(arch: str, state: dict) -> dict[str, np.ndarray]:
    """The Keras weights (by name) of `arch` from its PyTorch state dict: `to_torch` reversed."""
    out = {}
    for rule in ARCHS[arch].rules():
        arrays = LAYOUTS[rule.layout][1](state[rule.torch].detach().cpu().numpy())
        for name, array in zip(rule.keras, arrays, strict=True):
            out[name] = np.ascontiguousarray(array, dtype=np.float32)
    return out


def write(arch: str, model: nn.Module, path: Path | str) -> None:
    """A PyTorch model of `arch` as a Keras weights-only .h5 file (the Harmonization format)."""
    spec = ARCHS[arch]
    write_keras_h5(path, to_keras(arch, model.state_dict()), spec.layer_of, spec.rank)


def load(arch: str, path: Path | str, features: bool = True) -> nn.Module:
    """The Keras .h5 file of `arch` as a PyTorch model in eval mode: its embedding
    (penultimate layer) with `features`, else its 1000 logits."""
    spec = ARCHS[arch]
    state = to_torch(arch, read_keras_h5(path), str(path))
    model = spec.make()
    own = model.state_dict()
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise InputError(
                f"{path}: weight for {key} is {tuple(value.shape)}, {spec.words} expects "
                f"{tuple(own[key].shape)}; not a Keras {spec.words} file: {FIX}"
            )
    unset = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if unset:  # a rule table that misses a parameter: a bug here, never a bad file
        raise RuntimeError(f"{arch}: no rule for {unset[:3]}")
    model.load_state_dict(state, strict=False)
    if features:
        spec.features(model)
    return model.eval()


# ------------------------------------------------------------------------------ preprocessing
def _keys_table(size: int = 1024, a: float = -0.5) -> np.ndarray:
    """TensorFlow's table of Keys' cubic kernel (resize_bicubic_op.cc, half-pixel centres:
    a = -0.5): entry 2i at distance i / size, entry 2i + 1 at 1 + i / size."""
    x = np.arange(size + 1, dtype=np.float64) / size
    table = np.empty(2 * (size + 1), np.float32)
    table[0::2] = ((a + 2) * x - (a + 3)) * x * x + 1
    x1 = x + 1
    table[1::2] = ((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a
    return table


@lru_cache(maxsize=16)
def _tf_bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of `tf.image.resize(..., 'bicubic')` (antialias off) along one
    axis: half-pixel centres, Keys' kernel looked up in TensorFlow's 1024-entry table, taps
    outside the image dropped and the rest renormalised. Cached: an image set's images mostly
    share their size (read-only: never modify the array returned)."""
    table, size = _keys_table(), 1024
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)  # TensorFlow computes the positions in float32
    out = np.zeros((n_out, n_in), np.float32)
    for o in range(n_out):
        pos = (f32(o) + f32(0.5)) * scale - f32(0.5)
        base = int(np.floor(pos))
        offset = int(np.rint((pos - f32(base)) * f32(size)))
        w = np.array([table[offset * 2 + 1], table[offset * 2],
                      table[(size - offset) * 2], table[(size - offset) * 2 + 1]], np.float32)  # fmt: skip
        taps = np.arange(base - 1, base + 3)
        inside = (taps >= 0) & (taps < n_in)
        w = np.where(inside, w, np.float32(0))
        total = w.sum(dtype=np.float32)
        if abs(total) >= 1000 * np.finfo(np.float32).tiny:
            w = w * (np.float32(1) / total)
        for tap, weight in zip(taps[inside], w[inside], strict=True):
            out[o, tap] += weight
    return out


def tf_resize_bicubic(image: np.ndarray, size: int) -> np.ndarray:
    """An (H, W, C) image resized to (size, size) as `tf.image.resize(image, (size, size),
    method='bicubic')` does (float32, not clipped)."""
    image = np.asarray(image, np.float32)
    rows = _tf_bicubic_matrix(image.shape[0], size)
    cols = _tf_bicubic_matrix(image.shape[1], size)
    return np.einsum("oi,ijc,pj->opc", rows, image, cols, optimize=True).astype(np.float32)


class KerasPreprocess:
    """Harmonization's input pipeline for one PIL image: RGB, resized to size x size with
    TensorFlow's bicubic (as AlignVis does before `preprocess_input`; the aspect ratio is not
    kept), then the package's `preprocess_input` (/255, minus the ImageNet mean, over its
    standard deviation), as a (3, size, size) float32 tensor."""

    def __init__(self, size: int, mean, std):
        self.size = size
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def __call__(self, image) -> torch.Tensor:
        x = tf_resize_bicubic(np.asarray(image.convert("RGB"), np.float32), self.size)
        x = (x / np.float32(255) - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
