"""Downloads against a data host on loopback (tests/mirror.py): the OSF, Figshare and plain HTTP
listings, success, interruption and resume, a corrupt file, a dead mirror then a good one, a
404, no network at all; verification of what was fetched; the official preprocessed release
imported into the preprocessing's HDF5 layout."""

import hashlib
import io
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from mirror import Mirror, closed_port_url

from visdecode import download
from visdecode.datasets.things_eeg2 import release, sources
from visdecode.datasets.things_eeg2 import format as fmt
from visdecode.errors import InputError

SESSIONS = 4


def zip_tree(root: Path, folder: str, arcroot: str | None = None) -> bytes:
    """A zip of root/folder, members under arcroot (default: folder)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file():
                rel = path.relative_to(root / folder)
                z.write(path, f"{arcroot or folder}/{rel}")
    return buf.getvalue()


def release_file(n: int, reps: int, seed: int, n_ch: int = 17, n_t: int = 100) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "preprocessed_eeg_data": rng.standard_normal((n, reps, n_ch, n_t)),
        "ch_names": fmt.occipito_parietal(fmt.CH_NAMES)[:n_ch],
        "times": np.round(np.arange(-0.2, 0.8, 0.01)[:n_t], 2),
    }


def npy_bytes(obj) -> bytes:
    buf = io.BytesIO()
    np.save(buf, obj, allow_pickle=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def payload(world):
    """The tiny world's subject 1 and image set as the hosts hold them."""
    meta = fmt.load_image_metadata(world / "images" / "image_metadata.npy")
    n_train, n_test = len(meta["train_img_files"]), len(meta["test_img_files"])
    rel = {
        "training": release_file(n_train, 4, 1),
        "test": release_file(n_test, 80, 2),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, partition in zip(fmt.RELEASE_FILES, fmt.PARTITIONS):
            z.writestr(f"sub-01/{name}", npy_bytes(rel[partition]))
    return {
        "raw": {"sub-01.zip": zip_tree(world / "raw_eeg", "sub-01")},
        "images": {
            "training_images.zip": zip_tree(world / "images", "training_images"),
            "test_images.zip": zip_tree(world / "images", "test_images"),
            "image_metadata.npy": (world / "images" / "image_metadata.npy").read_bytes(),
        },
        "preprocessed": {"sub-01.zip": buf.getvalue()},
        "release": rel,
    }


@pytest.fixture
def host(payload):
    m = Mirror()
    ids = {"raw": "crxs4", "preprocessed": "anp5v", "images": "y63gw"}
    for part, files in payload.items():
        if part in ids:
            for path, data in files.items():
                m.add(ids[part], path, data)
    m.add("crxs4", "sub-02.zip", b"another subject")  # listed, never selected for sub-01
    yield m
    m.close()


def fetch(part, data_dir, mirrors, **kw):
    kw.setdefault("subject", None if part == "images" else 1)
    return download.fetch(sources, part, data_dir, mirrors, n_sessions=SESSIONS, timeout=5, **kw)


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def raw_outputs(data_dir):
    return sources.outputs("raw", data_dir, 1, SESSIONS)


# --------------------------------------------------------------------------- success
@pytest.mark.parametrize("kind", ["osf", "figshare", "http"])
def test_raw_fetched_verified_and_laid_out(host, world, tmp_path, kind):
    placed = fetch("raw", tmp_path, host.mirrors(kind))
    assert sorted(placed) == sorted(raw_outputs(tmp_path))
    for path in placed:
        src = world / path.relative_to(tmp_path)
        assert path.read_bytes() == src.read_bytes()
    # archives removed once unpacked; no staging, no partial left: only the placed files
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(tmp_path)) for p in placed)
    assert not (tmp_path / "downloads").exists() and not list(tmp_path.glob(".staging*"))
    assert not any("sub-02" in p for p, _ in host.requests if "/files/" in p or "/http/" in p)


def test_osf_listing_walks_folders_and_pages(host):
    import requests

    host.add("y63gw", "extra/deeper/notes.txt", b"x")
    with requests.Session() as s:
        listing = download.list_osf(s, f"{host.url}/osf/v2", "y63gw", 5)
    paths = sorted(r.path for r in listing)
    assert paths == sorted(list(host.files["y63gw"]))
    assert all(r.known_hash.startswith("sha256:") for r in listing)
    # more entries than a page: the next links were followed
    assert len(paths) > 2 and any(p.endswith("osfstorage/?page=1") for p, _ in host.requests)
    assert any(p.endswith("osfstorage/extra/deeper/?page=0") for p, _ in host.requests)


