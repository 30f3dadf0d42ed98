"""One random-number tree per run: a stream per (stage, day), derived from the run seed.

Streams are keyed by stage name and day rather than drawn in sequence, so that adding a stage or
changing how another stage draws never shifts the numbers a stage sees; later, shards extend the
key the same way.
"""

from __future__ import annotations

import zlib

import numpy as np


class Streams:
    def __init__(self, seed: int) -> None:
        if not 0 <= int(seed) < 2**63:
            raise ValueError(f"seed must be a non-negative integer below 2**63, got {seed}")
        self.seed = int(seed)

    def get(self, stage: str, day: int = 0, *extra: int) -> np.random.Generator:
        key = (zlib.crc32(stage.encode()), int(day), *extra)
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))

    def seed_sequence(self, stage: str) -> np.random.SeedSequence:
        return np.random.SeedSequence(self.seed, spawn_key=(zlib.crc32(stage.encode()),))
