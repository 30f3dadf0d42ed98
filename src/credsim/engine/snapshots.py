"""Score snapshots: the scored entities' scores and grades copied out every 30 days.

A snapshot of a 13-million-person run is 130 MB (a score of 8 bytes and a grade of 2 per
entity); a year takes 14. Copied by fancy indexing into fresh memory, each took 67 to 210 ms of
the simulation's thread (a gather through the entities' 24-byte state records, then the first
writes to pages the system must clear). Here, when every entity is scored (the snapshot's
entities are ``0 .. n-1``), the fields are copied whole (19 ms), and into the arrays of a
snapshot already written, which the writer gives back (:meth:`Snapshots.give_back`), instead of
fresh memory. The values are the same either way.
"""

from __future__ import annotations

import threading

import numpy as np

SPARE = 2
"""Written snapshots' arrays kept for the next snapshots (the writer is at most a snapshot or
two behind)."""


class Snapshots:
    """Takes snapshots of ``score[ids]`` and ``grade[ids]`` (``ids``: the scored entities,
    ascending; ``score`` and ``grade``: the simulation's live arrays, one value an entity)."""

    def __init__(self, ids: np.ndarray, score: np.ndarray, grade: np.ndarray) -> None:
        self.ids, self.score, self.grade = ids, score, grade
        self.whole = ids.shape[0] == score.shape[0]  # ascending distinct ids: 0 .. n-1
        self._spare: list[tuple[np.ndarray, np.ndarray]] = []
        self._lock = threading.Lock()

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of ``score[ids]`` and ``grade[ids]`` as they are now."""
        with self._lock:
            spare = self._spare.pop() if self._spare else None
        if spare is None:
            m = self.ids.shape[0]
            spare = (np.empty(m, self.score.dtype), np.empty(m, self.grade.dtype))
        s, g = spare
        if self.whole:
            np.copyto(s, self.score)
            np.copyto(g, self.grade)
        else:
            np.take(self.score, self.ids, out=s)
            np.take(self.grade, self.ids, out=g)
        return s, g

    def give_back(self, score: np.ndarray, grade: np.ndarray) -> None:
        """``score`` and ``grade`` of a snapshot nothing reads any more, for a later snapshot
        to be copied into; kept only if each is an array of its own, writable, of the
        snapshot's length and type (never a view, nor a snapshot read back from a file)."""
        for a, like in ((score, self.score), (grade, self.grade)):
            ok = a.flags.owndata and a.flags.writeable and a.flags.c_contiguous
            if not ok or a.shape != self.ids.shape or a.dtype != like.dtype:
                return
        with self._lock:
            if len(self._spare) < SPARE:
                self._spare.append((score, grade))
