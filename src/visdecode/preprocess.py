"""Stage `preprocess`: raw THINGS-EEG2 sessions -> epochs -> MVNN-whitened data, one HDF5 file.

The published steps (Gifford et al. 2022; NICE/AlignVis settings as defaults), per session and
partition: find events on the stim channel, drop targets (99999), pick channels, epoch
(tmin..tmax) with baseline correction, resample (MNE's FFT resampler, as `Epochs.resample`),
drop the first samples, keep `reps` repetitions per condition (the trials sklearn's `shuffle`
picks with the published seed where there are more), multivariate noise normalisation, then merge the
sessions. Differences from the published script are in how, not what: epochs are cut only for
the trials kept, in chunks; Ledoit-Wolf covariances are computed in batches; sessions are
streamed one at a time through a temporary HDF5 file.
"""

from __future__ import annotations

import logging
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from visdecode import things_eeg2 as fmt
from visdecode.errors import InputError
from visdecode.io import atomic_path, set_attrs

log = logging.getLogger(__name__)
CHUNK = 1024  # conditions per block when merging sessions
EPOCH_CHUNK = 256  # epochs cut and projected at once
LW_BATCH = 2048  # covariance problems solved at once (bounds the batched Gram matrices)


@dataclass(frozen=True)
class Params:
    """Preprocessing options; defaults are NICE/AlignVis's. See config/README.md."""

    mvnn: str = "epochs"  # epochs | time | none
    cov_fit: str = "train"  # train | both (Gifford's variant, averages the two partitions)
    channels: str = "all"  # all | occipito-parietal
    tmin: float = -0.2
    tmax: float = 1.0
    baseline: tuple = (None, 0.0)
    sfreq: float = 250.0
    drop_samples: int = 50
    train_reps: int = 2  # per session
    test_reps: int = 20  # per session
    n_sessions: int = 4
    seed: int = 20200220

    def __post_init__(self):
        choices = {
            "mvnn": ("epochs", "time", "none"),
            "cov_fit": ("train", "both"),
            "channels": ("all", "occipito-parietal"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise InputError(f"preprocess option {key}={getattr(self, key)!r}: use {allowed}")


# --------------------------------------------------------------------------- covariance
def ledoit_wolf_batch(x: np.ndarray) -> np.ndarray:
    """sklearn's `discriminant_analysis._cov(X, shrinkage='auto')` for a batch of X.

    x: (batch, n_samples, n_features). Standardise each feature, Ledoit-Wolf shrinkage on the
    standardised data, rescale by the standard deviations. Returns (batch, p, p) float64.
    """
    n, p = x.shape[1], x.shape[2]
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=1, keepdims=True)
    gram = np.matmul(centred.transpose(0, 2, 1), centred)  # Xc^T Xc, batched BLAS
    scale = np.sqrt(np.diagonal(gram, axis1=1, axis2=2) / n)  # StandardScaler: population std
    scale[scale == 0] = 1.0
    inv = 1.0 / scale
    gram *= inv[:, :, None] * inv[:, None, :]  # Z^T Z of the standardised Z, without forming Z
    emp = gram / n
    trace = np.einsum("bii->b", emp)
    mu = trace / p
    np.square(centred, out=centred)
    row_sq = np.matmul(centred, (inv**2)[:, :, None])[..., 0]  # sum_i z_ti^2 per sample
    beta_ = (row_sq**2).sum(axis=1)  # sum((Z^2)^T (Z^2))
    delta_ = (gram**2).sum(axis=(1, 2)) / n**2
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * trace + p * mu**2) / p
    beta = np.minimum(beta, delta)
    with np.errstate(invalid="ignore", divide="ignore"):
        shrink = np.where(beta == 0, 0.0, beta / delta)
    cov = (1.0 - shrink)[:, None, None] * emp
    cov[:, np.arange(p), np.arange(p)] += (shrink * mu)[:, None]
    return scale[:, :, None] * cov * scale[:, None, :]


def covariance_sum(block: np.ndarray, mode: str) -> tuple[np.ndarray, int]:
    """Sum and count of the MVNN covariances of a block of whole conditions (cond, reps, ch, t).

    epochs: one covariance per (condition, repetition) over time samples; time: one per
    (condition, time point) over repetitions. Every condition has the same count, so the
    published mean over repetitions/time, then over conditions, is the overall mean.
    """
    n_cond, n_rep, n_ch, n_t = block.shape
    block = np.asarray(block, dtype=np.float64)
    if mode == "epochs":  # X = time x channels per epoch
        x = block.reshape(-1, n_ch, n_t).transpose(0, 2, 1)
    else:  # X = repetitions x channels per time point
        x = block.transpose(0, 3, 1, 2).reshape(-1, n_rep, n_ch)
    total = np.zeros((n_ch, n_ch))
    for i in range(0, len(x), LW_BATCH):
        total += ledoit_wolf_batch(x[i : i + LW_BATCH]).sum(axis=0)
    return total, len(x)