def test_images_fetched_and_every_listed_image_present(host, world, tmp_path):
    placed = fetch("images", tmp_path, host.mirrors("http"))
    assert tmp_path / "images" / "image_metadata.npy" in placed
    assert tree(tmp_path / "images") == tree(world / "images")
    meta = fmt.load_image_metadata(tmp_path / "images" / "image_metadata.npy")
    for partition in fmt.PARTITIONS:
        for path in fmt.image_paths(tmp_path / "images", meta, partition):
            src = world / path.relative_to(tmp_path)
            assert path.read_bytes() == src.read_bytes()


def test_refetch_keeps_the_verified_archive_when_asked(host, tmp_path):
    fetch("raw", tmp_path, host.mirrors("osf"), keep_archives=True)
    archive = tmp_path / "downloads" / "sub-01.zip"
    assert archive.is_file()
    n = sum(p.endswith("sub-01.zip") for p, _ in host.requests)
    for path in raw_outputs(tmp_path):
        path.unlink()
    fetch("raw", tmp_path, host.mirrors("osf"), keep_archives=True)
    assert all(p.is_file() for p in raw_outputs(tmp_path))
    assert sum(p.endswith("sub-01.zip") for p, _ in host.requests) == n  # not downloaded again


# --------------------------------------------------------------------------- faults
def test_interrupted_download_resumes_with_a_range_request(host, payload, tmp_path):
    size = len(payload["raw"]["sub-01.zip"])
    cut = size // 3
    host.cut["sub-01.zip"] = cut
    with pytest.raises(InputError, match="no mirror could provide it") as err:
        fetch("raw", tmp_path, host.mirrors("osf"), retries=0)
    assert "\n" not in str(err.value)
    assert not any(p.exists() for p in raw_outputs(tmp_path))
    assert "transfer interrupted" in str(err.value)
    (partial,) = (tmp_path / "downloads" / ".partial").glob("*.part")
    have = partial.stat().st_size
    assert 0 < have <= cut  # what arrived, up to the last whole block written
    # the next run continues where the transfer stopped
    fetch("raw", tmp_path, host.mirrors("osf"), retries=0)
    ranges = [r for p, r in host.requests if p.endswith("sub-01.zip")]
    assert ranges == [None, f"bytes={have}-"]
    assert all(p.is_file() for p in raw_outputs(tmp_path))
    assert not (tmp_path / "downloads").exists()


def test_interruption_is_resumed_within_one_call(host, payload, tmp_path):
    host.cut["sub-01.zip"] = len(payload["raw"]["sub-01.zip"]) // 2
    fetch("raw", tmp_path, host.mirrors("http"), retries=2)
    ranges = [r for p, r in host.requests if p.endswith("sub-01.zip")]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and len(ranges) == 2
    assert all(p.is_file() for p in raw_outputs(tmp_path))


def test_corrupt_file_is_an_error_naming_it(host, payload, tmp_path):
    good = payload["raw"]["sub-01.zip"]
    host.altered["sub-01.zip"] = good[:100] + bytes([good[100] ^ 1]) + good[101:]
    with pytest.raises(InputError) as err:
        fetch("raw", tmp_path, host.mirrors("osf"))
    msg = str(err.value)
    assert "checksum mismatch" in msg and "sub-01.zip" in msg and "\n" not in msg
    assert tree(tmp_path) == []  # nothing under a final name, no partial, no empty folder


def test_dead_mirror_then_a_good_one(host, world, tmp_path, caplog):
    dead = {**host.mirrors("osf")[0], "name": "dead", "url": closed_port_url() + "/v2"}
    placed = fetch("raw", tmp_path, [dead] + host.mirrors("figshare"))
    assert sorted(placed) == sorted(raw_outputs(tmp_path))
    assert "mirror dead failed: dead: cannot connect" in caplog.text


def test_404_is_reported_and_leaves_nothing(host, tmp_path):
    host.missing.add("sub-01.zip")
    with pytest.raises(InputError) as err:
        fetch("raw", tmp_path, host.mirrors("osf"))
    msg = str(err.value)
    assert "HTTP 404" in msg and "sub-01.zip" in msg and "https://osf.io/crxs4/" in msg
    assert tree(tmp_path) == []


