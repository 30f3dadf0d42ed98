"""Score snapshots (:mod:`credsim.engine.snapshots`): copies of the scored entities' scores and
grades, into the arrays of a snapshot already written when the writer gives them back.

That a streamed run's score snapshots (taken into given-back arrays) are the in-memory run's
is shown by tests/test_stream.py (``test_streamed_run_equals_the_run_written_at_once``)."""

from __future__ import annotations

import numpy as np
import pytest

from credsim.engine.snapshots import SPARE, Snapshots
from credsim.engine.state import entity_state


def _live(n: int) -> tuple[np.ndarray, np.ndarray]:
    state = entity_state(np.ones(n, bool), True, 150.0)
    state["score"] = np.arange(n) * 1.5
    return state["score"], (np.arange(n) % 5 - 1).astype(np.int16)


@pytest.mark.parametrize("ids", [np.arange(6, dtype=np.int32), np.array([1, 4], np.int32)])
def test_a_snapshot_is_a_copy_of_the_scored_entities_values(ids: np.ndarray) -> None:
    score, grade = _live(6)  # score: a field of the 24-byte state records (strided)
    snaps = Snapshots(ids, score, grade)
    assert snaps.whole == (ids.shape[0] == 6)
    s, g = snaps.take()
    assert s.tolist() == [i * 1.5 for i in ids] and g.tolist() == [i % 5 - 1 for i in ids]
    score[:] = -1.0  # later changes do not reach a snapshot taken
    grade[:] = 9
    assert s.tolist() == [i * 1.5 for i in ids]


def test_given_back_arrays_are_copied_into_by_a_later_snapshot() -> None:
    score, grade = _live(6)
    snaps = Snapshots(np.arange(6, dtype=np.int32), score, grade)
    s1, g1 = snaps.take()
    snaps.give_back(s1, g1)
    score += 10.0
    s2, g2 = snaps.take()
    assert s2 is s1 and g2 is g1  # the same memory, the new values
    assert s2.tolist() == [i * 1.5 + 10.0 for i in range(6)]
    s3, _ = snaps.take()  # nothing given back: new arrays
    assert s3 is not s1


def test_only_whole_writable_arrays_of_the_right_kind_are_kept() -> None:
    score, grade = _live(6)
    snaps = Snapshots(np.arange(6, dtype=np.int32), score, grade)
    s, g = snaps.take()
    read_only = s.copy()
    read_only.flags.writeable = False
    for bad in (
        (s[:3], g[:3]),  # views, too short
        (np.concatenate([s, s])[::2], g),  # a strided view
        (read_only, g),  # e.g. a snapshot read back from a file
        (s.astype(np.float32), g),  # another type
        (s, g.astype(np.int32)),
    ):
        snaps.give_back(*bad)
        assert snaps.take()[0] is not bad[0]
    for _ in range(SPARE + 2):  # at most SPARE kept
        a, b = np.empty(6), np.empty(6, np.int16)
        snaps.give_back(a, b)
    assert len(snaps._spare) == SPARE
