"""THINGS-EEG2 on-disk format: layout, channel names, event codes and checked loading.

Shared by the synthetic world (which writes this format) and the preprocessing (which reads
it), so real and synthetic data go through the same code. Facts: Gifford et al. 2022.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

from visdecode.errors import InputError

# The 63 EEG channels of THINGS-EEG2 in recording order (10-10 system), then the stim row.
CH_NAMES = [
    "Fp1", "Fp2", "AF7", "AF3", "AFz", "AF4", "AF8", "F7", "F5", "F3", "F1", "F2", "F4",
    "F6", "F8", "FT9", "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8", "FT10",
    "T7", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "T8", "TP9", "TP7", "CP5", "CP3", "CP1",
    "CPz", "CP2", "CP4", "CP6", "TP8", "TP10", "P7", "P5", "P3", "P1", "Pz", "P2", "P4", "P6",
    "P8", "PO7", "PO3", "POz", "PO4", "PO8", "O1", "Oz", "O2",
]  # fmt: skip
KIND = "things-eeg2"
MODALITY = "eeg"
STIM_NAME = "stim"
SFREQ = 1000.0
TARGET_CODE = 99999
PARTITIONS = ("training", "test")
RAW_KEYS = ("raw_eeg_data", "ch_names", "ch_types", "sfreq")
LAZY_BYTES = 1 << 20  # pickled arrays this large are read from disk on demand
RELEASE_FILES = ("preprocessed_eeg_training.npy", "preprocessed_eeg_test.npy")
RELEASE_KEYS = ("preprocessed_eeg_data", "ch_names", "times")
RELEASE_REPS = {"training": 4, "test": 80}
METADATA_KEYS = (
    "train_img_concepts",
    "train_img_files",
    "test_img_concepts",
    "test_img_files",
)


def occipito_parietal(ch_names: list[str]) -> list[str]:
    """The 17 channels Gifford et al. keep: names starting with O or P."""
    return [c for c in ch_names if c.startswith(("O", "P"))]


def raw_path(raw_dir: Path | str, subject: int, session: int, partition: str) -> Path:
    """`raw_eeg/sub-XX/ses-YY/raw_eeg_{partition}.npy` under the data set root."""
    return (
        Path(raw_dir)
        / "raw_eeg"
        / f"sub-{subject:02d}"
        / f"ses-{session:02d}"
        / f"raw_eeg_{partition}.npy"
    )


class _OnDisk:
    """A large bytes payload of a pickle, left on disk: where it starts and how long it is."""

    __slots__ = ("offset", "size")

    def __init__(self, offset: int, size: int):
        self.offset, self.size = offset, size


class _SkippingReader:
    """File wrapper for the unpickler: a read of LAZY_BYTES or more is not read but recorded
    as an _OnDisk marker and skipped, so a raw file's EEG array never has to be loaded whole."""

    def __init__(self, f, size: int):
        self.f, self.size = f, size
        self.readline, self.readinto = f.readline, f.readinto

    def read(self, n: int = -1):
        if n < LAZY_BYTES:
            return self.f.read(n)
        offset = self.f.tell()
        if offset + n > self.size:
            raise EOFError(f"array data ends at byte {offset + n}, file has {self.size}")
        self.f.seek(n, 1)
        return _OnDisk(offset, n)


class _Array:
    """Stands in for numpy's `_reconstruct` while unpickling: holds shape, dtype and order, and
    the data either in memory or as an _OnDisk marker."""

    def __init__(self, subtype=None, shape=(), dtype=None):
        self.data = None

    @classmethod
    def from_buffer(cls, data, dtype, shape, order="C"):  # numpy's protocol-5 reduction
        arr = cls()
        arr.__setstate__((shape, dtype, order == "F", data))
        return arr

    def __setstate__(self, state):
        self.shape, self.dtype, self.fortran, self.data = state[-4:]
        self.shape, self.dtype = tuple(self.shape), np.dtype(self.dtype)

    def resolve(self):
        """An ndarray, unless the data is still on disk (then self)."""
        if isinstance(self.data, _OnDisk):
            return self
        order = "F" if self.fortran else "C"
        if isinstance(self.data, list):  # an object array (the dict's 0-d wrapper)
            arr = np.empty(len(self.data), dtype=object)
            arr[:] = [_resolve(v) for v in self.data]
            return arr.reshape(self.shape, order=order)
        return np.frombuffer(self.data, dtype=self.dtype).reshape(self.shape, order=order).copy()