class CovarianceAccumulator:
    """Mean MVNN covariance over blocks, computed in a worker thread so that it overlaps the
    epoching of the next block (numpy releases the GIL); at most two blocks wait."""

    def __init__(self, mode: str):
        self.mode = mode
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: deque = deque()
        self.total, self.count = 0.0, 0

    def add(self, block: np.ndarray) -> None:
        self.pending.append(self.pool.submit(covariance_sum, block, self.mode))
        while len(self.pending) > 2:
            self._collect()

    def _collect(self) -> None:
        block_sum, n = self.pending.popleft().result()
        self.total, self.count = self.total + block_sum, self.count + n

    def mean(self) -> np.ndarray:
        while self.pending:
            self._collect()
        return self.total / self.count

    def __enter__(self) -> CovarianceAccumulator:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=exc_type is not None)


def inverse_sqrt(cov: np.ndarray) -> np.ndarray:
    """Sigma^(-1/2) of a symmetric positive definite matrix."""
    vals, vecs = np.linalg.eigh(cov)
    if vals.min() <= 0:
        raise InputError("noise covariance is not positive definite; check for flat channels")
    return (vecs / np.sqrt(vals)) @ vecs.T


# --------------------------------------------------------------------------- epochs
def resample(x: np.ndarray, up: float, down: float) -> np.ndarray:
    """MNE's `Epochs.resample` (method 'fft', npad 'auto', window 'auto', pad 'edge') over the
    last axis, vectorised over all leading axes instead of one row at a time."""
    from scipy import fft

    x_len = x.shape[-1]
    ratio = float(up) / down
    final_len = int(round(ratio * x_len))
    min_add = min(x_len // 8, 100) * 2
    npad, extra = divmod(2 ** int(np.ceil(np.log2(x_len + min_add))) - x_len, 2)
    npads = (npad, npad + extra)
    orig_len = x_len + sum(npads)
    new_len = max(int(round(ratio * orig_len)), 1)
    remove0 = int(round(ratio * npads[0]))
    padded = np.empty(x.shape[:-1] + (orig_len,))
    padded[..., : npads[0]] = x[..., :1]
    padded[..., npads[0] : npads[0] + x_len] = x
    padded[..., npads[0] + x_len :] = x[..., -1:]
    spec = fft.rfft(padded, axis=-1, workers=-1)
    shorter = new_len < orig_len
    use_len = new_len if shorter else orig_len
    if use_len % 2 == 0:
        spec[..., use_len // 2] *= 2 if shorter else 0.5
    spec *= new_len / orig_len  # boxcar window, scaled
    y = fft.irfft(spec, new_len, axis=-1, workers=-1)
    return y[..., remove0 : remove0 + final_len]


def epoch_operator(times_in: np.ndarray, params: Params, sfreq: float) -> np.ndarray:
    """Baseline correction, resampling and the dropped first samples as one matrix.

    All three steps are linear and the same for every epoch and channel, so the published
    chain (baseline, `Epochs.resample`, drop) equals `epoch @ op.T` with op (n_out, n_in),
    built by passing the identity through the very same steps.
    """
    base = np.ones_like(times_in, dtype=bool)
    if params.baseline[0] is not None:
        base &= times_in >= params.baseline[0]
    if params.baseline[1] is not None:
        base &= times_in <= params.baseline[1]
    eye = np.eye(len(times_in))
    baselined = eye - eye[:, base].mean(axis=1, keepdims=True)  # rows: unit impulses
    return resample(baselined, params.sfreq, sfreq)[:, params.drop_samples :].T.copy()


def find_onsets(stim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Onset samples and codes: where the stim channel steps to a new non-zero value."""
    prev = np.concatenate([[0.0], stim[:-1]])
    onsets = np.flatnonzero((stim != 0) & (stim != prev))
    return onsets, stim[onsets].astype(np.int64)


def select_repetitions(codes: np.ndarray, reps: int, seed: int, path: Path):
    """Per condition present, the `reps` trials the published script keeps.

    It calls `sklearn.utils.shuffle(idx, random_state=seed, n_samples=reps)` per condition:
    `RandomState(seed).permutation(len(idx))[:reps]` of the condition's trials. The seed is the
    same for every condition, so the permutation depends only on the trial count: cached.
    """
    present = np.unique(codes)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], present)
    counts = np.diff(np.append(bounds, len(codes)))
    short = present[counts < reps]
    if len(short):
        raise InputError(
            f"{path}: condition {short[0]} has {counts[counts < reps][0]} repetitions, "
            f"fewer than the {reps} asked for ({len(short)} such conditions); lower the "
            "repetitions kept per session"
        )
    perms = {int(c): np.random.RandomState(seed).permutation(c)[:reps] for c in set(counts)}
    chosen = np.stack([order[b + perms[int(c)]] for b, c in zip(bounds, counts)])
    return present, chosen


@dataclass
class Partition:
    """One raw file, checked, with the trials kept: nothing is epoched yet."""

    data: np.ndarray  # (rows, samples) float64, read-only view of the raw file
    picks: np.ndarray  # rows of the EEG channels kept
    means: np.ndarray  # (len(picks), 1) session mean of each kept channel
    ch_names: list[str]
    codes: np.ndarray  # (n_cond,) condition codes present, ascending
    onsets: np.ndarray  # (n_cond, reps) onset samples of the repetitions kept
    offsets: np.ndarray  # epoch sample offsets relative to onset
    op: np.ndarray  # (t_out, t_in) baseline + resampling + drop, float32
    times: np.ndarray  # (t_out,) seconds

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.onsets.shape + (len(self.picks), self.op.shape[0])

    def blocks(self, epochs_per_block: int = EPOCH_CHUNK):
        """Yield (start, epochs (n, reps, ch, t) float32) over blocks of whole conditions.

        Each channel's session mean is removed first (float64): baseline correction removes
        constants exactly, so this changes nothing but lets float32 carry the projection.
        """
        n_cond, reps = self.onsets.shape
        step = max(1, epochs_per_block // reps)
        n_ch, (t_out, t_in) = len(self.picks), self.op.shape
        contiguous = np.all(np.diff(self.picks) == 1)
        rows = slice(self.picks[0], self.picks[-1] + 1) if contiguous else self.picks
        buf = np.empty((step * reps, n_ch, t_in), dtype=np.float32)
        for start in range(0, n_cond, step):
            onsets = self.onsets[start : start + step].ravel()
            for i, onset in enumerate(onsets + self.offsets[0]):
                window = self.data[rows, onset : onset + t_in]  # a view when rows is a slice
                np.subtract(window, self.means, out=buf[i], casting="unsafe")  # f64 -> f32
            out = buf[: len(onsets)].reshape(-1, t_in) @ self.op.T  # one GEMM
            yield start, out.reshape(-1, reps, n_ch, t_out)


def read_partition(path: Path, n_cond: int, params: Params, reps: int) -> Partition:
    """Load and check one raw file; find events; choose the repetitions kept."""
    raw = fmt.load_raw(path)
    sfreq = float(raw["sfreq"])
    data = raw["raw_eeg_data"]
    names = raw["ch_names"]
    sums = data.sum(axis=1)  # one pass: finiteness test and channel means
    finite = np.isfinite(sums)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        col = int(np.flatnonzero(~np.isfinite(data[row]))[0])
        raise InputError(
            f"{path}: non-finite sample (NaN or inf) in channel {names[row]} at sample "
            f"{col}; repair or re-download the file"
        )
    onsets, codes = find_onsets(data[names.index(fmt.STIM_NAME)])
    keep = codes != fmt.TARGET_CODE
    onsets, codes = onsets[keep], codes[keep]
    bad = (codes < 1) | (codes > n_cond)
    if bad.any():
        raise InputError(
            f"{path}: event code {codes[bad][0]} outside the known range 1..{n_cond} "
            f"(and {fmt.TARGET_CODE} for targets); is this the right partition's file?"
        )
    eeg_names = [n for n, t in zip(names, raw["ch_types"]) if t == "eeg"]
    picks_names = eeg_names if params.channels == "all" else fmt.occipito_parietal(eeg_names)
    first, last = int(round(params.tmin * sfreq)), int(round(params.tmax * sfreq))
    inside = (onsets + first >= 0) & (onsets + last < data.shape[1])
    onsets, codes = onsets[inside], codes[inside]
    present, chosen = select_repetitions(codes, reps, params.seed, path)
    offsets = np.arange(first, last + 1)
    op = epoch_operator(offsets / sfreq, params, sfreq)
    n_out = op.shape[0] + params.drop_samples
    picks = np.array([names.index(n) for n in picks_names])
    return Partition(
        data=data,
        picks=picks,
        means=(sums[picks] / data.shape[1])[:, None],
        ch_names=picks_names,
        codes=present,
        onsets=onsets[chosen],
        offsets=offsets,
        op=op.astype(np.float32),
        times=params.tmin + (np.arange(n_out) / params.sfreq)[params.drop_samples :],
    )


def whiten(data: np.ndarray, w: np.ndarray) -> np.ndarray:
    """X(time x ch) @ W for every epoch; data (cond, reps, ch, t) float32."""
    return np.einsum("ij,crjt->crit", w.T.astype(np.float32), data, optimize=True)


# --------------------------------------------------------------------------- subject
def condition_counts(raw_dir: Path) -> dict[str, int]:
    meta = fmt.load_image_metadata(Path(raw_dir) / "images" / "image_metadata.npy")
    return {"training": len(meta["train_img_files"]), "test": len(meta["test_img_files"])}


def run(raw_dir: Path | str, subject: int, out: Path | str, params: Params = Params()) -> None:
    raw_dir, out = Path(raw_dir), Path(out)
    n_cond = condition_counts(raw_dir)
    sessions = range(1, params.n_sessions + 1)
    for ses in sessions:  # fail early, before any work, on a missing file
        for part in fmt.PARTITIONS:
            path = fmt.raw_path(raw_dir, subject, ses, part)
            if not path.is_file():
                raise InputError(f"{path}: raw session file not found")
    out.parent.mkdir(parents=True, exist_ok=True)
    fit_on = ("training", "test") if params.cov_fit == "both" else ("training",)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp_dir:
        with h5py.File(Path(tmp_dir) / "sessions.h5", "w") as tmp:
            for ses in tqdm(sessions, desc=f"sub-{subject:02d} sessions", unit="session"):
                sums = []
                for part, reps in (("training", params.train_reps), ("test", params.test_reps)):
                    path = fmt.raw_path(raw_dir, subject, ses, part)
                    p = read_partition(path, n_cond[part], params, reps)
                    g = tmp.create_group(f"ses-{ses:02d}/{part}")
                    g["codes"] = p.codes
                    dset = g.create_dataset("data", p.shape, dtype="float32")
                    fit = params.mvnn != "none" and part in fit_on
                    with CovarianceAccumulator(params.mvnn) as acc:
                        for start, block in p.blocks():
                            dset[start : start + len(block)] = block
                            if fit:
                                acc.add(block)
                        if fit:
                            sums.append(acc.mean())
                    ch_names, times = p.ch_names, p.times
                    log.info("ses-%02d %s: %s", ses, part, p.shape)
                    del p  # frees this raw file before the next is read
                # identity = no noise normalisation; applied while merging the sessions
                w = inverse_sqrt(np.mean(sums, axis=0)) if sums else np.eye(len(ch_names))
                tmp[f"ses-{ses:02d}/whitening"] = w
            with atomic_path(out) as tmp_out, h5py.File(tmp_out, "w") as f:
                for part, name in (("training", "train"), ("test", "test")):
                    merge_sessions(tmp, part, name, f, np.random.default_rng(params.seed))
                f["ch_names"] = ch_names
                f["times"] = times
                set_attrs(f, {k: v for k, v in asdict(params).items()})
                f.attrs["subject"] = subject
                f.attrs["raw_dir"] = str(raw_dir)
    log.info("wrote %s", out)


def merge_sessions(tmp: h5py.File, part: str, name: str, f: h5py.File, rng) -> None:
    """Gather every condition's repetitions over sessions, each whitened with its session's
    matrix; shuffle repetitions (seeded)."""
    groups = [tmp[s][part] for s in sorted(tmp)]
    whitening = [tmp[s]["whitening"][:] for s in sorted(tmp)]
    codes = np.unique(np.concatenate([g["codes"][:] for g in groups]))
    where = {int(c): [] for c in codes}
    for gi, g in enumerate(groups):
        for i, c in enumerate(g["codes"][:]):
            where[int(c)].append((gi, i))
    n_sessions_per = {len(v) for v in where.values()}
    if len(n_sessions_per) != 1:
        raise InputError(
            f"{part}: conditions appear in different numbers of sessions "
            f"({sorted(n_sessions_per)}); the session files do not form one subject"
        )
    reps, n_ch, n_t = groups[0]["data"].shape[1:]
    total = reps * n_sessions_per.pop()
    dset = f.create_dataset(
        name, (len(codes), total, n_ch, n_t), dtype="float32", chunks=(1, total, n_ch, n_t)
    )
    f[f"{name}_codes"] = codes
    for start in range(0, len(codes), CHUNK):
        block_codes = codes[start : start + CHUNK]
        block = np.empty((len(block_codes), total, n_ch, n_t), dtype=np.float32)
        filled = np.zeros(len(block_codes), dtype=int)
        for gi, g in enumerate(groups):
            pos = [(k, i) for k, c in enumerate(block_codes) for s, i in where[int(c)] if s == gi]
            if not pos:
                continue
            rows, idx = map(np.array, zip(*pos))
            # codes are sorted in both, so a block's indices in a session are consecutive
            lo, hi = idx.min(), idx.max() + 1
            data = whiten(g["data"][lo:hi], whitening[gi])[idx - lo]
            for r, d in zip(rows, data):
                block[r, filled[r] : filled[r] + reps] = d
                filled[r] += reps
        for r in range(len(block)):
            block[r] = block[r, rng.permutation(total)]
        dset[start : start + len(block)] = block
