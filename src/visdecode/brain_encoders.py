"""Brain encoders by name. Each maps (batch, channels, times) to (batch, dim).

Shapes follow the input, so other channel counts and sampling rates (the 17-channel 100 Hz
variant, MEG sensors) work without code changes.
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
    """`Conv2d(1, F, (1, k))` then `AvgPool2d((1, p), (1, s))`, computed as one strided
    convolution whose kernel is the conv kernel convolved with a box of length p.

    Both steps are linear, so this is the same function (and the same parameters, stored as
    `conv.weight`/`conv.bias`) without the large unpooled intermediate.
    """

    def __init__(self, n_filters: int, kernel: int, pool: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(1, n_filters, (1, kernel))
        self.pool, self.stride = pool, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight.flatten(1).unsqueeze(1)  # (F, 1, k)
        box = torch.full((1, 1, self.pool), 1.0 / self.pool, dtype=w.dtype, device=w.device)
        w_eff = nn.functional.conv1d(nn.functional.pad(w, (self.pool - 1, self.pool - 1)), box)
        return nn.functional.conv2d(x, w_eff.unsqueeze(2), self.conv.bias, stride=(1, self.stride))


class NICE(nn.Module):
    """NICE (Song et al. 2024): temporal conv, pooling, spatial conv, 1x1 projection, then
    the projector to the image embedding dimension."""

    def __init__(
        self,
        n_channels: int,
        n_times: int,
        dim: int,
        n_filters: int = 40,
        temporal_kernel: int = 25,
        pool: int = 51,
        pool_stride: int = 5,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.features = nn.Sequential(
            ConvAvgPool(n_filters, temporal_kernel, pool, pool_stride),
            nn.BatchNorm2d(n_filters),
            nn.ELU(),
            nn.Conv2d(n_filters, n_filters, (n_channels, 1)),
            nn.BatchNorm2d(n_filters),
            nn.ELU(),
            nn.Dropout(dropout),
            nn.Conv2d(n_filters, n_filters, 1),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_features = self.features(torch.zeros(2, 1, n_channels, n_times)).shape[1]
        self.projector = projector(n_features, dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.features(x.unsqueeze(1)))


REGISTRY = {"nice": NICE}


def build(name: str, n_channels: int, n_times: int, dim: int) -> nn.Module:
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown brain encoder '{name}'; known: {', '.join(sorted(REGISTRY))}"
        ) from None
    return cls(n_channels, n_times, dim)