def _resolve(obj):
    if isinstance(obj, _Array):
        return obj.resolve()
    if isinstance(obj, dict):
        return {k: _resolve(v) for k, v in obj.items()}
    return obj


class _Unpickler(pickle._Unpickler):  # the Python unpickler: reads go through _SkippingReader
    def find_class(self, module, name):
        if name == "_reconstruct" and module in (
            "numpy.core.multiarray",
            "numpy._core.multiarray",
        ):
            return _Array
        if name == "_frombuffer" and module in (
            "numpy.core.numeric",
            "numpy._core.numeric",
        ):
            return _Array.from_buffer
        if module.startswith("numpy.core"):  # pickles written by numpy 1.x
            module = "numpy._core" + module[len("numpy.core") :]
        return super().find_class(module, name)

    def _load_bytearray8(self):  # protocol 5 stores array data as a bytearray
        (n,) = struct.unpack("<Q", self.read(8))
        data = self.read(n)
        self.append(data if isinstance(data, _OnDisk) else bytearray(data))

    dispatch = {**pickle._Unpickler.dispatch, pickle.BYTEARRAY8[0]: _load_bytearray8}


def _unpickle_header(path: Path) -> dict:
    """The pickled dict of a raw file, with `raw_eeg_data` left on disk where it is large."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(6) == np.lib.format.MAGIC_PREFIX:
            f.seek(0)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                np.lib.format.read_magic(f), np.lib.format.read_array_header_2_0
            )
            dtype = read_header(f, max_header_size=1 << 20)[2]
            if dtype != object:
                raise InputError(f"{path}: expected a pickled dict, found a plain {dtype} array")
        else:
            f.seek(0)
        obj = _Unpickler(_SkippingReader(f, size)).load()
    obj = _resolve(obj)
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()
    return obj


def _load_whole(path: Path):
    try:
        obj = np.load(path, allow_pickle=True)
        return obj.item() if isinstance(obj, np.ndarray) and obj.dtype == object else obj
    except Exception as err:  # truncated or not a pickle
        raise InputError(
            f"{path}: cannot be read ({type(err).__name__}: {err}); "
            "the file is truncated or corrupt, download it again"
        ) from None


class RawFile:
    """One raw session file, checked, with its EEG array read on demand (rows x samples).

    The header (channel names, types, rate) is unpickled; the array's bytes are located in the
    file and read a block of samples at a time, so the file is never held in memory whole.
    Arrays stored in an unexpected way are loaded in memory instead; the reads are the same.
    """

    def __init__(self, path: Path | str):
        self.path = path = Path(path)
        if not path.is_file():
            raise InputError(
                f"{path}: raw session file not found; download the raw EEG (visdecode "
                "download) or generate the synthetic world (visdecode synth)"
            )
        try:
            raw = _unpickle_header(path)
        except InputError:
            raise
        except Exception:  # stored some other way, or damaged: numpy's loader decides
            raw = None
        if not (
            isinstance(raw, dict) and isinstance(raw.get("raw_eeg_data"), (_Array, np.ndarray))
        ):
            raw = _load_whole(path)
        if not isinstance(raw, dict):
            raise InputError(f"{path}: expected a pickled dict, found {type(raw).__name__}")
        missing = [k for k in RAW_KEYS if k not in raw]
        if missing:
            raise InputError(
                f"{path}: dict lacks key(s) {', '.join(missing)}; expected {', '.join(RAW_KEYS)}"
            )
        self.data = raw.pop("raw_eeg_data")
        if not isinstance(self.data, _Array):
            self.data = np.asarray(self.data)
        self.meta = raw
        self.ch_names, self.ch_types = list(raw["ch_names"]), list(raw["ch_types"])
        self.sfreq = float(raw["sfreq"])
        self.shape = tuple(self.data.shape)
        if isinstance(self.data, _Array) and self.data.data.size != (
            np.prod(self.shape) * self.data.dtype.itemsize
        ):
            raise InputError(
                f"{path}: raw_eeg_data holds {self.data.data.size} bytes, not the "
                f"{np.prod(self.shape)} {self.data.dtype} values of its shape; the file is "
                "corrupt, download it again"
            )
        if len(self.shape) != 2 or self.shape[0] != len(self.ch_names):
            raise InputError(
                f"{path}: raw_eeg_data has shape {self.shape}, expected "
                f"({len(self.ch_names)}, n_samples) to match ch_names"
            )
        if STIM_NAME not in self.ch_names:
            raise InputError(f"{path}: no '{STIM_NAME}' channel in ch_names")

    @property
    def n_samples(self) -> int:
        return self.shape[1]

    @property
    def on_disk(self) -> bool:
        """Whether the EEG array is read from the file on demand (else it is in memory)."""
        return isinstance(self.data, _Array)

    def read(self, start: int, stop: int, rows=None, out: np.ndarray | None = None) -> np.ndarray:
        """Samples start..stop-1 of the given rows (default all), float64 (rows, stop - start);
        into `out` (rows, >= stop - start) where given."""
        rows = np.arange(self.shape[0]) if rows is None else np.asarray(rows)
        n = stop - start
        out = np.empty((len(rows), n)) if out is None else out[: len(rows), :n]
        if isinstance(self.data, np.ndarray):
            out[:] = self.data[rows, start:stop]
            return out
        item, where = self.data.dtype.itemsize, self.data.data.offset
        with open(self.path, "rb", buffering=0) as f:
            if self.data.fortran:  # samples x rows on disk: one contiguous read
                buf = np.empty((n, self.shape[0]), dtype=self.data.dtype)
                self._read_into(f, buf, where + start * self.shape[0] * item)
                out[:] = buf.T[rows]
            else:  # rows x samples: one read per row
                direct = self.data.dtype == out.dtype and out.strides[1] == out.itemsize
                buf = out if direct else np.empty((len(rows), n), dtype=self.data.dtype)
                for i, r in enumerate(rows):
                    self._read_into(f, buf[i], where + (r * self.shape[1] + start) * item)
                if not direct:
                    out[:] = buf
        return out

    def _read_into(self, f, buf: np.ndarray, offset: int) -> None:
        f.seek(offset)
        if f.readinto(memoryview(buf).cast("B")) != buf.nbytes:
            raise InputError(
                f"{self.path}: ends early; the file is truncated or corrupt, download it again"
            )


def load_raw(path: Path | str) -> dict:
    """Load one raw session file (a pickled dict) whole and check it; InputError if unusable."""
    raw = RawFile(path)
    return {
        **raw.meta,
        "raw_eeg_data": raw.read(0, raw.n_samples),
        "ch_names": raw.ch_names,
    }


def load_image_metadata(path: Path | str) -> dict:
    """Load `images/image_metadata.npy` (pickled dict with the four published keys), checked to
    be in event-code order: the code of a row is its position, and the data set numbers its
    concepts by their folders (`NNNNN_concept`), so the folders' numbers must run 1, 2, ...
    in blocks, a concept's images together. A file whose concepts are out of order is refused,
    since event codes would then name the wrong images (images swapped within one concept
    cannot be told from the file)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image metadata not found; fetch or synthesise the images")
    meta = np.load(path, allow_pickle=True).item()
    missing = [k for k in METADATA_KEYS if k not in meta]
    if missing:
        raise InputError(f"{path}: metadata lacks key(s) {', '.join(missing)}")
    for key in ("train", "test"):
        folders = [str(c) for c in meta[f"{key}_img_concepts"]]
        if len(folders) != len(meta[f"{key}_img_files"]):
            raise InputError(
                f"{path}: {key}_img_concepts and {key}_img_files differ in length; "
                "fetch the image set again"
            )
        numbers = [_concept_number(f) for f in folders]
        starts = [n for i, n in enumerate(numbers) if i == 0 or n != numbers[i - 1]]
        if None in numbers or starts != list(range(1, len(starts) + 1)):
            raise InputError(
                f"{path}: {key} images are not in event-code order (concept folders "
                "NNNNN_<concept> must run 1, 2, ... with each concept's images together); "
                "use the data set's own image_metadata.npy"
            )
    return meta


