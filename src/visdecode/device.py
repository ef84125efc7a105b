"""The device computations run on: CUDA when available, else the CPU."""

from __future__ import annotations

import os

import torch


def pick_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe(device: torch.device) -> str:
    """The device for a log line, with the GPUs a scheduler granted (SLURM sets
    CUDA_VISIBLE_DEVICES for a job given --gpus), so a log shows a GPU that was granted but
    not used."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"{name} (CUDA_VISIBLE_DEVICES={'unset' if visible is None else visible})"
