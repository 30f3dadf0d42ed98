"""Identity codes as text, a chunk of rows at a time: the ASCII rows the identifier kernels
write (:mod:`credsim.population.identifiers`), each followed by a newline, turned into an
``(n, width)`` uint8 array (what the population keeps) or into str objects (one decode and split
per chunk, so that no Python step runs per entity)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_STRING_CHUNK = 1 << 17  # rows turned into str objects at a time (a buffer that stays in cache)


def _strings(
    n: int,
    width: int,
    fill: Callable[[int, int, np.ndarray], None],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Object array (``out`` if given) of ``n`` str of ``width - 1`` ASCII characters.
    ``fill(s, e, buf)`` writes rows ``s:e`` into ``buf[: e - s]``, each followed by a newline.
    Each chunk is decoded as one text and split, which makes the str objects in C, without a
    Python step per row."""
    if out is None:
        out = np.empty(n, dtype=object)
    buf = np.empty((min(n, _STRING_CHUNK), width), dtype=np.uint8)
    flat = buf.reshape(-1)
    for s in range(0, n, _STRING_CHUNK):
        e = min(s + _STRING_CHUNK, n)
        fill(s, e, buf)
        out[s:e] = str(flat[: (e - s) * width - 1].data, "ascii").split("\n")
    return out


def _code_bytes(
    n: int,
    width: int,
    fill: Callable[[int, int, np.ndarray], None],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``(n, width - 1)`` uint8 array (``out`` if given) of the rows ``fill`` writes as for
    :func:`_strings`, newlines dropped. Raises if a row is not exactly ``width - 1`` ASCII
    characters from ``0`` to ``Z`` (digits, capitals and the few signs between them), so that
    every code is fixed-width ASCII as the Arrow column built over the bytes assumes."""
    if out is None:
        out = np.empty((n, width - 1), dtype=np.uint8)
    if out.shape != (n, width - 1) or out.dtype != np.uint8:
        raise ValueError(f"out must be a uint8 array of shape {(n, width - 1)}")
    buf = np.empty((min(n, _STRING_CHUNK), width), dtype=np.uint8)
    for s in range(0, n, _STRING_CHUNK):
        e = min(s + _STRING_CHUNK, n)
        fill(s, e, buf)
        rows = buf[: e - s]
        if e > s and (
            rows[:, :-1].min() < ord("0")
            or rows[:, :-1].max() > ord("Z")
            or (rows[:, -1] != ord("\n")).any()
        ):
            raise AssertionError(f"identity codes {s}:{e} are not {width - 1} characters '0'-'Z'")
        out[s:e] = rows[:, :-1]
    return out


def code_strings(code_bytes: np.ndarray) -> np.ndarray:
    """Object array of str from an ``(n, w)`` uint8 array of ASCII codes (as :func:`_strings`
    makes them, so the same str objects as :func:`ric_codes` and :func:`uscc_codes`)."""
    n, w = code_bytes.shape

    def fill(s: int, e: int, buf: np.ndarray) -> None:
        buf[: e - s, :w] = code_bytes[s:e]
        buf[: e - s, w] = ord("\n")

    return _strings(n, w + 1, fill)


def _digits(values: np.ndarray, width: int, alphabet: bytes) -> np.ndarray:
    """Write non-negative integers as ``width`` characters in base ``len(alphabet)``."""
    lut = np.frombuffer(alphabet, dtype=np.uint8)
    out = np.empty((values.shape[0], width), dtype=np.uint8)
    v = values.astype(np.int64, copy=True)
    for i in range(width - 1, -1, -1):
        v, r = np.divmod(v, len(alphabet))
        out[:, i] = lut[r]
    return out
