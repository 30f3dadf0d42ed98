"""Durable file writes: fsync a file or a folder, replace a file atomically.

A rename is atomic on one file system, but only durable once the folder holding it is synced;
every writer in credsim (run folders, checkpoints, manifests) goes through these helpers.
"""

from __future__ import annotations

import os
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
