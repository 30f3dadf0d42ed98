"""One random-number tree per run: a stream per (stage, day), derived from the run seed.

Streams are keyed by stage name and day rather than drawn in sequence, so that adding a stage or
changing how another stage draws never shifts the numbers a stage sees; later, shards extend the
key the same way.

A stream is ``np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))``: NumPy's
PCG64 seeded by its SeedSequence. A run makes several streams a day, and NumPy takes about 38 us
to build one, most of it in SeedSequence's Python-level mixing; :class:`Streams` computes the
same seeding words with a Numba kernel (:func:`_seed_words`, NumPy's algorithm: 32-bit
``hashmix`` and ``mix`` over a pool of four words) and builds the same generator in about 7 us.
``tests/test_engine_speed_equivalence.py`` checks the states against NumPy's.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from numba import njit
from numpy.random.bit_generator import ISeedSequence

_M32 = np.uint64(0xFFFFFFFF)
_INIT_A, _MULT_A = np.uint64(0x43B0D7E5), np.uint64(0x931E8875)
_INIT_B, _MULT_B = np.uint64(0x8B51F9DD), np.uint64(0x58F38DED)
_MIX_L, _MIX_R = np.uint64(0xCA01F9DD), np.uint64(0x4973F715)
_SHIFT = np.uint64(16)


@njit(cache=True, nogil=True, inline="always")
def _hashmix(value: np.uint64, h: np.uint64) -> tuple[np.uint64, np.uint64]:  # pragma: no cover
    """NumPy's ``hashmix``: (the mixed value, the next hash constant)."""
    value ^= h
    h = (h * _MULT_A) & _M32
    value = (value * h) & _M32
    return value ^ (value >> _SHIFT), h


@njit(cache=True, nogil=True, inline="always")
def _mix(x: np.uint64, y: np.uint64) -> np.uint64:  # pragma: no cover - numba
    r = (_MIX_L * x - _MIX_R * y) & _M32
    return r ^ (r >> _SHIFT)


@njit(cache=True, nogil=True)
def _seed_words(entropy: np.ndarray, n: int) -> np.ndarray:  # pragma: no cover - numba
    """``SeedSequence(...).generate_state(n, uint32)`` for the assembled ``entropy`` words
    (uint64 holding 32-bit values), as NumPy computes it (pool size 4)."""
    h = _INIT_A
    pool = np.zeros(4, np.uint64)
    for i in range(4):  # hash the entropy into the pool
        pool[i], h = _hashmix(entropy[i] if i < entropy.shape[0] else np.uint64(0), h)
    for s in range(4):  # mix every pool word into every other
        for d in range(4):
            if s != d:
                v, h = _hashmix(pool[s], h)
                pool[d] = _mix(pool[d], v)
    for s in range(4, entropy.shape[0]):  # and the entropy beyond the pool
        for d in range(4):
            v, h = _hashmix(entropy[s], h)
            pool[d] = _mix(pool[d], v)
    out = np.empty(n, np.uint32)
    h = _INIT_B
    for i in range(n):
        v = pool[i & 3] ^ h
        h = (h * _MULT_B) & _M32
        v = (v * h) & _M32
        out[i] = np.uint32(v ^ (v >> _SHIFT))
    return out


def _words(x: int) -> list[int]:
    """A non-negative integer as 32-bit words, least significant first ([0] for 0)."""
    if x == 0:
        return [0]
    out = []
    while x:
        out.append(x & 0xFFFFFFFF)
        x >>= 32
    return out


class _Seeding(ISeedSequence):
    """What PCG64 asks of a SeedSequence (its state words), for one assembled entropy."""

    __slots__ = ("entropy",)

    def __init__(self, entropy: np.ndarray) -> None:
        self.entropy = entropy

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:  # type: ignore[override]
        if np.dtype(dtype) == np.dtype(np.uint64):
            return _seed_words(self.entropy, 2 * n_words).view(np.uint64)
        return _seed_words(self.entropy, n_words)


class Streams:
    def __init__(self, seed: int) -> None:
        if not 0 <= int(seed) < 2**63:
            raise ValueError(f"seed must be a non-negative integer below 2**63, got {seed}")
        self.seed = int(seed)
        run = _words(self.seed)
        self._run = run + [0] * (4 - len(run))  # padded: a spawn key always follows
        self._stage: dict[str, int] = {}

    def key(self, stage: str, day: int = 0, *extra: int) -> tuple[int, ...]:
        """The stream's spawn key: (crc32 of the stage name, day, *extra)."""
        crc = self._stage.get(stage)
        if crc is None:
            crc = self._stage[stage] = zlib.crc32(stage.encode())
        return (crc, int(day), *(int(x) for x in extra))

    def get(self, stage: str, day: int = 0, *extra: int) -> np.random.Generator:
        """``np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))``, built
        faster (see the module docstring)."""
        key = self.key(stage, day, *extra)
        if min(key) < 0:
            return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))
        words = self._run + [w for k in key for w in _words(k)]
        seeding = _Seeding(np.array(words, np.uint64))
        return np.random.Generator(np.random.PCG64(seeding))  # type: ignore[arg-type]

    def lazy(self, stage: str, day: int = 0, *extra: int) -> np.random.Generator:
        """The stream :meth:`get` gives, built only when first drawn from (for stages that
        draw on few days)."""
        return _Lazy(self, (stage, day, *extra))  # type: ignore[return-value]

    def seed_sequence(self, stage: str) -> np.random.SeedSequence:
        return np.random.SeedSequence(self.seed, spawn_key=(zlib.crc32(stage.encode()),))


class _Lazy:
    """A generator made on first use (see :meth:`Streams.lazy`)."""

    __slots__ = ("_streams", "_key", "_gen")

    def __init__(self, streams: Streams, key: tuple) -> None:
        self._streams, self._key = streams, key
        self._gen: np.random.Generator | None = None

    def __getattr__(self, name: str) -> object:
        if self._gen is None:
            self._gen = self._streams.get(*self._key)
        return getattr(self._gen, name)
