"""Durable file writes: fsync a file or a folder, replace a file atomically.

A rename is atomic on one file system, but only durable once the folder holding it is synced;
every writer in credsim (run folders, checkpoints, manifests) goes through these helpers.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (folders cannot be opened on Windows)."""
    if os.name != "posix":
        return
    fsync_file(path)


def replace_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(fh)`` into a temporary file, fsync, rename over ``path``.

    On any failure the temporary file is removed and ``path`` is left as it was.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def refuse_non_empty(out: Path, error: Callable[[str], Exception], what: str) -> None:
    """Raise ``error`` if ``out`` exists and is not an empty folder (never overwrite)."""
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise error(
            f"{out} already exists and is not empty; {what} never overwrites - choose another "
            "folder or remove this one yourself"
        )


def staging_dir(out: Path) -> Path:
    """A new hidden sibling folder of ``out`` to write into before :func:`publish_dir`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    return tmp


def publish_dir(tmp: Path, out: Path, error: Callable[[str], Exception], what: str) -> None:
    """Make the fully written ``tmp`` appear as ``out`` in one rename (durably)."""
    fsync_dir(tmp)
    refuse_non_empty(out, error, what)
    if out.exists():
        out.rmdir()  # empty, checked above; a rename onto a folder is not portable
    try:
        os.rename(tmp, out)
    except OSError as exc:
        if out.exists():
            raise error(f"{out} appeared while it was being written") from exc
        raise
    fsync_dir(out.parent)
