"""credsim.engine.arena: a day's arrays taken from the slot they are handed over in."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from credsim.engine import ahead, arena


def test_empty_takes_aligned_room_in_order_then_falls_back() -> None:
    ring = mmap.mmap(-1, 4096)
    base = np.frombuffer(ring, np.uint8).ctypes.data
    outside = arena.empty(10, np.int32)  # no arena in use: NumPy's own memory
    assert not base <= outside.ctypes.data < base + 4096
    with arena.using(ring, 1000, 2000) as room:
        a = arena.empty(3, np.int8)
        b = arena.empty(10, np.float64)
        assert (a.ctypes.data - base, b.ctypes.data - base) == (1024, 1088)  # 64-byte aligned
        assert room.top == 1088 + 80
        big = arena.empty(200, np.float64)  # 1600 bytes: no room left, NumPy's memory
        assert not base <= big.ctypes.data < base + 4096 and big.shape == (200,)
        assert room.top == 1168
        b[:] = np.arange(10)
        assert np.frombuffer(ring, np.float64, 10, 1088).tolist() == list(range(10))
        with pytest.raises(RuntimeError), arena.using(ring, 0, 10):
            pass
    assert arena.empty(1, np.int8).ctypes.data != base  # the arena ends with the block
    del a, b, outside, big


def test_arrays_from_the_slot_are_handed_over_without_a_copy() -> None:
    """The layout leaves an array the slot's arena handed out where it is (its place in the
    ring, nothing written), and copies any other array after the arena's last byte."""
    ring = mmap.mmap(-1, 8192)
    origin = np.frombuffer(ring, np.uint8).ctypes.data
    with arena.using(ring, 4096, 8192) as room:
        inside = arena.empty(100, np.int32)
        inside[:] = 7
    other = np.arange(5, dtype=np.int64)
    laid = ahead._Layout(ring, 0, room.top, 8192, (origin, 4096, room.top))
    got = laid.put({"a": inside[:60], "b": other})
    assert laid.fits
    a, b = got["a"], got["b"]  # type: ignore[index]
    assert (a.at, a.shape) == (4096, (60,))  # where it was
    assert b.at == -(-room.top // 64) * 64  # copied after the arena's room
    assert np.frombuffer(ring, np.int64, 5, b.at).tolist() == [0, 1, 2, 3, 4]
    del inside
