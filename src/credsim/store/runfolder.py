"""The life of a run folder that is written while the run goes on: incomplete, checkpointed, done.

1. ``RunFolder.create`` makes the folder with a manifest that says ``"complete": false`` and holds
   everything needed to resume (scheme path and sha256, persons, days, seed, checkpoint period).
2. Every K simulated days ``checkpoint`` saves the engine state atomically (temporary file, fsync,
   rename), then records the day in the manifest (also atomically).
3. At the end the tables are written into the folder, each atomically, and the manifest with
   ``"complete": true`` is written last: that rename is the commit point. The checkpoint goes.

At every moment the manifest tells the truth: a reader refuses a folder that is not complete, and
``credsim run --resume DIR`` continues an incomplete one from its last checkpoint. A failure while
checkpointing (a full disk, an unwritable folder) leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from credsim._fsio import replace_atomically
from credsim.errors import CredsimError, RunExistsError, RunStoreError

MANIFEST = "manifest.json"
CHECKPOINT = "checkpoint.npz"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` via a temporary file, fsync and rename."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    replace_atomically(path, lambda fh: fh.write(text.encode("utf-8")))


class RunFolder:
    """An incomplete run folder owned by the run that writes it."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    @classmethod
    def create(cls, out: str | Path, params: dict[str, Any]) -> RunFolder:
        p = Path(out).expanduser().absolute()
        if p.is_symlink() or (p.exists() and (not p.is_dir() or any(p.iterdir()))):
            raise RunExistsError(
                f"{p} already exists and is not empty; a run is never overwritten - choose "
                "another folder, or continue an interrupted run with --resume"
            )
        try:
            p.mkdir(parents=True, exist_ok=True)
            manifest = {
                "complete": False,
                "status": "running",
                "run": params,
                "checkpoint_day": None,
                "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            write_json_atomic(p / MANIFEST, manifest)
        except OSError as exc:
            raise RunStoreError(
                f"{p}: cannot create the run folder ({exc.strerror or exc})"
            ) from None
        return cls(p, manifest)

    @classmethod
    def open_incomplete(cls, out: str | Path) -> RunFolder:
        """An interrupted run to resume; a clear error if there is nothing to resume."""
        p = Path(out).expanduser().absolute()
        try:
            manifest = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunStoreError(f"{p}: no run to resume here (no {MANIFEST})") from None
        except (OSError, ValueError) as exc:
            raise RunStoreError(f"{p}/{MANIFEST}: cannot read it ({exc})") from None
        if not isinstance(manifest, dict) or "complete" not in manifest:
            raise RunStoreError(f"{p}/{MANIFEST}: not a credsim run manifest")
        if manifest["complete"]:
            raise RunStoreError(f"{p}: this run is complete; there is nothing to resume")
        if not isinstance(manifest.get("run"), dict):
            raise RunStoreError(f"{p}/{MANIFEST}: the run's parameters are missing")
        return cls(p, manifest)

    def checkpoint(self, save: Any, day: int) -> None:
        """Save a checkpoint with ``save(path)``, then note its day in the manifest."""
        try:
            save(self.checkpoint_path)
            self.manifest["checkpoint_day"] = day
            write_json_atomic(self.path / MANIFEST, self.manifest)
        except OSError as exc:
            raise self.failed(f"the checkpoint of day {day}", exc) from None

    def commit(self, write: Callable[[Path], Path]) -> Path:
        """Write the finished run into the folder with ``write(path)``, then drop the
        checkpoint; a failure leaves the folder incomplete and resumable."""
        try:
            path = write(self.path)
        except OSError as exc:
            raise self.failed("the finished run", exc) from None
        self.discard_checkpoint()
        return path

    def failed(self, what: str, exc: OSError) -> CredsimError:
        """The error for a write that failed: what is kept, and how to go on."""
        last = self.manifest.get("checkpoint_day")
        kept = f"the checkpoint of day {last} is kept" if last else "no checkpoint was kept"
        return CredsimError(
            f"{self.path}: cannot write {what} ({exc.strerror or exc}); the folder stays "
            f"marked incomplete and {kept}; free space or fix the folder, then continue with: "
            f"credsim run --resume {self.path}"
        )

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.exists() and self.manifest.get("checkpoint_day") is not None

    def discard_checkpoint(self) -> None:
        self.checkpoint_path.unlink(missing_ok=True)