def _concept_number(folder: str) -> int | None:
    head, _, _ = folder.partition("_")
    return int(head) if head.isdigit() else None


def concept_name(folder: str) -> str:
    """`00001_aardvark` -> `aardvark`."""
    return folder.partition("_")[2] or folder


def stimuli(meta: dict, partition: str) -> tuple[list[str], list[str]]:
    """Per image condition in event-code order: its identity, the file's path relative to
    `images/` (as the embedding files name their rows), and its concept."""
    key = "train" if partition == "training" else "test"
    folders, files = meta[f"{key}_img_concepts"], meta[f"{key}_img_files"]
    paths = [f"{partition}_images/{c}/{f}" for c, f in zip(folders, files)]
    return paths, [concept_name(str(c)) for c in folders]


def image_paths(images_dir: Path | str, meta: dict, partition: str) -> list[Path]:
    """Image files in event-code order: `<concept folder>/<file>` under the partition folder."""
    key = "train" if partition == "training" else "test"
    folder = Path(images_dir) / f"{partition}_images"
    return [
        folder / concept / name
        for concept, name in zip(meta[f"{key}_img_concepts"], meta[f"{key}_img_files"])
    ]


def image_set(images_dir: Path | str) -> dict:
    """The data set's images for its image set (visdecode.image_sets): per partition, in
    event-code order, (stimulus identities, concepts, files)."""
    meta = load_image_metadata(Path(images_dir) / "image_metadata.npy")
    out = {}
    for partition, key in (("training", "train"), ("test", "test")):
        names, concepts = stimuli(meta, partition)
        out[key] = (names, concepts, image_paths(images_dir, meta, partition))
    return out


