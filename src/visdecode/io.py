"""Small I/O helpers: atomic outputs, HDF5 attributes, logging."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it to `final` only if the block succeeds.

    Nothing appears under the final name unless it is complete, and nothing is left behind on
    failure (works for files and directories).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        _remove(final)
        os.replace(tmp, final)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def set_attrs(h5obj, params: dict) -> None:
    """Store parameters as HDF5 attributes (None as the string 'None')."""
    for key, value in params.items():
        if value is None:
            value = "None"
        elif isinstance(value, (list, tuple)) and any(v is None for v in value):
            value = json.dumps(list(value))
        h5obj.attrs[key] = value


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, when given, to a file (the Snakemake rule's log)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def rule_logging(log_file: str | Path) -> None:
    """For Snakemake jobs: everything (log records, progress bars, warnings, tracebacks) goes
    to the job's log file only, so concurrent jobs do not interleave on the terminal."""
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    sys.stderr = open(log_file, "w", buffering=1)  # noqa: SIM115 (lives as long as the job)
    setup_logging()
