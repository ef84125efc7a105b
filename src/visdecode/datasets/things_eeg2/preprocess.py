"""Stage `preprocess`: raw THINGS-EEG2 sessions -> epochs -> MVNN-whitened data, one HDF5 file.

The published steps (Gifford et al. 2022; NICE/AlignVis settings as defaults), per session and
partition: find events on the stim channel, drop targets (99999), pick channels, epoch
(tmin..tmax) with baseline correction, resample (MNE's FFT resampler, as `Epochs.resample`),
drop the first samples, keep `reps` repetitions per condition (the trials sklearn's `shuffle`
picks with the published seed where there are more), multivariate noise normalisation, then
merge the sessions and shuffle each condition's repetitions. The differences are in how, not
what:

- a raw file is never loaded whole: its stim channel is read first (all files are checked
  before any work), then its samples a block at a time, in time order, each block once;
- only the kept trials are epoched; baseline, resampling and the dropped samples are one
  matrix, applied to a block of epochs as one float32 GEMM;
- Ledoit-Wolf covariances are summed in batches from Gram matrices, in a worker thread;
- a session's epochs wait in memory (float32) until its whitening matrix is known, then are
  whitened and written straight to their merged, shuffled place in the output file.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import threadpoolctl
from tqdm import tqdm

from visdecode import brain_data, sensors
from visdecode.datasets.things_eeg2 import format as fmt
from visdecode.errors import InputError
from visdecode.io import atomic_path, set_attrs

log = logging.getLogger(__name__)
CHUNK_SAMPLES = 1 << 15  # raw samples read at once (plus one epoch of overlap)
EPOCH_BLOCK = 256  # epochs projected in one GEMM at most
LW_BATCH = 1024  # covariance problems solved at once (bounds the batched Gram matrices)
WRITE_BATCH = 1024  # epochs whitened and written at once


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
def ledoit_wolf_sum(x: np.ndarray) -> np.ndarray:
    """The sum over a batch of sklearn's `discriminant_analysis._cov(X, shrinkage='auto')`.

    x: (batch, p features, n samples), each x[b] the transpose of one X. sklearn standardises
    each feature, shrinks the standardised covariance (Ledoit-Wolf) and rescales, which is
    (1 - s) C + s mu diag(sd^2) with C the covariance of X, sd the standard deviations, mu the
    mean standardised variance and s the shrinkage. Everything comes from one Gram matrix per
    problem, p x p or n x n, whichever is smaller. The Gram matrices are computed in x's dtype
    (float32 inputs stay float32), the rest in float64. Returns (p, p) float64.
    """
    n_batch, p, n = x.shape
    xc = x - x.mean(axis=2, keepdims=True)
    if p <= n:  # the p x p Gram Xc Xc^T = n C; standardised: divided by sd sd^T
        gram = np.matmul(xc, xc.transpose(0, 2, 1)).astype(np.float64)
        var = np.diagonal(gram, axis1=1, axis2=2) / n
        inv2 = 1.0 / np.where(var == 0, 1.0, var)  # StandardScaler leaves constants unscaled
        row_sq = np.einsum("bpn,bpn,bp->bn", xc, xc, inv2.astype(x.dtype))  # sum_i z_ti^2
        delta_ = np.einsum("bi,bij,bj->b", inv2, gram**2, inv2, optimize=True) / n**2
    else:  # the n x n Gram Z Z^T: the same Frobenius norm, and its diagonal is sum_i z_ti^2
        var = np.einsum("bpn,bpn->bp", xc, xc).astype(np.float64) / n
        inv2 = 1.0 / np.where(var == 0, 1.0, var)
        z = xc * np.sqrt(inv2)[:, :, None].astype(x.dtype)
        z_gram = np.matmul(z.transpose(0, 2, 1), z).astype(np.float64)
        row_sq = np.diagonal(z_gram, axis1=1, axis2=2)
        delta_ = (z_gram**2).sum(axis=(1, 2)) / n**2
    trace = (var * inv2).sum(axis=1)  # of the standardised covariance Z^T Z / n
    mu = trace / p
    beta_ = (row_sq.astype(np.float64) ** 2).sum(axis=1)
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * trace + p * mu**2) / p
    beta = np.minimum(beta, delta)
    with np.errstate(invalid="ignore", divide="ignore"):
        shrink = np.where(beta == 0, 0.0, beta / delta)
    weight = (1.0 - shrink) / n
    if p <= n:
        total = np.einsum("b,bij->ij", weight, gram)
    else:
        xw = (xc * np.sqrt(weight)[:, None, None].astype(x.dtype)).transpose(1, 0, 2)
        total = np.matmul(xw.reshape(p, -1), xw.reshape(p, -1).T).astype(np.float64)
    total[np.diag_indices(p)] += (shrink * mu) @ np.where(var == 0, 1.0, var)
    return total


def covariance_sum(block: np.ndarray, mode: str) -> tuple[np.ndarray, int]:
    """Sum and count of the MVNN covariances of a block of whole conditions (cond, reps, ch, t).

    epochs: one covariance per (condition, repetition) over time samples; time: one per
    (condition, time point) over repetitions. Every condition has the same count, so the
    published mean over repetitions/time, then over conditions, is the overall mean.
    """
    n_cond, n_rep, n_ch, n_t = block.shape
    if mode == "epochs":  # X^T = channels x time per epoch
        x = block.reshape(-1, n_ch, n_t)
    else:  # X^T = channels x repetitions per time point
        x = block.transpose(0, 3, 2, 1).reshape(-1, n_ch, n_rep)
    total = np.zeros((n_ch, n_ch))
    for i in range(0, len(x), LW_BATCH):
        total += ledoit_wolf_sum(x[i : i + LW_BATCH])
    return total, len(x)


class Workers:
    """A pool of threads for the blocks of work, with BLAS single-threaded while it runs:
    blocks in parallel use the cores better than one block at a time with threaded BLAS (the
    reading, casting, cutting of windows and much of the Ledoit-Wolf work are not BLAS), and
    every block computes the same way whatever the thread count. Queued blocks are cancelled
    when one fails."""

    def __init__(self, threads: int):
        self.threads = max(1, int(threads))

    def __enter__(self) -> Workers:
        self.blas = threadpoolctl.threadpool_limits(limits=1, user_api="blas")
        self.pool = ThreadPoolExecutor(max_workers=self.threads)
        return self

    def map(self, fn, items):
        return self.pool.map(fn, items)

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.blas.restore_original_limits()


def available_cpus() -> int:
    """CPUs this process may run on (its affinity on Linux; all of them elsewhere)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_local = threading.local()


