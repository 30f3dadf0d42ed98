"""Checkpoints: the whole engine state at the end of a day, saved so a killed run can resume.

What is saved is exactly the mutable state of :class:`~credsim.engine.simulation.Simulation`;
everything derivable from the scheme and the seed (population, traits, enrolment draw, sampling
indexes) is derived again on resume. Random numbers come from streams keyed by (stage, day), so
no generator state needs saving: a resumed run reproduces an uninterrupted one exactly.

The file is a NumPy ``.npz`` with ``allow_pickle=False`` (loading it never runs code). Ragged
structures (per-day queues of arrays) are stored as concatenated values plus the key and length
of every chunk, so lists of arrays come back chunk for chunk, in the same order.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from credsim._fsio import replace_atomically
from credsim.engine.records import Table
from credsim.engine.simulation import Simulation
from credsim.errors import CredsimError

FORMAT = "credsim-checkpoint-v3"
"""v2: the records written before the checkpoint are the first bytes of the records file
(:mod:`credsim.store.parts`), no longer segments beside it (v1). v3: those bytes and the saved
score snapshots are checked by the digest the run's ledger encoding uses for files (BLAKE3
since ``credsim-ledger-v5``), named as such in the checkpoint, no longer always SHA-256."""
ARRAYS = {
    "score": ("score",),
    "grade": ("grade",),
    "last_rec": ("last_rec",),
    "last_neg": ("last_neg",),
    "enrolled": ("enrolled",),
    "cap_acc": ("cap_acc",),
    "ring": ("ring",),
    "filled": ("filled",),
    "pos": ("pos",),
    "queue": ("queue",),
    "list_ep_of": ("lists", "ep_of"),
    "list_counts": ("lists", "counts"),
    "measure_counts": ("measures", "counts"),
    "measure_ep": ("measures", "ep"),
    "blocked": ("behave", "blocked"),
    "events": ("behave", "events"),
}
GROWING = {"queue"}  # arrays whose length changes during a run
TABLES = {"records": ("records",), "list_eps": ("lists", "eps"), "measure_eps": ("measures", "eps")}


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        obj = getattr(obj, p)
    return obj


def _set(obj: Any, path: tuple[str, ...], value: Any) -> None:
    for p in path[:-1]:
        obj = getattr(obj, p)
    setattr(obj, path[-1], value)


def _ragged(out: dict[str, np.ndarray], name: str, chunks: list[tuple[int, np.ndarray]]) -> None:
    out[f"{name}.keys"] = np.array([k for k, _ in chunks], np.int64)
    out[f"{name}.lens"] = np.array([v.shape[0] for _, v in chunks], np.int64)
    vals = [v for _, v in chunks]
    out[f"{name}.values"] = np.concatenate(vals) if vals else np.zeros(0)


def _unragged(z: dict[str, np.ndarray], name: str) -> list[tuple[int, np.ndarray]]:
    keys, lens, vals = z[f"{name}.keys"], z[f"{name}.lens"], z[f"{name}.values"]
    bounds = np.concatenate(([0], np.cumsum(lens)))
    return [(int(k), vals[bounds[i] : bounds[i + 1]]) for i, k in enumerate(keys)]


def _dict_of_lists(chunks: list[tuple[int, np.ndarray]]) -> dict[int, list[np.ndarray]]:
    out: dict[int, list[np.ndarray]] = {}
    for k, v in chunks:
        out.setdefault(k, []).append(v)
    return out


def state(sim: Simulation, records_from: int = 0, snaps_from: int = 0) -> dict[str, np.ndarray]:
    """The mutable state of a simulation as flat named arrays; the records from
    ``records_from`` on and the score snapshots from number ``snaps_from`` on (those before
    were saved once, elsewhere: :mod:`credsim.store.stream`)."""
    out: dict[str, np.ndarray] = {}
    for name, path in ARRAYS.items():
        out[f"a.{name}"] = _get(sim, path)
    for name, path in TABLES.items():
        t: Table = _get(sim, path)
        start = records_from if name == "records" else 0
        for col, (dt, fill) in t.columns.items():
            v = t.view(col, start)  # None: all at the default (not allocated; kept so)
            out[f"t.{name}.{col}"] = np.full(t.n - start, fill, dt) if v is None else v
    for k, mult in sim.measures.multiplier.items():
        out[f"mult.{k}"] = mult
    _ragged(out, "appeals_due", [(d, v) for d, vs in sim.appeals_due.items() for v in vs])
    _ragged(out, "clean_checks", [(d, v) for d, vs in sim.lists.clean_checks.items() for v in vs])
    sched = [(d, ids, why) for d, vs in sim.lists.scheduled.items() for ids, why in vs]
    _ragged(out, "scheduled_ids", [(d, ids) for d, ids, _ in sched])
    _ragged(out, "scheduled_why", [(d, why) for d, _, why in sched])
    pending = [(d, b) for d, bs in sim.observer.pending.items() for b in bs]
    cols = sorted(pending[0][1]) if pending else []
    out["pending.columns"] = np.array(cols, dtype=np.str_)
    for c in cols:
        _ragged(out, f"pending.{c}", [(d, b[c]) for d, b in pending])
    snaps = sim.snap[snaps_from:]
    out["snap.days"] = np.array([s[1] for s in snaps], np.int64)
    _ragged(out, "snap.ents", [(d, e) for e, d, _, _ in snaps])
    _ragged(out, "snap.score", [(d, sc) for _, d, sc, _ in snaps])
    _ragged(out, "snap.grade", [(d, g) for _, d, _, g in snaps])
    return out


def restore(
    sim: Simulation,
    z: dict[str, np.ndarray],
    records_from: int = 0,
    snaps_before: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]] | None = None,
) -> None:
    """Put saved state back into a freshly built simulation of the same scheme and seed; the
    saved records start at id ``records_from`` (those before were streamed out), the saved
    score snapshots follow ``snaps_before`` (saved once, elsewhere)."""
    for name, path in ARRAYS.items():
        cur = _get(sim, path)
        saved = z[f"a.{name}"]
        same_shape = saved.shape == cur.shape or name in GROWING
        if not same_shape or saved.dtype != cur.dtype:
            raise CredsimError(
                f"checkpoint does not fit this run: '{name}' is {saved.dtype}{saved.shape}, "
                f"expected {cur.dtype}{cur.shape}"
            )
        if name in GROWING:
            _set(sim, path, np.array(saved, copy=True))
        else:  # into the simulation's own array (the entities' state fields are views of one)
            cur[...] = saved
    for name, path in TABLES.items():
        t: Table = _get(sim, path)
        cols = {c: z[f"t.{name}.{c}"] for c in t.columns}
        # a lazy column all at the default is left unallocated, as it was (Table.append)
        t.n = t.base = records_from if name == "records" else 0  # below: never allocated
        t.append(**cols)
    for k in sim.measures.multiplier:
        sim.measures.multiplier[k][:] = z[f"mult.{k}"]
    sim.behave.multiplier = sim.measures.multiplier
    sim.appeals_due.clear()
    sim.appeals_due.update(_dict_of_lists(_unragged(z, "appeals_due")))
    sim.lists.clean_checks.clear()
    sim.lists.clean_checks.update(_dict_of_lists(_unragged(z, "clean_checks")))
    sim.lists.scheduled.clear()
    for (d, ids), (_, why) in zip(
        _unragged(z, "scheduled_ids"), _unragged(z, "scheduled_why"), strict=True
    ):
        sim.lists.scheduled[d].append((ids, why))
    sim.observer.pending.clear()
    names = [str(c) for c in z["pending.columns"]]
    if names:
        parts = {c: _unragged(z, f"pending.{c}") for c in names}
        for i, (d, _) in enumerate(parts[names[0]]):
            sim.observer.pending[d].append({c: parts[c][i][1] for c in names})
    ents, score, grade = (_unragged(z, f"snap.{p}") for p in ("ents", "score", "grade"))
    sim.snap = list(snaps_before or []) + [
        (e.astype(np.int32), d, s, g.astype(np.int16))
        for (d, e), (_, s), (_, g) in zip(ents, score, grade, strict=True)
    ]


def save(path: str | Path, sim: Simulation, day: int, meta: dict[str, Any]) -> Path:
    """Write the checkpoint atomically: temporary file, fsync, rename over the old one.

    On any failure (a full disk, an unwritable folder) the temporary file is removed and the
    previous checkpoint is left as it was.
    """
    p = Path(path)
    streamed = meta.get("stream", {})
    arrays = state(sim, int(streamed.get("done", 0)), len(streamed.get("snapshots", [])))
    arrays["meta"] = np.array(json.dumps({**meta, "day": day, "format": FORMAT}))
    replace_atomically(p, lambda fh: np.savez(fh, allow_pickle=False, **arrays))
    return p


def load(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint; a damaged file is a clear error, never a crash."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as npz:
            z = {k: npz[k] for k in npz.files}
        meta = json.loads(str(z.pop("meta")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise CredsimError(f"{p}: cannot read the checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        made = meta.get("format")
        if isinstance(made, str) and made.startswith("credsim-checkpoint-"):
            raise CredsimError(
                f"{p}: a {made} file, made by another version of credsim than this one "
                f"({FORMAT}); resume the run with that version, or start it again"
            )
        raise CredsimError(f"{p}: not a {FORMAT} file")
    return z, meta
