"""Acquiring a data set's files from its hosts, for any kind: the kind's `sources` module names
its parts (what files, where a person finds them), lays out and checks what was fetched, and
says which files a part puts in place (`Source`).

Each mirror is asked for its file list and the checksums it publishes (OSF: SHA-256 or MD5
from its API; Figshare: MD5; OpenNeuro: the SHA-256 in each annexed file's git-annex key,
from its GraphQL file tree; a plain HTTP mirror: a `SHA256SUMS` file). The files of one part
are downloaded with pooch (checksum verified, renamed into place only when it matches) through
a downloader that keeps an interrupted transfer under `downloads/.partial/` and continues it
with an HTTP Range request, on the next attempt or the next run. Mirrors are tried in turn.
Archives are unpacked into a staging folder beside the data set, the expected files are found
and verified (file counts, array shapes, every image the metadata lists), and only then moved
to the layout the preprocessing reads. Anything short of that raises an InputError whose one
line says what could not be had and where to put the files by hand; nothing is left under a
final name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from visdecode.errors import InputError

log = logging.getLogger(__name__)

ARCHIVE = r"(\.zip|\.tar|\.tar\.gz|\.tgz)"


@dataclass(frozen=True)
class Part:
    label: str
    page: str  # where a person finds the files (for the by-hand instructions)
    pattern: str  # regular expression over a mirror's file paths; {subject}: the subject (int)
    per_subject: bool = True
    subject_name: str = "sub-{subject:02d}"  # how the data set names a subject


class Unavailable(Exception):
    """A mirror cannot provide a part (not listed, no checksum, bad listing)."""


@dataclass(frozen=True)
class Remote:
    path: str  # inside the mirror's component, e.g. "sub-01.zip"
    url: str
    size: int | None
    known_hash: str | None  # pooch's form: "sha256:<hex>" or "md5:<hex>"


# --------------------------------------------------------------------------- listings
def _get_json(session, url: str, timeout: float):
    r = session.get(url, timeout=timeout)
    r.raise_for_status()
    return r.json()


def list_osf(session, api: str, node: str, timeout: float) -> list[Remote]:
    """Every file of an OSF component (folders walked, pages followed), with its hash."""
    out, pending = [], [f"{api.rstrip('/')}/nodes/{node}/files/osfstorage/"]
    while pending:
        url = pending.pop()
        while url:
            page = _get_json(session, url, timeout)
            for item in page.get("data", []):
                attrs = item["attributes"]
                if attrs.get("kind") == "folder":
                    pending.append(item["relationships"]["files"]["links"]["related"]["href"])
                    continue
                hashes = (attrs.get("extra") or {}).get("hashes") or {}
                algo = "sha256" if hashes.get("sha256") else "md5" if hashes.get("md5") else None
                out.append(
                    Remote(
                        (attrs.get("materialized_path") or attrs["name"]).lstrip("/"),
                        item["links"]["download"],
                        attrs.get("size"),
                        f"{algo}:{hashes[algo]}" if algo else None,
                    )
                )
            url = (page.get("links") or {}).get("next")
    return out


def list_figshare(session, api: str, article: str, timeout: float) -> list[Remote]:
    """The files of a Figshare (or Figshare+) article with their MD5."""
    files = _get_json(
        session, f"{api.rstrip('/')}/articles/{article}/files?page_size=1000", timeout
    )
    return [
        Remote(
            f["name"],
            f["download_url"],
            f.get("size"),
            f"md5:{f['computed_md5']}" if f.get("computed_md5") else None,
        )
        for f in files
    ]


def list_http(session, base: str, folder: str, timeout: float) -> list[Remote]:
    """A plain HTTP mirror: `<url>/<folder>/SHA256SUMS` lists `<sha256>  <path>` lines."""
    root = f"{base.rstrip('/')}/{folder}"
    r = session.get(f"{root}/SHA256SUMS", timeout=timeout)
    r.raise_for_status()
    out = []
    for line in r.text.splitlines():
        if line.strip():
            digest, path = line.split(maxsplit=1)
            path = path.lstrip("*").strip()
            out.append(Remote(path, f"{root}/{path}", None, f"sha256:{digest.lower()}"))
    return out


ANNEX_KEY = re.compile(r"^(SHA256|MD5)E?-s(\d+)(?:-[A-Za-z]\d+)*--([0-9a-f]+)")
OPENNEURO_FILES = (
    'query {{ snapshot(datasetId: "{dataset}", tag: "{tag}") {{ '
    "files{tree} {{ id filename size directory urls }} }} }}"
)
OPENNEURO_LATEST = 'query {{ dataset(id: "{dataset}") {{ latestSnapshot {{ tag }} }} }}'


def _graphql(session, api: str, query: str, timeout: float) -> dict:
    r = session.post(api, json={"query": query}, timeout=timeout)
    try:
        answer = r.json()
    except ValueError:
        answer = {}
    if answer.get("errors"):  # GraphQL's own message, also on an HTTP 400
        raise Unavailable(f"OpenNeuro: {answer['errors'][0].get('message', 'error')}")
    r.raise_for_status()
    return answer["data"]


def list_openneuro(session, api: str, snapshot: str, timeout: float) -> list[Remote]:
    """Every file of an OpenNeuro snapshot (`ds004212:2.0.1`; `ds004212` alone: the latest),
    through its GraphQL API, folder by folder (`files(tree: <folder id>)`). An annexed file's
    id is its git-annex key, which holds its SHA-256 (or MD5); a file without one has no
    checksum (and is refused)."""
    dataset, _, tag = snapshot.partition(":")
    if not tag:
        latest = _graphql(session, api, OPENNEURO_LATEST.format(dataset=dataset), timeout)
        tag = latest["dataset"]["latestSnapshot"]["tag"]
    out, pending = [], [("", "")]
    while pending:
        tree, prefix = pending.pop()
        where = f'(tree: "{tree}")' if tree else ""
        query = OPENNEURO_FILES.format(dataset=dataset, tag=tag, tree=where)
        for f in _graphql(session, api, query, timeout)["snapshot"]["files"]:
            path = prefix + f["filename"].rsplit("/", 1)[-1] if prefix else f["filename"]
            if f.get("directory"):
                pending.append((f["id"], path + "/"))
                continue
            key = ANNEX_KEY.match(f.get("id") or "")
            digest = f"{key.group(1).lower()}:{key.group(3)}" if key else None
            size = int(f["size"]) if f.get("size") is not None else None
            out.append(Remote(path, f["urls"][0], size, digest))
    return out


LISTERS = {
    "osf": list_osf,
    "figshare": list_figshare,
    "http": list_http,
    "openneuro": list_openneuro,
}


def select(remotes: list[Remote], part: Part, subject: int | None) -> list[Remote]:
    pattern = re.compile(part.pattern.format(subject=subject or 0))
    return sorted((r for r in remotes if pattern.search(r.path)), key=lambda r: r.path)


# --------------------------------------------------------------------------- transfer
class ResumableDownloader:
    """A pooch downloader that continues a partial file with an HTTP Range request.

    The bytes received so far live in `partial` (named after the file's checksum, so a part of
    another version is never continued); when the transfer completes, the file is handed to
    pooch under its temporary name for the checksum check and the rename.
    """

    def __init__(self, session, partial: Path, timeout: float, size: int | None, desc: str):
        self.session, self.partial, self.timeout = session, partial, timeout
        self.size, self.desc = size, desc

    def __call__(self, url: str, output_file, pooch=None) -> None:
        import requests
        from tqdm.auto import tqdm

        self.partial.parent.mkdir(parents=True, exist_ok=True)
        have = self.partial.stat().st_size if self.partial.exists() else 0
        if self.size is not None and have > self.size:
            self.partial.unlink()  # longer than the file: not a part of it
            have = 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self.session.get(url, headers=headers, stream=True, timeout=self.timeout) as r:
            if r.status_code == 416 and have and have == self.size:
                pass  # the part is already complete
            else:
                r.raise_for_status()
                if have and r.status_code != 206:  # the host ignored the range: start over
                    have = 0
                if have:
                    log.info("%s: resuming at byte %d", self.desc, have)
                length = r.headers.get("Content-Length")
                total = have + int(length) if length else self.size
                with (
                    open(self.partial, "ab" if have else "wb") as f,
                    tqdm(
                        total=total, initial=have, unit="B", unit_scale=True, desc=self.desc,
                        mininterval=1.0,
                    ) as bar,
                ):  # fmt: skip
                    for chunk in r.iter_content(chunk_size=1 << 20):
                        f.write(chunk)
                        bar.update(len(chunk))
        got = self.partial.stat().st_size
        if self.size is not None and got != self.size:
            raise requests.exceptions.ConnectionError(
                f"transfer ended at {got} of {self.size} bytes"
            )
        os.replace(self.partial, output_file)


def _partial_name(remote: Remote) -> str:
    key = remote.known_hash or hashlib.sha256(remote.url.encode()).hexdigest()
    return f"{key.replace(':', '-')[:40]}-{Path(remote.path).name}.part"


def download(session, remote: Remote, downloads: Path, timeout: float, retries: int) -> Path:
    """One file into `downloads/`, checksum verified; interrupted transfers are continued, up to
    `retries` times while they make progress (and on the next call)."""
    import pooch
    import requests

    if remote.known_hash is None:
        raise Unavailable(f"{remote.path} has no published checksum; refusing an unverified file")
    partial = downloads / ".partial" / _partial_name(remote)
    fname = remote.path.replace("/", "__")
    for attempt in range(retries + 1):
        before = partial.stat().st_size if partial.exists() else 0
        try:
            return Path(
                pooch.retrieve(
                    remote.url,
                    known_hash=remote.known_hash,
                    fname=fname,
                    path=downloads,
                    downloader=ResumableDownloader(
                        session, partial, timeout, remote.size, remote.path
                    ),
                )
            )
        except requests.exceptions.RequestException as err:
            after = partial.stat().st_size if partial.exists() else 0
            if after <= before or attempt == retries:
                raise
            log.warning("%s: %s after %d bytes; resuming", remote.path, _why(err), after)
    raise AssertionError("unreachable")


def _why(err: BaseException) -> str:
    import requests

    if isinstance(err, Unavailable):
        return str(err)
    if isinstance(err, requests.exceptions.ChunkedEncodingError):
        return "transfer interrupted"
    if isinstance(err, requests.exceptions.HTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code} for {err.response.url}"
    if isinstance(err, requests.exceptions.ConnectionError):
        text = str(err)
        for marker in ("Connection refused", "Name or service not known", "timed out"):
            if marker in text:
                return f"cannot connect ({marker.lower()})"
        return f"connection failed ({text.splitlines()[0][:160]})"
    if isinstance(err, ValueError) and "hash" in str(err).lower():
        return f"checksum mismatch ({' '.join(str(err).split())[:200]})"
    return f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"


# --------------------------------------------------------------------------- unpacking
def unpack(files: dict[str, Path], staging: Path) -> None:
    """Archives extracted into `staging` (members outside it refused), other files linked (a
    second name, no second copy of a multi-GB file; copied across file systems) to their path
    on the mirror."""
    for remote_path, path in files.items():
        name = path.name.lower()
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                for member in z.namelist():
                    if Path(member).is_absolute() or ".." in Path(member).parts:
                        raise InputError(f"{path}: archive member '{member}' leaves the folder")
                z.extractall(staging)
        elif name.endswith((".tar", ".tar.gz", ".tgz")):
            with tarfile.open(path) as t:
                t.extractall(staging, filter="data")
        else:
            target = staging / remote_path
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)


def find(staging: Path, name: str, kind: str = "file") -> list[Path]:
    """Files (or folders) named `name` anywhere under `staging`, sorted."""
    hits = staging.rglob(name)
    return sorted(p for p in hits if (p.is_dir() if kind == "dir" else p.is_file()))


# --------------------------------------------------------------------------- one part
class Source(Protocol):
    """What a kind's `sources` module provides."""

    PARTS: dict[str, Part]

    def arrange(self, part: str, staging: Path, data_dir: Path, subject, **layout) -> dict:
        """{final path: staged path} of a fetched part, each file checked."""

    def outputs(self, part: str, data_dir: Path, subject=None, **layout) -> list[Path]:
        """The files a part puts in place (the last one is the one the workflow waits for)."""