def _buffer(name: str, shape: tuple, dtype=np.float64) -> np.ndarray:
    """A scratch array of this thread's, reused from block to block (fresh allocations of
    tens of MB cost page faults every time)."""
    buf = getattr(_local, name, None)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = np.empty(shape, dtype=dtype)
        setattr(_local, name, buf)
    return buf


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
    """One raw file, checked, with the trials kept; only its stim channel has been read."""

    raw: fmt.RawFile
    picks: np.ndarray  # rows of the EEG channels kept
    ch_names: list[str]
    codes: np.ndarray  # (n_cond,) condition codes present, ascending
    onsets: np.ndarray  # (n_cond, reps) onset samples of the repetitions kept
    first: int  # epoch start relative to onset, samples
    op: np.ndarray  # (t_out, t_in) baseline + resampling + drop, float32
    times: np.ndarray  # (t_out,) seconds

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.onsets.shape + (len(self.picks), self.op.shape[0])

    @functools.cached_property
    def op_t(self) -> np.ndarray:
        return np.ascontiguousarray(self.op.T)

    def epochs(self, pool: Workers, covariance: str | None):
        """Every kept epoch in time order, (n_epochs, ch, t) float32; `index` (n_epochs,), the
        place of each in (n_cond, reps) flattened; and the sum and count of the MVNN
        covariances in the given mode (None: none).

        The file is read once, in blocks of samples, each block a task for the pool: read in
        float64, checked for NaN/inf, centred on the block mean of each channel and cast to
        float32 (baseline correction removes a constant exactly, so the centring changes
        nothing but lets float32 carry the projection), then its epochs are cut and projected
        straight into the output and, in `epochs` mode, their covariances summed while they are
        in cache. Sums are added in block order: the result does not depend on the threads.
        """
        n_cond, reps = self.onsets.shape
        n_ch, t_out = len(self.picks), self.op.shape[0]
        starts = self.onsets.ravel() + self.first
        index = np.argsort(starts, kind="stable")
        starts = starts[index]
        out = np.empty((len(starts), n_ch, t_out), dtype=np.float32)
        blocks = range(0, self.raw.n_samples, CHUNK_SAMPLES)
        per_epoch = covariance == "epochs"
        sums = pool.map(lambda a: self._block(a, starts, out, per_epoch), blocks)
        if covariance == "time":  # needs every repetition of a condition: after the epochs
            list(sums)
            by_condition = np.argsort(index).reshape(n_cond, reps)  # time position of each
            step = max(1, EPOCH_BLOCK // reps)

            def condition_block(i: int) -> tuple[np.ndarray, int]:
                return covariance_sum(out[by_condition[i : i + step]], "time")

            sums = pool.map(condition_block, range(0, n_cond, step))
        total, count = np.zeros((n_ch, n_ch)), 0
        for block_sum, n in sums:
            total, count = total + block_sum, count + n
        return out, index, total, count

    def _block(self, a: int, starts, out, per_epoch: bool) -> tuple[np.ndarray, int]:
        """Samples a..a+CHUNK_SAMPLES (plus the tail of the last epoch) -> their epochs in out."""
        n_ch, (t_out, t_in) = len(self.picks), self.op.shape
        b = min(a + CHUNK_SAMPLES, self.raw.n_samples)
        lo, hi = np.searchsorted(starts, [a, b])  # epochs that start in this block
        stop = max(b, int(starts[hi - 1]) + t_in) if hi > lo else b
        chunk = self.raw.read(
            a, stop, out=_buffer("raw", (self.raw.shape[0], CHUNK_SAMPLES + t_in))
        )
        sums = chunk.sum(axis=1)  # one pass: finiteness and channel means
        if not np.isfinite(sums).all():
            self._non_finite(chunk, a)
        total = np.zeros((n_ch, n_ch))
        if hi == lo:
            return total, 0
        contiguous = np.all(np.diff(self.picks) == 1)  # a slice avoids a fancy-indexing copy
        rows = slice(self.picks[0], self.picks[-1] + 1) if contiguous else self.picks
        eeg = _buffer("eeg", (n_ch, CHUNK_SAMPLES + t_in), np.float32)[:, : stop - a]
        np.subtract(chunk[rows], (sums[rows] / (stop - a))[:, None], out=eeg, casting="unsafe")
        windows = _buffer("windows", (EPOCH_BLOCK, n_ch, t_in), np.float32)
        for e0 in range(lo, hi, EPOCH_BLOCK):
            e1 = min(e0 + EPOCH_BLOCK, hi)
            for i, s in enumerate(starts[e0:e1] - a):
                windows[i] = eeg[:, s : s + t_in]
            block = out[e0:e1]
            np.matmul(windows[: e1 - e0].reshape(-1, t_in), self.op_t, out=block.reshape(-1, t_out))
            if per_epoch:
                total += ledoit_wolf_sum(block)
        return total, (hi - lo if per_epoch else 0)

    def _non_finite(self, chunk: np.ndarray, start: int):
        row = int(np.flatnonzero(~np.isfinite(chunk.sum(axis=1)))[0])
        col = int(np.flatnonzero(~np.isfinite(chunk[row]))[0])
        raise InputError(
            f"{self.raw.path}: non-finite sample (NaN or inf) in channel "
            f"{self.raw.ch_names[row]} at sample {start + col}; repair or re-download the file"
        )


def read_partition(path: Path, n_cond: int, params: Params, reps: int) -> Partition:
    """Check one raw file; read its stim channel; find events; choose the repetitions kept."""
    raw = fmt.RawFile(path)
    sfreq, names = raw.sfreq, raw.ch_names
    stim = raw.read(0, raw.n_samples, rows=[names.index(fmt.STIM_NAME)])[0]
    onsets, codes = find_onsets(stim)
    keep = codes != fmt.TARGET_CODE
    onsets, codes = onsets[keep], codes[keep]
    bad = (codes < 1) | (codes > n_cond)
    if bad.any():
        raise InputError(
            f"{path}: event code {codes[bad][0]} outside the known range 1..{n_cond} "
            f"(and {fmt.TARGET_CODE} for targets); is this the right partition's file?"
        )
    eeg_names = [n for n, t in zip(names, raw.ch_types) if t == "eeg"]
    picks_names = eeg_names if params.channels == "all" else fmt.occipito_parietal(eeg_names)
    first, last = int(round(params.tmin * sfreq)), int(round(params.tmax * sfreq))
    inside = (onsets + first >= 0) & (onsets + last < raw.n_samples)
    onsets, codes = onsets[inside], codes[inside]
    present, chosen = select_repetitions(codes, reps, params.seed, path)
    op = epoch_operator(np.arange(first, last + 1) / sfreq, params, sfreq)
    n_out = op.shape[0] + params.drop_samples
    return Partition(
        raw=raw,
        picks=np.array([names.index(n) for n in picks_names]),
        ch_names=picks_names,
        codes=present,
        onsets=onsets[chosen],
        first=first,
        op=op.astype(np.float32),
        times=params.tmin + (np.arange(n_out) / params.sfreq)[params.drop_samples :],
    )


# --------------------------------------------------------------------------- merge
@dataclass
class Merge:
    """Where each session's repetitions go in the merged partition: the published merge
    (a condition's repetitions gathered over the sessions that hold it), then each condition's
    repetitions shuffled (seeded)."""

    codes: np.ndarray  # (n_cond,) every condition, ascending
    total: int  # repetitions per condition after the merge
    rows: dict  # session -> (n_cond_s,) output rows of the session's conditions
    slots: dict  # session -> (n_cond_s, reps) output repetition of each of its epochs

    @classmethod
    def plan(cls, part: str, codes: dict, reps: int, seed: int) -> Merge:
        """codes: session -> its condition codes (ascending)."""
        every = np.unique(np.concatenate(list(codes.values())))
        held = np.zeros(len(every), dtype=int)
        for c in codes.values():
            held[np.searchsorted(every, c)] += 1
        if len(set(held)) != 1:
            raise InputError(
                f"{part}: conditions appear in different numbers of sessions "
                f"({sorted(set(held))}); the session files do not form one subject"
            )
        total = reps * int(held[0])
        shuffled = np.random.default_rng(seed).permuted(
            np.broadcast_to(np.arange(total), (len(every), total)), axis=1
        )  # shuffled[c, j]: which merged repetition lands in slot j
        slot_of = np.argsort(shuffled, axis=1)  # slot_of[c, k]: where repetition k lands
        filled = np.zeros(len(every), dtype=int)
        rows, slots = {}, {}
        for ses in sorted(codes):
            rows[ses] = np.searchsorted(every, codes[ses])
            merged = filled[rows[ses], None] + np.arange(reps)
            slots[ses] = np.take_along_axis(slot_of[rows[ses]], merged, axis=1)
            filled[rows[ses]] += reps
        return cls(every, total, rows, slots)

    def create(self, f: h5py.File, name: str, epoch_shape: tuple) -> h5py.Dataset:
        """The merged dataset (n_cond, total, ch, t) float32: contiguous, its file space
        allocated at creation, so that every epoch has a fixed place in the file."""
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # every value is written below
        shape = (len(self.codes), self.total) + tuple(epoch_shape)
        return f.create_dataset(name, shape, "<f4", dcpl=dcpl)

    def write(self, dset: h5py.Dataset, ses: int, data, index, w, pool: Workers) -> None:
        """Whiten a session's epochs (n_epochs, ch, t), X(time x ch) @ W (None: as they are),
        and write each to its output row and slot; index: each epoch's place in the session's
        (n_cond, reps) flattened.

        The epochs land at scattered places (the shuffle), which h5py's point selections
        write at ~100 us an epoch; the dataset's bytes have a fixed offset in the file
        (H5Dget_offset of a contiguous, early-allocated dataset), so each epoch is written
        there with one pwrite instead, 5x faster. Nothing else writes that byte range.
        """
        w_t = None if w is None else w.T.astype(np.float32)
        epoch_bytes = int(np.prod(dset.shape[2:])) * 4
        rows, slots = self.rows[ses], self.slots[ses]
        where = dset.id.get_offset() + (rows[:, None] * self.total + slots) * epoch_bytes
        where, flat = where.ravel()[index], data
        fd = os.open(dset.file.filename, os.O_WRONLY)

        def write_batch(i: int) -> None:
            epochs = flat[i : i + WRITE_BATCH]
            if w_t is not None:
                epochs = np.matmul(
                    w_t,
                    epochs,
                    out=_buffer("whitened", (WRITE_BATCH,) + flat.shape[1:], np.float32)[
                        : len(epochs)
                    ],
                )
            for epoch, offset in zip(epochs, where[i : i + WRITE_BATCH]):
                os.pwrite(fd, epoch, int(offset))

        try:
            list(pool.map(write_batch, range(0, len(flat), WRITE_BATCH)))
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- subject
def conditions(raw_dir: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Per partition, each event code's stimulus and concept (code c is row c - 1)."""
    meta = fmt.load_image_metadata(Path(raw_dir) / "images" / "image_metadata.npy")
    return {part: fmt.stimuli(meta, part) for part in fmt.PARTITIONS}


def run(
    raw_dir: Path | str,
    subject: int,
    out: Path | str,
    params: Params = Params(),
    threads: int | None = None,
) -> None:
    """Preprocess one subject into `out`; threads: worker threads (default: every CPU this
    process may use). The output does not depend on the thread count."""
    raw_dir, out = Path(raw_dir), Path(out)
    threads = threads or available_cpus()
    stimuli = conditions(raw_dir)
    n_cond = {part: len(stimuli[part][0]) for part in stimuli}
    sessions = range(1, params.n_sessions + 1)
    reps = {"training": params.train_reps, "test": params.test_reps}
    paths = {(s, p): fmt.raw_path(raw_dir, subject, s, p) for s in sessions for p in reps}
    for path in paths.values():  # fail early, before any work, on a missing file
        if not path.is_file():
            raise InputError(f"{path}: raw session file not found")
    # every file checked and its trials chosen before any epoching
    parts = {k: read_partition(path, n_cond[k[1]], params, reps[k[1]]) for k, path in paths.items()}
    merges = {
        p: Merge.plan(p, {s: parts[s, p].codes for s in sessions}, reps[p], params.seed)
        for p in reps
    }
    fit_on = ("training", "test") if params.cov_fit == "both" else ("training",)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp_out, h5py.File(tmp_out, "w") as f, Workers(threads) as pool:
        dsets = {}
        for part, name in (("training", "train"), ("test", "test")):
            dsets[part] = merges[part].create(f, name, parts[1, part].shape[2:])
            f[f"{name}_codes"] = merges[part].codes
            brain_data.write_stimuli(f, name, *stimuli[part], merges[part].codes - 1)
        for ses in tqdm(sessions, desc=f"sub-{subject:02d} sessions", unit="session"):
            data, index, covs = {}, {}, []
            for part in reps:
                start = time.perf_counter()
                fit = params.mvnn != "none" and part in fit_on
                mode = params.mvnn if fit else None
                data[part], index[part], total, count = parts[ses, part].epochs(pool, mode)
                if fit:
                    covs.append(total / count)
                log.info(
                    "ses-%02d %s: %s epochs%s in %.1f s", ses, part, parts[ses, part].shape,
                    f", {count} {mode} covariances" if fit else "", time.perf_counter() - start,
                )  # fmt: skip
            start = time.perf_counter()
            w = inverse_sqrt(np.mean(covs, axis=0)) if covs else None  # None: no MVNN
            for part in reps:
                merges[part].write(dsets[part], ses, data[part], index[part], w, pool)
            log.info("ses-%02d: whitened and written in %.1f s", ses, time.perf_counter() - start)
            del data
        f["ch_names"] = parts[1, "training"].ch_names
        f["times"] = parts[1, "training"].times
        sensors.write(f, sensors.standard_eeg(list(parts[1, "training"].ch_names), params.sfreq))
        f.attrs["kind"], f.attrs["modality"] = fmt.KIND, fmt.MODALITY
        set_attrs(f, {k: v for k, v in asdict(params).items()})
        f.attrs["subject"] = subject
        f.attrs["raw_dir"] = str(raw_dir)
    log.info("wrote %s (%d threads)", out, threads)
