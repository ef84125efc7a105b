"""Stage `attribution`: where in time, frequency and space a trained brain encoder looks.

Every attribution explains the same score: the cosine similarity between a test query's brain
embedding and the embedding of the image that was shown (the quantity retrieval ranks by),
for every test query of the run's subject, with the model in evaluation mode.

- Temporal: Grad-CAM (Selvaraju et al. 2017) at the brain encoder's last layer that still
  has a time axis (CAM_LAYERS): feature maps weighted by their time-averaged gradients, summed,
  rectified and averaged over queries; each time position's value is then shared among the
  input samples of its receptive field. ATM-S
  mixes time into its channel tokens at its first layer, so its map is taken at the input,
  channels as feature maps.
- Spectral: gradient x input in the frequency domain. The input is written as the inverse
  real FFT of its spectrum; the attribution of a frequency bin is |Re X dS/dRe X + Im X dS/dIm X|
  (its first-order share of the score), summed over channels and averaged over queries.
- Spatial: |x dS/dx| summed over time, averaged over queries: one value per channel.

Each profile is normalised to sum 1, so runs and encoders compare as shares of importance.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from visdecode import evaluate
from visdecode.io import atomic_path

log = logging.getLogger(__name__)

# brain encoder -> (module name, "output" or "input", first centre, stride, width): the
# Grad-CAM layer, and the receptive field of its time position j in input samples: `width`
# samples centred on first + stride * j (tests check these against the models).
CAM_LAYERS = {
    # the 1x1 convolution (batch, 40, 1, windows): 25-tap conv, 51-wide pooling by 5
    "nice": ("features.7", "output", 37.0, 5.0, 75),
    # the input (batch, channels, times)
    "atms": ("embed", "input", 0.0, 1.0, 1),
    # the pointwise convolution (batch, 16, 1, times / 4): 64-tap conv padded 32, pooling by
    # 4, 16-tap depthwise conv padded 8
    "eegnet": ("features.8", "output", -1.0, 4.0, 127),
    # the 1x1 projection (batch, 40, 1, tokens): 10-tap conv, 25-wide pooling by 5
    "eegconformer": ("patches.6", "output", 16.5, 5.0, 34),
}
CHUNK = 100  # queries per backward pass


def score(model: nn.Module, x: torch.Tensor, subject: torch.Tensor, w: torch.Tensor):
    """Cosine similarity of each query's embedding with its own image's embedding."""
    return (nn.functional.normalize(model(x, subject), dim=1) * w).sum(dim=1)


def gradcam(model, name: str, x, subject, w) -> torch.Tensor:
    """(queries, positions) Grad-CAM maps at the brain encoder's CAM layer."""
    layer, where = CAM_LAYERS[name][:2]
    module = model.get_submodule(layer)
    x = x.detach().requires_grad_(True)  # weights are frozen: the graph starts at the input
    captured = []
    if where == "input":
        handle = module.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    else:
        handle = module.register_forward_hook(lambda m, args, out: captured.append(out))
    try:
        s = score(model, x, subject, w)
    finally:
        handle.remove()
    a = captured[0]
    (g,) = torch.autograd.grad(s.sum(), a)
    if where == "input":  # (batch, channels, 1, times): channels as feature maps
        a, g = a.unsqueeze(2), g.unsqueeze(2)
    weights = g.mean(dim=tuple(range(2, g.dim())), keepdim=True)
    cam = torch.relu((weights * a).sum(dim=1)).detach()  # (batch, ..., positions)
    return cam.flatten(1, -2).mean(dim=1) if cam.dim() > 2 else cam


def to_samples(cam: np.ndarray, name: str, n_times: int) -> np.ndarray:
    """A map over the CAM layer's positions spread back over the input samples: each
    position's value shared equally among the samples of its receptive field (the part
    inside the input), so the total is kept and no sample is extrapolated."""
    _, _, first, stride, width = CAM_LAYERS[name]
    out = np.zeros(n_times)
    for j, value in enumerate(cam):
        lo = round(first + stride * j - (width - 1) / 2)
        out[max(lo, 0) : max(min(lo + width, n_times), 0)] += value / width
    return out


def spectral(model, x, subject, w) -> torch.Tensor:
    """(queries, channels, frequencies) gradient x input over the real FFT of x."""
    spec = torch.fft.rfft(x, dim=-1)
    re = spec.real.detach().requires_grad_(True)
    im = spec.imag.detach().requires_grad_(True)
    s = score(model, torch.fft.irfft(torch.complex(re, im), n=x.shape[-1], dim=-1), subject, w)
    g_re, g_im = torch.autograd.grad(s.sum(), (re, im))
    return (re * g_re + im * g_im).detach().abs()


def spatial(model, x, subject, w) -> torch.Tensor:
    """(queries, channels) |x dS/dx| summed over time."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(score(model, x, subject, w).sum(), x)
    return (x * g).detach().abs().sum(dim=-1)


def share(v: torch.Tensor) -> np.ndarray:
    v = v.double()
    return (v / v.sum()).float().numpy() if v.sum() > 0 else v.float().numpy()


def attribute(model, name: str, x, subject, w) -> dict:
    """Mean temporal, spectral and spatial profiles over the queries, each summing to 1."""
    temporal = 0.0
    freq = torch.zeros(x.shape[-1] // 2 + 1, dtype=torch.float64)
    chans = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, len(x), CHUNK):
        sl = slice(start, start + CHUNK)
        args = (x[sl], subject[sl], w[sl])
        temporal = temporal + gradcam(model, name, *args).sum(0).double()
        freq += spectral(model, *args).sum(dim=(0, 1)).double()
        chans += spatial(model, *args).sum(0).double()
    temporal = torch.from_numpy(to_samples(temporal.numpy(), name, x.shape[-1]))
    return {"temporal": share(temporal), "spectral": share(freq), "spatial": share(chans)}


def run(model_path, brain, embeddings, out, meta: dict | None = None) -> dict:
    model, info, x, subject, w = evaluate.load_run(model_path, brain, embeddings)
    name = info["brain_encoder"]
    for p in model.parameters():
        p.requires_grad_(False)  # gradients with respect to the input only
    profiles = attribute(model, name, x, subject, w)
    with h5py.File(brain, "r") as f:
        ch_names = [c.decode() if isinstance(c, bytes) else str(c) for c in f["ch_names"][:]]
        times = f["times"][:]
        sfreq = float(f.attrs["sfreq"])
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / sfreq)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        for key, v in profiles.items():
            f[key] = v
        f["times"], f["freqs"] = times.astype(np.float32), freqs.astype(np.float32)
        f["ch_names"] = np.array(ch_names, dtype=h5py.string_dtype())
        f.attrs.update({**(meta or {}), "cam_layer": CAM_LAYERS[name][0]})
        f.attrs["n_queries"] = len(x)
    log.info("wrote %s (%d queries, Grad-CAM at %s)", out, len(x), CAM_LAYERS[name][0])
    return {**profiles, "times": times, "freqs": freqs, "ch_names": ch_names}


def load(path: Path | str) -> dict:
    with h5py.File(path, "r") as f:
        out = {k: f[k][:] for k in ("temporal", "spectral", "spatial", "times", "freqs")}
        out["ch_names"] = [c.decode() for c in f["ch_names"][:]]
        out.update(dict(f.attrs))
    return out
