"""Brain encoders by name: (batch, channels, times) -> (batch, dim), dim = the image embedding's.

Shapes follow the input, so other channel counts and sampling rates (the 17-channel 100 Hz
variant, MEG's 271 sensors x 201 samples) work without code changes.

* ``nice``: NICE (Song et al., ICLR 2024) with its own projector to `dim`.
* ``atms``: ATM-S (Li et al., NeurIPS 2024): a channel-token transformer with a learned subject
  token, then NICE's convolutions and projector.
* ``eegnet``: EEGNet (Lawhern et al. 2018; braindecode's EEGNetv4 layout), F1 8, D 2, F2 16,
  kernel 64, dropout 0.5, then a linear projection to `dim` (as AlignVis adds).
* ``eegconformer``: EEG Conformer (Song et al. 2023; braindecode's layout) with AlignVis's
  settings (40 filters of 10 samples, pool 25 stride 5, dropout 0.25, 2 attention layers with
  1 head, attention dropout 0.5), the flattened tokens projected linearly to `dim`.

braindecode itself is not used: its releases that have these models need torchaudio, and no
torchaudio build matches the pinned torch 2.15 (its import fails on the CUDA version check).
The layouts follow braindecode's definitions; tests/test_models.py checks their sizes.

Every model takes an optional `subject` tensor (batch,) of subject indices; only ATM-S uses it.
"""

from __future__ import annotations

import torch
from torch import nn

from visdecode.errors import InputError


class ResidualAdd(nn.Module):
    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def projector(in_features: int, dim: int, dropout: float) -> nn.Sequential:
    """NICE's projector: Linear, residual [GELU, Linear, Dropout], LayerNorm."""
    return nn.Sequential(
        nn.Linear(in_features, dim),
        ResidualAdd(nn.Sequential(nn.GELU(), nn.Linear(dim, dim), nn.Dropout(dropout))),
        nn.LayerNorm(dim),
    )


class ConvAvgPool(nn.Module):
    """NICE's `Conv2d(1, F, (1, k))` then `AvgPool2d((1, p), (1, s))`, computed in the other
    order: both are linear and shift-invariant, so pooling first (a moving mean over p
    samples) and then taking the k-tap filter at every s-th position gives the same output
    with 1/s of the filter's multiplications and no large unpooled intermediate. The filter
    is one matrix product over strided windows. Parameters are the published layer's
    (`conv.weight`, `conv.bias`).
    """

    def __init__(self, n_filters: int, kernel: int, pool: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(1, n_filters, (1, kernel))
        self.kernel, self.pool, self.stride = kernel, pool, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, 1, channels, times)
        total = nn.functional.pad(x[:, 0].cumsum(-1), (1, 0))  # moving mean by a running sum
        mean = (total[..., self.pool :] - total[..., : -self.pool]) / self.pool
        windows = mean.unfold(-1, self.kernel, self.stride)  # (batch, channels, out, kernel)
        out = windows @ self.conv.weight.flatten(1).T  # (batch, channels, out, filters)
        # the bias in place on the product itself (not on a view of it: autograd would then
        # rebuild the whole tensor through as_strided copies in the backward pass)
        out.add_(self.conv.bias)
        return out.permute(0, 3, 1, 2)  # (batch, filters, channels, out), channels-last memory


def nice_features(n_channels: int, n_filters: int = 40, dropout: float = 0.5) -> nn.Sequential:
    """NICE's temporal-spatial convolutions: (batch, 1, channels, times) -> flat features."""
    return nn.Sequential(
        ConvAvgPool(n_filters, 25, 51, 5),
        nn.BatchNorm2d(n_filters),
        nn.ELU(inplace=True),  # on BatchNorm's output, which its backward does not need
        nn.Conv2d(n_filters, n_filters, (n_channels, 1)),
        nn.BatchNorm2d(n_filters),
        nn.ELU(),
        nn.Dropout(dropout),
        nn.Conv2d(n_filters, n_filters, 1),
        nn.Flatten(),
    )