def test_a_mirror_without_the_subject_is_skipped(host, tmp_path):
    with pytest.raises(InputError, match="local-osf: lists no file for raw EEG of sub-03"):
        download.fetch(sources, "raw", tmp_path, host.mirrors("osf"), subject=3, timeout=5)
    assert tree(tmp_path) == []


def test_unverifiable_file_is_refused(host, tmp_path, monkeypatch):
    real = download.LISTERS["figshare"]

    def no_hashes(*a):
        return [download.Remote(r.path, r.url, r.size, None) for r in real(*a)]

    monkeypatch.setitem(download.LISTERS, "figshare", no_hashes)
    with pytest.raises(InputError, match="no published checksum; refusing"):
        fetch("raw", tmp_path, host.mirrors("figshare"))
    assert tree(tmp_path) == []


def test_offline_fails_within_seconds_in_one_line(tmp_path):
    dead = [
        {"name": "osf", "type": "osf", "url": closed_port_url() + "/v2",
         "ids": {"raw": "crxs4"}},
        {"name": "figshare", "type": "figshare", "url": closed_port_url(), "ids": {}},
    ]  # fmt: skip
    start = time.perf_counter()
    with pytest.raises(InputError) as err:
        fetch("raw", tmp_path / "data", dead)
    assert time.perf_counter() - start < 5
    msg = str(err.value)
    assert msg.startswith("raw EEG of sub-01: no mirror could provide it (osf: cannot connect")
    assert "figshare: no id for 'raw' configured" in msg
    assert f"so that {raw_outputs(tmp_path / 'data')[0]} exists" in msg
    assert not (tmp_path / "data").exists()