IMAGES_HOW = (
    "fetch the image set (download: rule download_images, `visdecode download images`) or "
    "unpack it from https://osf.io/y63gw/ into that folder"
)


# --------------------------------------------------------------------------- official release
def release_dir(data_dir: Path | str, subject: int) -> Path:
    return Path(data_dir) / "preprocessed_eeg" / f"sub-{subject:02d}"


def load_release(path: Path | str, partition: str) -> dict:
    """One file of the official preprocessed release, checked: a pickled dict with
    preprocessed_eeg_data (conditions, repetitions, channels, times), ch_names, times."""
    path = Path(path)
    try:
        obj = np.load(path, allow_pickle=True)
        obj = obj.item() if isinstance(obj, np.ndarray) and obj.dtype == object else obj
    except Exception as err:
        raise InputError(
            f"{path}: cannot be read ({type(err).__name__}); download it again"
        ) from None
    if not isinstance(obj, dict) or any(k not in obj for k in RELEASE_KEYS):
        raise InputError(f"{path}: expected a pickled dict with keys {', '.join(RELEASE_KEYS)}")
    data = np.asarray(obj["preprocessed_eeg_data"])
    n_ch, n_t = len(obj["ch_names"]), len(obj["times"])
    reps = RELEASE_REPS[partition]
    if data.ndim != 4 or data.shape[1:] != (reps, n_ch, n_t):
        raise InputError(
            f"{path}: preprocessed_eeg_data has shape {data.shape}, expected (conditions, "
            f"{reps}, {n_ch}, {n_t}) from its ch_names and times"
        )
    return {"data": data, "ch_names": [str(c) for c in obj["ch_names"]], "times": obj["times"]}
