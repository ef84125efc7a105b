"""A plain implementation of the published THINGS-EEG2 preprocessing, used only as a yardstick.

Written from the published description (Gifford et al. 2022; NICE/AlignVis settings): MNE
epochs and resampling, sklearn's Ledoit-Wolf `_cov` in loops, the inverse matrix square root
with scipy, then the session merge. Slow and memory-hungry on purpose: it is the reference.
"""

import mne
import numpy as np
import scipy.linalg
from sklearn.discriminant_analysis import _cov
from sklearn.utils import shuffle


def epoch_partition(path, params, reps):
    raw_d = np.load(path, allow_pickle=True).item()
    info = mne.create_info(raw_d["ch_names"], raw_d["sfreq"], raw_d["ch_types"])
    raw = mne.io.RawArray(raw_d["raw_eeg_data"], info, verbose=False)
    events = mne.find_events(raw, stim_channel="stim", verbose=False)
    events = events[events[:, 2] != 99999]
    eeg = [c for c, t in zip(raw_d["ch_names"], raw_d["ch_types"]) if t == "eeg"]
    picks = eeg if params.channels == "all" else [c for c in eeg if c.startswith(("O", "P"))]
    epochs = mne.Epochs(
        raw, events, tmin=params.tmin, tmax=params.tmax, baseline=tuple(params.baseline),
        picks=picks, preload=True, verbose=False,
    )  # fmt: skip
    epochs.resample(params.sfreq, verbose=False)
    data = epochs.get_data()[:, :, params.drop_samples :]
    codes = epochs.events[:, 2]
    conditions = np.unique(codes)
    out = np.zeros((len(conditions), reps) + data.shape[1:])
    for i, c in enumerate(conditions):
        idx = shuffle(np.where(codes == c)[0], random_state=params.seed, n_samples=reps)
        out[i] = data[idx]
    return conditions, out, epochs.times[params.drop_samples :]


def mvnn(parts, mode, cov_fit):
    fit_on = parts if cov_fit == "both" else parts[:1]
    sigma_part = []
    for data in fit_on:
        per_cond = []
        for c in range(data.shape[0]):
            if mode == "time":
                covs = [_cov(data[c, :, :, t], shrinkage="auto") for t in range(data.shape[3])]
            else:
                covs = [_cov(data[c, r].T, shrinkage="auto") for r in range(data.shape[1])]
            per_cond.append(np.mean(covs, axis=0))
        sigma_part.append(np.mean(per_cond, axis=0))
    w = scipy.linalg.fractional_matrix_power(np.mean(sigma_part, axis=0), -0.5)
    return [(d.swapaxes(2, 3) @ w).swapaxes(2, 3) for d in parts]


def preprocess_subject(raw_path, subject, n_sessions, params):
    """Returns {'training': {code: (reps, ch, t)}, 'test': {...}} merged over sessions."""
    merged = {"training": {}, "test": {}}
    for ses in range(1, n_sessions + 1):
        parts, codes = [], []
        for part, reps in (("training", params.train_reps), ("test", params.test_reps)):
            c, d, _ = epoch_partition(raw_path(subject, ses, part), params, reps)
            parts.append(d)
            codes.append(c)
        if params.mvnn != "none":
            parts = mvnn(parts, params.mvnn, params.cov_fit)
        for part, c, d in zip(("training", "test"), codes, parts):
            for code, reps in zip(c, d):
                merged[part].setdefault(int(code), []).append(reps)
    return {p: {c: np.concatenate(v) for c, v in m.items()} for p, m in merged.items()}


# --- The published brain-encoder training data path (NICE / AlignVis scripts) -------------

import torch  # noqa: E402
from torch import nn  # noqa: E402


class PublishedNICE(nn.Module):
    """NICE as published: Conv2d(1, 40, (1, 25)), AvgPool2d((1, 51), (1, 5)), BN, ELU,
    Conv2d(40, 40, (63, 1)), BN, ELU, Dropout, 1x1 Conv2d, flatten, projector. Its state
    dict loads into visdecode's NICE (features.0.conv is the temporal conv)."""

    def __init__(self, n_channels=63, n_times=250, dim=512):
        super().__init__()
        from visdecode.brain_encoders import projector

        self.temporal = nn.Conv2d(1, 40, (1, 25))
        self.rest = nn.Sequential(
            nn.AvgPool2d((1, 51), (1, 5)),
            nn.BatchNorm2d(40),
            nn.ELU(),
            nn.Conv2d(40, 40, (n_channels, 1)),
            nn.BatchNorm2d(40),
            nn.ELU(),
            nn.Dropout(0.5),
            nn.Conv2d(40, 40, 1),
            nn.Flatten(),
        )
        n_times_out = (n_times - 25 + 1 - 51) // 5 + 1
        self.projector = projector(40 * n_times_out, dim, 0.5)

    def forward(self, x, subject=None):
        return self.projector(self.rest(self.temporal(x.unsqueeze(1))))

    def visdecode_state_dict(self) -> dict:
        """The same weights under visdecode's NICE names."""
        sd = self.state_dict()
        out = {f"features.0.conv.{k.split('.')[-1]}": v for k, v in sd.items()
               if k.startswith("temporal.")}  # fmt: skip
        for k, v in sd.items():
            if k.startswith("rest."):
                i, rest = k.split(".", 2)[1:]
                out[f"features.{int(i)}.{rest}"] = v  # the pool is index 0 in both
            elif k.startswith("projector."):
                out[k] = v
        return out


class PublishedEEGDataset(torch.utils.data.Dataset):
    """The published data path: every access normalises each repetition of one condition
    (centre over time, divide by the L2 norm over time), averages them, and returns it with
    its image embedding."""

    def __init__(self, eeg: np.ndarray, embeddings: np.ndarray):
        self.eeg, self.embeddings = eeg, embeddings  # (conditions, reps, ch, t), (cond, dim)

    def __len__(self):
        return len(self.eeg)

    def __getitem__(self, i):
        x = torch.from_numpy(self.eeg[i])
        x = x - x.mean(dim=-1, keepdim=True)
        x = x / x.norm(dim=-1, keepdim=True)
        return x.mean(dim=0), torch.from_numpy(self.embeddings[i])