def n_outputs(module: nn.Module, *shape: int) -> int:
    with torch.no_grad():
        was = module.training
        out = module.eval()(torch.zeros(2, *shape)).shape[1]
        module.train(was)
    return out


class NICE(nn.Module):
    """NICE: temporal conv, pooling, spatial conv, 1x1 projection, then the projector."""

    def __init__(self, n_channels: int, n_times: int, dim: int, dropout: float = 0.5, **_):
        super().__init__()
        self.features = nice_features(n_channels, dropout=dropout)
        self.projector = projector(n_outputs(self.features, 1, n_channels, n_times), dim, dropout)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.projector(self.features(x.unsqueeze(1)))


class ChannelAttention(nn.Module):
    """Multi-head attention over channel tokens as iTransformer (ATM's encoder) defines it:
    queries, keys and values projected to heads x (d_model // heads), then back to d_model."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        width = (d_model // heads) * heads
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v = (nn.Linear(d_model, width) for _ in range(3))
        self.out = nn.Linear(width, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def split(t):
            return t.view(b, n, self.heads, -1).transpose(1, 2)

        att = nn.functional.scaled_dot_product_attention(
            split(self.q(x)), split(self.k(x)), split(self.v(x)),
            dropout_p=self.dropout if self.training else 0.0,
        )  # fmt: skip
        return self.out(att.transpose(1, 2).reshape(b, n, -1))


class EncoderLayer(nn.Module):
    """iTransformer's encoder layer: post-norm attention, then a position-wise GELU MLP."""

    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.attention = ChannelAttention(d_model, heads, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attention(x)))
        return self.norm2(x + self.drop(self.mlp(x)))


