"""Image-encoder weights: where each file comes from, a local cache, checksums, clear errors.

A weight file is fetched on first use into the cache directory (config `weights_dir`) with
pooch: downloaded to a temporary name, its SHA-256 checked where the source publishes one (in
full, or the 8-hex-digit prefix that open_clip's release file names carry), then renamed, so a
failed or interrupted download leaves nothing behind. A local checkpoint can be given instead
(config `local_weights`). Offline and not cached: one line naming the encoder, the file
expected and how to provide it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from visdecode.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightFile:
    filename: str  # name in the cache directory
    url: str | None = None  # None: made by the workflow (the synthetic world), never fetched
    sha256: str | None = None  # full digest, where the source publishes it
    sha256_prefix: str | None = None  # leading hex digits, where only those are published


def sha256(*paths: Path) -> str:
    """SHA-256 of a file, or over several files in order."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _how_to_provide(encoder: str, wf: WeightFile, target: Path) -> str:
    if wf.url is None:
        return "it is made by the workflow: run `visdecode synth encoders` (or the synth rules)"
    return (
        f"download {wf.url} to {target}, or set local_weights: {{{encoder}: /path/to/file}} "
        "in config"
    )


def fetch(encoder: str, wf: WeightFile, cache_dir: Path | str, local: Path | str | None = None):
    """Path of a weight file: the local checkpoint if given, else the cached copy, else a
    fresh, verified download into the cache."""
    cache_dir = Path(cache_dir)
    target = cache_dir / wf.filename
    if local is not None:
        local = Path(local)
        if not local.is_file():
            raise InputError(
                f"{local}: local weights for image encoder '{encoder}' not found; fix "
                "local_weights in config"
            )
        return local
    if target.is_file():
        return target
    if wf.url is None:
        raise InputError(
            f"{target}: weights for image encoder '{encoder}' not found; "
            + _how_to_provide(encoder, wf, target)
        )
    import pooch

    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("image encoder %s: downloading %s -> %s", encoder, wf.url, target)
    try:
        pooch.retrieve(
            wf.url,
            known_hash=f"sha256:{wf.sha256}" if wf.sha256 else None,
            fname=wf.filename,
            path=cache_dir,
            progressbar=True,
        )
    except ValueError as err:  # pooch: checksum mismatch (the download is discarded)
        raise InputError(
            f"{target}: download for image encoder '{encoder}' failed its SHA-256 check "
            f"({str(err).splitlines()[0]}); the source may have changed or the transfer was "
            "corrupted: try again"
        ) from None
    except Exception as err:  # offline, host down, HTTP error
        raise InputError(
            f"{target}: weights for image encoder '{encoder}' are not in the cache and the "
            f"download failed ({type(err).__name__}: {str(err).splitlines()[0]}); "
            + _how_to_provide(encoder, wf, target)
        ) from None
    if wf.sha256_prefix and not sha256(target).startswith(wf.sha256_prefix):
        target.unlink()
        raise InputError(
            f"{target}: download for image encoder '{encoder}' does not match the published "
            f"SHA-256 prefix {wf.sha256_prefix}; deleted, try again"
        )
    return target
