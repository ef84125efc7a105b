"""Raw THINGS-EEG2 files: the header is unpickled and the EEG array read on demand, whatever
the way it was pickled; the result equals numpy's own loader."""

import pickle

import numpy as np
import pytest

from visdecode.datasets.things_eeg2 import format as fmt
from visdecode.errors import InputError

rng = np.random.default_rng(0)
EEG = rng.normal(size=(5, 60_000))  # float32: 1.2 MB, above LAZY_BYTES
STORAGE = {  # name: (array as stored, pickle protocol, read from disk on demand)
    "C order, protocol 3 (numpy 1.x np.save)": (EEG, 3, True),
    "C order, protocol 4 (numpy 2.x np.save)": (EEG, 4, True),
    "Fortran order": (np.asfortranarray(EEG), 4, True),
    "big-endian": (EEG.astype(">f8"), 4, True),
    "float32": (EEG.astype(np.float32), 4, True),
    "protocol 5": (EEG, 5, True),
    "protocol 5, Fortran order": (np.asfortranarray(EEG), 5, True),
    "protocol 2 (loaded whole)": (EEG, 2, False),
    "small (loaded whole)": (EEG[:, :1000], 4, False),
}


def write(path, eeg, protocol):
    raw = {"raw_eeg_data": eeg, "ch_names": ["Fp1", "Fp2", "O1", "Oz", "stim"],
           "ch_types": ["eeg"] * 4 + ["stim"], "sfreq": np.float64(1000.0)}  # fmt: skip
    with open(path, "wb") as f:  # as np.save writes a dict, with the protocol chosen
        np.lib.format.write_array_header_1_0(
            f, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        pickle.dump(np.asanyarray(raw), f, protocol=protocol)


@pytest.mark.parametrize("name", STORAGE)
def test_raw_file_reads_equal_numpy(tmp_path, name):
    eeg, protocol, on_disk = STORAGE[name]
    path = tmp_path / "raw.npy"
    write(path, eeg, protocol)
    expected = np.load(path, allow_pickle=True).item()["raw_eeg_data"].astype(np.float64)
    raw = fmt.RawFile(path)
    assert raw.on_disk is on_disk
    assert raw.shape == eeg.shape and raw.sfreq == 1000.0 and raw.ch_names[-1] == "stim"
    n = eeg.shape[1]
    np.testing.assert_array_equal(raw.read(0, n), expected)
    a, b = n // 7, n // 2
    np.testing.assert_array_equal(raw.read(a, b, rows=[4, 1]), expected[[4, 1], a:b])
    out = np.full((5, 9000), np.nan)  # into a wider buffer: only the first columns are written
    raw.read(n - 100, n, out=out)
    np.testing.assert_array_equal(out[:, :100], expected[:, -100:])
    assert np.isnan(out[:, 100:]).all()


def test_header_read_does_not_load_the_array(tmp_path, monkeypatch):
    """The array bytes are skipped: a file whose array region is unreadable still opens."""
    path = tmp_path / "raw.npy"
    write(path, EEG, 4)
    raw = fmt.RawFile(path)
    offset = raw.data.data.offset
    blob = bytearray(path.read_bytes())
    blob[offset : offset + EEG.nbytes] = b"\xff" * EEG.nbytes  # NaN bit patterns
    path.write_bytes(bytes(blob))
    again = fmt.RawFile(path)
    assert again.on_disk and np.isnan(again.read(0, 10)).all()


@pytest.mark.parametrize("cut", ["array", "header"])
def test_truncated_file_fails_with_one_clear_line(tmp_path, cut):
    path = tmp_path / "raw.npy"
    write(path, EEG, 4)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2] if cut == "array" else blob[:200])
    with pytest.raises(InputError) as err:
        fmt.RawFile(path)
    assert str(path) in str(err.value) and "truncated or corrupt" in str(err.value)


def test_metadata_out_of_event_code_order_is_refused(world, tmp_path):
    """A reordered image_metadata.npy would make every event code name the wrong image."""
    meta = fmt.load_image_metadata(world / "images" / "image_metadata.npy")
    paths, concepts = fmt.stimuli(meta, "training")
    assert paths[0].startswith("training_images/00001_") and concepts[0] == paths[0].split("_")[2].split("/")[0]
    order = np.random.default_rng(0).permutation(len(meta["train_img_files"]))
    shuffled = {**meta, **{k: [meta[k][i] for i in order] for k in ("train_img_concepts", "train_img_files")}}
    np.save(tmp_path / "image_metadata.npy", shuffled, allow_pickle=True)
    with pytest.raises(InputError, match="image_metadata.npy: train images are not in event-code order"):
        fmt.load_image_metadata(tmp_path / "image_metadata.npy")