class ATMS(nn.Module):
    """ATM-S: each channel's time course becomes a d_model token, a learned subject token is
    appended, one transformer layer mixes the tokens; the channel tokens, read as (channels,
    d_model) signals, go through NICE's convolutions and projector.

    An unseen subject (index -1, e.g. the held-out one of leave-one-subject-out) gets the mean
    of the learned subject tokens.
    """

    def __init__(
        self,
        n_channels: int,
        n_times: int,
        dim: int,
        n_subjects: int = 1,
        d_model: int = 250,
        heads: int = 4,
        layers: int = 1,
        d_ff: int = 256,
        dropout: float = 0.25,
        **_,
    ):
        super().__init__()
        self.embed = nn.Linear(n_times, d_model)
        self.subjects = nn.Embedding(n_subjects, d_model)
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Sequential(
            *(EncoderLayer(d_model, heads, d_ff, dropout) for _ in range(layers)),
            nn.LayerNorm(d_model),
        )
        self.features = nice_features(n_channels)
        self.projector = projector(n_outputs(self.features, 1, n_channels, d_model), dim, 0.5)

    def subject_tokens(self, subject: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        if subject is None:
            subject = torch.zeros(batch, dtype=torch.long, device=device)
        table = torch.cat([self.subjects.weight, self.subjects.weight.mean(0, keepdim=True)])
        return table[subject.where(subject >= 0, len(table) - 1)]  # -1: the mean token

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.embed(x)  # (batch, channels, d_model)
        token = self.subject_tokens(subject, len(x), x.device).unsqueeze(1)
        tokens = self.encoder(self.drop(torch.cat([tokens, token], dim=1)))[:, : x.shape[1]]
        return self.projector(self.features(tokens.unsqueeze(1)))


class MaxNormConv2d(nn.Conv2d):
    """Conv2d whose filters are renormalised to at most `max_norm` before each training
    forward pass (EEGNet's depthwise spatial filter, as in braindecode)."""

    def __init__(self, *args, max_norm: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_norm = max_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.weight.copy_(torch.renorm(self.weight, 2, 0, self.max_norm))
        return super().forward(x)


class EEGNet(nn.Module):
    """EEGNet: temporal conv, depthwise spatial conv (max-norm 1), separable conv, pooling
    by 4 and 8; 16 x (times // 32) features (112 for 250 samples), then Linear to `dim`."""

    def __init__(
        self,
        n_channels: int,
        n_times: int,
        dim: int,
        f1: int = 8,
        depth: int = 2,
        f2: int = 16,
        kernel: int = 64,
        dropout: float = 0.5,
        **_,
    ):
        super().__init__()
        f = f1 * depth
        self.features = nn.Sequential(
            nn.Conv2d(1, f1, (1, kernel), padding=(0, kernel // 2), bias=False),
            nn.BatchNorm2d(f1, momentum=0.01, eps=1e-3),
            MaxNormConv2d(f1, f, (n_channels, 1), groups=f1, bias=False, max_norm=1.0),
            nn.BatchNorm2d(f, momentum=0.01, eps=1e-3),
            nn.ELU(),
            nn.AvgPool2d((1, 4)),
            nn.Dropout(dropout),
            nn.Conv2d(f, f, (1, 16), padding=(0, 8), groups=f, bias=False),
            nn.Conv2d(f, f2, 1, bias=False),
            nn.BatchNorm2d(f2, momentum=0.01, eps=1e-3),
            nn.ELU(),
            nn.AvgPool2d((1, 8)),
            nn.Dropout(dropout),
            nn.Flatten(),
        )
        self.projection = nn.Linear(n_outputs(self.features, 1, n_channels, n_times), dim)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.projection(self.features(x.unsqueeze(1)))


class ConformerBlock(nn.Module):
    """braindecode's Conformer encoder block: pre-norm residual attention (scaled by the
    square root of the embedding size), pre-norm residual GELU MLP (expansion 4)."""

    def __init__(self, emb: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(emb), nn.LayerNorm(emb)
        self.qkv = nn.Linear(emb, 3 * emb)
        self.proj = nn.Linear(emb, emb)
        self.att_drop, self.drop = nn.Dropout(dropout), nn.Dropout(dropout)
        self.mlp = nn.Sequential(
            nn.Linear(emb, 4 * emb), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * emb, emb)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, e = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        att = self.att_drop(torch.softmax(q @ k.transpose(-1, -2) / e**0.5, dim=-1))
        x = x + self.drop(self.proj((att @ v).transpose(1, 2).reshape(b, n, e)))
        return x + self.drop(self.mlp(self.norm2(x)))


class EEGConformer(nn.Module):
    """EEG Conformer: temporal conv, spatial conv, BN, ELU, average pooling into tokens, a
    1x1 projection, transformer blocks; the tokens flattened and projected to `dim`."""

    def __init__(
        self,
        n_channels: int,
        n_times: int,
        dim: int,
        n_filters: int = 40,
        kernel: int = 10,
        pool: int = 25,
        stride: int = 5,
        dropout: float = 0.25,
        depth: int = 2,
        heads: int = 1,
        att_dropout: float = 0.5,
        **_,
    ):
        super().__init__()
        self.patches = nn.Sequential(
            nn.Conv2d(1, n_filters, (1, kernel)),
            nn.Conv2d(n_filters, n_filters, (n_channels, 1)),
            nn.BatchNorm2d(n_filters),
            nn.ELU(),
            nn.AvgPool2d((1, pool), (1, stride)),
            nn.Dropout(dropout),
            nn.Conv2d(n_filters, n_filters, 1),
        )
        self.blocks = nn.Sequential(
            *(ConformerBlock(n_filters, heads, att_dropout) for _ in range(depth))
        )
        n_tokens = (n_times - kernel + 1 - pool) // stride + 1
        self.projection = nn.Linear(n_tokens * n_filters, dim)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.patches(x.unsqueeze(1)).squeeze(2).transpose(1, 2)  # (b, tokens, emb)
        return self.projection(self.blocks(tokens).flatten(1))


REGISTRY = {"nice": NICE, "atms": ATMS, "eegnet": EEGNet, "eegconformer": EEGConformer}
USES_SUBJECT = {"atms"}


def build(name: str, n_channels: int, n_times: int, dim: int, n_subjects: int = 1) -> nn.Module:
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown brain encoder '{name}'; known: {', '.join(sorted(REGISTRY))}"
        ) from None
    return cls(n_channels, n_times, dim, n_subjects=n_subjects)