def test_cli_offline_exit_code_and_message(tmp_path):
    cfg = tmp_path / "mirrors.yaml"
    cfg.write_text(
        f"- {{name: osf, type: osf, url: '{closed_port_url()}/v2', ids: {{images: y63gw}}}}\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "visdecode.cli", "download", "images",
         "--data-dir", str(tmp_path / "d"), "--mirrors", str(cfg)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("visdecode download: error: image set: no mirror could provide it")
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------- verification
def test_missing_session_fails_verification(host, world, tmp_path):
    host.files["crxs4"]["sub-01.zip"] = zip_tree(world / "raw_eeg", "sub-01")  # fresh copy
    buf = io.BytesIO()
    src = zipfile.ZipFile(io.BytesIO(host.files["crxs4"]["sub-01.zip"]))
    with zipfile.ZipFile(buf, "w") as z:
        for name in src.namelist():
            if not name.endswith("ses-04/raw_eeg_test.npy"):
                z.writestr(name, src.read(name))
    host.files["crxs4"]["sub-01.zip"] = buf.getvalue()
    with pytest.raises(InputError, match="holds 0 ses-04/raw_eeg_test.npy files, expected 1"):
        fetch("raw", tmp_path, host.mirrors("osf"))
    assert not any(p.exists() for p in raw_outputs(tmp_path))
    assert not list(tmp_path.glob(".staging*"))


def test_wrong_raw_shape_fails_verification(host, world, tmp_path):
    raw = fmt.load_raw(world / "raw_eeg/sub-01/ses-01/raw_eeg_training.npy")
    raw["raw_eeg_data"] = raw["raw_eeg_data"][:10]
    raw["ch_names"], raw["ch_types"] = raw["ch_names"][-10:], raw["ch_types"][-10:]
    src = zipfile.ZipFile(io.BytesIO(host.files["crxs4"]["sub-01.zip"]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in src.namelist():
            bad = name.endswith("ses-01/raw_eeg_training.npy")
            z.writestr(name, npy_bytes(raw) if bad else src.read(name))
    host.files["crxs4"]["sub-01.zip"] = buf.getvalue()
    with pytest.raises(InputError, match=r"raw_eeg_data has shape \(10, \d+\) at 1000.0 Hz"):
        fetch("raw", tmp_path, host.mirrors("http"))
    assert not any(p.exists() for p in raw_outputs(tmp_path))


def test_image_missing_from_archive_fails_verification(host, world, tmp_path):
    src = zipfile.ZipFile(io.BytesIO(host.files["y63gw"]["test_images.zip"]))
    names = [n for n in src.namelist() if n.endswith(".jpg")]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in src.namelist():
            if name != names[0]:
                z.writestr(name, src.read(name))
    host.files["y63gw"]["test_images.zip"] = buf.getvalue()
    with pytest.raises(InputError, match="test_images holds 5 files, 1 of the 6 listed"):
        fetch("images", tmp_path, host.mirrors("osf"))
    assert not (tmp_path / "images").exists()


def test_archive_escaping_its_folder_is_refused(host, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../evil.npy", b"x")
    host.files["crxs4"]["sub-01.zip"] = buf.getvalue()
    with pytest.raises(InputError, match="leaves the folder"):
        fetch("raw", tmp_path / "d", host.mirrors("osf"))
    assert not (tmp_path / "evil.npy").exists()


# --------------------------------------------------------------------------- official release
def test_release_fetched_and_imported_unchanged(host, payload, world, tmp_path):
    placed = fetch("preprocessed", tmp_path, host.mirrors("osf"))
    assert [p.name for p in placed] == list(fmt.RELEASE_FILES)
    (tmp_path / "images").symlink_to(world / "images")
    out = tmp_path / "sub-01.h5"
    release.run(tmp_path, 1, out)
    with h5py.File(out, "r") as f:
        for name, partition in (("train", "training"), ("test", "test")):
            want = payload["release"][partition]["preprocessed_eeg_data"].astype(np.float32)
            assert f[name].dtype == np.float32
            np.testing.assert_array_equal(f[name][:], want)
            np.testing.assert_array_equal(f[f"{name}_codes"][:], np.arange(1, len(want) + 1))
        assert [c.decode() for c in f["ch_names"][:]] == fmt.occipito_parietal(fmt.CH_NAMES)
        assert f.attrs["sfreq"] == 100.0 and f["times"].shape == (100,)
        assert f.attrs["tmin"] == pytest.approx(-0.2)


def test_release_with_wrong_repetitions_is_refused(host, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("sub-01/preprocessed_eeg_training.npy", npy_bytes(release_file(24, 2, 0)))
        z.writestr("sub-01/preprocessed_eeg_test.npy", npy_bytes(release_file(6, 80, 0)))
    host.files["anp5v"]["sub-01.zip"] = buf.getvalue()
    with pytest.raises(InputError, match=r"shape \(24, 2, 17, 100\), expected \(conditions, 4,"):
        fetch("preprocessed", tmp_path, host.mirrors("osf"))
    assert not (tmp_path / "preprocessed_eeg").exists()


def test_release_not_matching_the_image_set_is_refused(tmp_path, world):
    folder = fmt.release_dir(tmp_path, 1)
    folder.mkdir(parents=True)
    np.save(folder / fmt.RELEASE_FILES[0], release_file(23, 4, 0), allow_pickle=True)
    np.save(folder / fmt.RELEASE_FILES[1], release_file(6, 80, 0), allow_pickle=True)
    (tmp_path / "images").symlink_to(world / "images")
    out = tmp_path / "out.h5"
    with pytest.raises(InputError, match="23 conditions, but image_metadata.npy lists 24"):
        release.run(tmp_path, 1, out)
    assert not out.exists()


def test_partial_names_follow_the_checksum():
    a = download.Remote("x/sub-01.zip", "u", 1, "sha256:" + hashlib.sha256(b"a").hexdigest())
    b = download.Remote("x/sub-01.zip", "u", 1, "sha256:" + hashlib.sha256(b"b").hexdigest())
    assert download._partial_name(a) != download._partial_name(b)
    assert download._partial_name(a).endswith("-sub-01.zip.part")


def test_plain_files_are_staged_without_a_second_copy(tmp_path):
    """A downloaded file that is no archive (THINGS-MEG's 2 GB epochs parts) is staged under a
    second name of the same bytes, not copied: a participant does not need twice its size."""
    fetched = tmp_path / "downloads" / "part.fif"
    fetched.parent.mkdir()
    fetched.write_bytes(b"epochs" * 1000)
    staging = tmp_path / "staging"
    download.unpack({"derivatives/part.fif": fetched}, staging)
    staged = staging / "derivatives" / "part.fif"
    assert staged.read_bytes() == fetched.read_bytes()
    assert staged.stat().st_ino == fetched.stat().st_ino and fetched.stat().st_nlink == 2
    fetched.unlink()  # the download removed once placed: the staged name keeps the bytes
    assert staged.read_bytes() == b"epochs" * 1000