def _by_hand(source: Source, part: str, data_dir: Path, subject, layout: dict) -> str:
    first = source.outputs(part, data_dir, subject, **layout)[0]
    return (
        f"download it by hand from {source.PARTS[part].page} and unpack it so that {first} exists"
    )


def fetch(
    source: Source,
    part: str,
    data_dir: Path | str,
    mirrors: list[dict],
    subject: int | None = None,
    timeout: float = 10.0,
    retries: int = 3,
    keep_archives: bool = False,
    **layout,
) -> list[Path]:
    """Fetch, verify and lay out one part of a kind's data set (`source`: its sources module;
    `layout`: what its arrange and outputs need, e.g. n_sessions); returns the files put in
    place. InputError (one line) when no mirror can."""
    import requests

    parts = source.PARTS
    if part not in parts:
        raise InputError(f"download: unknown part '{part}'; one of {', '.join(parts)}")
    data_dir = Path(data_dir)
    who = parts[part].subject_name.format(subject=subject) if parts[part].per_subject else ""
    what = parts[part].label + (f" of {who}" if who else "")
    downloads = data_dir / "downloads"
    made_downloads = not downloads.exists()
    failures = []
    with requests.Session() as session:
        for mirror in mirrors:
            ident = (mirror.get("ids") or {}).get(part)
            if not ident:
                failures.append(f"{mirror['name']}: no id for '{part}' configured")
                continue
            try:
                listing = LISTERS[mirror["type"]](session, mirror["url"], str(ident), timeout)
                remotes = select(listing, parts[part], subject)
                if not remotes:
                    raise Unavailable(f"lists no file for {what}")
                log.info("%s: %d file(s) from %s", what, len(remotes), mirror["name"])
                files = {r.path: download(session, r, downloads, timeout, retries) for r in remotes}
            except (requests.exceptions.RequestException, ValueError, KeyError, Unavailable) as err:
                failures.append(f"{mirror['name']}: {_why(err)}")
                log.warning("%s: mirror %s failed: %s", what, mirror["name"], failures[-1])
                continue
            placed = _install(source, part, files, data_dir, subject, layout)
            if not keep_archives:
                for path in files.values():
                    path.unlink(missing_ok=True)
                _remove_empty(downloads / ".partial", downloads)
            return placed
    if made_downloads:
        _remove_empty(downloads / ".partial", downloads)
    raise InputError(
        f"{what}: no mirror could provide it ({'; '.join(failures) or 'no mirrors configured'})"
        f"; {_by_hand(source, part, data_dir, subject, layout)}"
    )


def _install(source: Source, part, files, data_dir: Path, subject, layout: dict) -> list[Path]:
    staging = data_dir / (f".staging-{part}" + (f"-sub-{subject:02d}" if subject else ""))
    placed: list[Path] = []
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        unpack(files, staging)
        plan = source.arrange(part, staging, data_dir, subject, **layout)
        # the file the workflow waits for (outputs' last) is put in place last
        last = source.outputs(part, data_dir, subject, **layout)[-1]
        for final, staged in sorted(plan.items(), key=lambda kv: kv[0] == last):
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.is_dir():
                shutil.rmtree(final)
            os.replace(staged, final)
            placed.append(final)
            log.info("placed %s", final)
    except BaseException:
        for path in placed:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return placed


def _remove_empty(*folders: Path) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass
