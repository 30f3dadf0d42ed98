"""Tiny hand-checkable schemes and simulations for mechanism tests.

``tiny_scheme(**sections)`` builds a small valid scheme (every number an assumption) where all
behaviour rates are zero, so nothing happens unless a test injects it; ``TinyRun`` drives the
engine day by day with injected observations.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import yaml

from credsim.engine.records import B_BEHAVIOUR, E_MISID, E_NONE
from credsim.engine.simulation import Simulation
from credsim.population import generate_population
from credsim.schemes.compile import compile_scheme
from credsim.schemes.loader import load_scheme_text


def n(value: float) -> dict[str, Any]:
    return {"value": value, "assumption": "test"}


BASE: dict[str, Any] = {
    "id": "tiny",
    "name": "Tiny test scheme",
    "jurisdiction": "Test",
    "in_force": {"assumption": "test"},
    "description": "test",
    "population": {
        "size": n(100),
        "groups": {"a": {"name": "A", "share": n(0.5)}, "b": {"name": "B", "share": n(0.5)}},
        "districts": {"d": {"name": "D", "code": "320500", "share": n(1.0)}},
        "age_bands": [
            {"min": n(0), "max": n(17), "share": n(0.2)},
            {"min": n(18), "max": n(80), "share": n(0.8)},
        ],
        "male_share": n(0.5),
        "household_size_mean": n(3.0),
        "organizations_per_1000": n(0),
        "friends_mean": n(0),
        "employment_rate": n(0),
    },
    "enrolment": {"mode": "mandatory"},
    "behaviours": {
        "jaywalking": {
            "rate": n(0),
            "channels": [
                {
                    "kind": "camera",
                    "agency": "police",
                    "detection": n(1.0),
                    "false_match_rate": n(0),
                }
            ],
        },
        "speeding": {
            "rate": n(0),
            "channels": [{"kind": "agency", "agency": "police", "detection": n(1.0)}],
        },
        "blood-donation": {
            "rate": n(0),
            "channels": [{"kind": "agency", "agency": "health", "detection": n(1.0)}],
        },
    },
    "items": {
        "jaywalking": {"name": "Jaywalking", "behaviour": "jaywalking", "points": n(-1)},
        "speeding": {"name": "Speeding", "behaviour": "speeding", "points": n(-10)},
        "blood-donation": {"name": "Blood", "behaviour": "blood-donation", "points": n(5)},
    },
    "score": {"base": n(150), "min": n(100), "max": n(200)},
}


def tiny_scheme(**sections: Any) -> dict[str, Any]:
    s = copy.deepcopy(BASE)
    for k, v in sections.items():
        if v is None:
            s.pop(k, None)
        else:
            s[k] = v
    return s


def load(s: dict[str, Any]):  # noqa: ANN201
    return load_scheme_text(yaml.safe_dump(s, sort_keys=False), "tiny.yaml")


class TinyRun:
    """A simulation of a tiny scheme, advanced by hand with injected observations."""

    def __init__(self, scheme: dict[str, Any], persons: int = 12, seed: int = 0) -> None:
        self.cs = compile_scheme(load(scheme).scheme)
        self.pop = generate_population(self.cs.scheme.population, persons, seed, with_friends=False)
        self.sim = Simulation(self.cs, self.pop, seed)
        self.sim.start()
        self.day = 0

    def inject(self, day: int, entity: int, behaviour: str, actor: int | None = None) -> None:
        """Queue one observation of ``behaviour`` about ``entity`` arriving on ``day``.

        ``actor`` is who really did it (default: the entity itself); a different actor makes a
        misidentified, untruthful record.
        """
        cs = self.cs
        k = cs.behaviours.index(behaviour)
        c = int(np.nonzero(cs.ch_behaviour == k)[0][0])
        a = entity if actor is None else actor
        item = int(cs.behaviour_item[k])
        one = lambda v, dt: np.array([v], dt)  # noqa: E731
        self.sim.observer.queue(
            day,
            {
                "behaviour_day": one(day, np.int32),
                "entity": one(entity, np.int32),
                "actor": one(a, np.int32),
                "item": one(item, np.int32),
                "behaviour": one(k, np.int32),
                "channel": one(cs.ch_kind[c], np.int8),
                "agency": one(0, np.int32),
                "points": one(cs.points[item], np.float64),
                "truthful": one(a == entity, np.bool_),
                "basis": one(B_BEHAVIOUR, np.int8),
                "error": one(E_NONE if a == entity else E_MISID, np.int8),
            },
        )

    def advance(self, to_day: int) -> None:
        while self.day < to_day:
            self.day += 1
            self.sim.step(self.day)

    # readable views
    def score(self, e: int) -> float:
        return float(self.sim.score[e])

    def records(self) -> dict[str, np.ndarray]:
        r = self.sim.records
        return {k: r.col(k).copy() for k in r.columns}

    def episodes(self) -> dict[str, np.ndarray]:
        t = self.sim.lists.eps
        return {k: t.col(k).copy() for k in t.columns}

    def measure_episodes(self) -> dict[str, np.ndarray]:
        t = self.sim.measures.eps
        return {k: t.col(k).copy() for k in t.columns}

    def household_of(self, e: int) -> list[int]:
        h = self.pop.household[e]
        return list(range(int(self.pop.hh_start[h]), int(self.pop.hh_start[h + 1])))


STRUCT_FORMAT = {
    "bool": "B",
    "int8": "b",
    "int16": "h",
    "int32": "i",
    "int64": "q",
    "double": "d",
    "date32[day]": "i",
}
"""The :mod:`struct` format of each fixed-width Arrow type in its natural width (little-endian
with "<"), for writing the ledger's canonical rows by hand in tests."""


_SHA_K = [
    int(x, 16)
    for x in """
    428a2f98 71374491 b5c0fbcf e9b5dba5 3956c25b 59f111f1 923f82a4 ab1c5ed5 d807aa98 12835b01
    243185be 550c7dc3 72be5d74 80deb1fe 9bdc06a7 c19bf174 e49b69c1 efbe4786 0fc19dc6 240ca1cc
    2de92c6f 4a7484aa 5cb0a9dc 76f988da 983e5152 a831c66d b00327c8 bf597fc7 c6e00bf3 d5a79147
    06ca6351 14292967 27b70a85 2e1b2138 4d2c6dfc 53380d13 650a7354 766a0abb 81c2c92e 92722c85
    a2bfe8a1 a81a664b c24b8b70 c76c51a3 d192e819 d6990624 f40e3585 106aa070 19a4c116 1e376c08
    2748774c 34b0bcb5 391c0cb3 4ed8aa4a 5b9cca4f 682e6ff3 748f82ee 78a5636f 84c87814 8cc70208
    90befffa a4506ceb bef9a3f7 c67178f2""".split()
]


def sha256_compress(digest: bytes, blocks: bytes) -> bytes:
    """SHA-256's compression function (FIPS 180-4, 6.2.2), written here apart from credsim's:
    the digest (8 big-endian words) after each 64-byte block of ``blocks`` in turn. With the
    initial words and a padded message it is SHA-256 (``tests/test_sha_block.py`` checks)."""

    def rotr(x: int, n: int) -> int:
        return ((x >> n) | (x << (32 - n))) & 0xFFFFFFFF

    assert len(digest) == 32 and len(blocks) % 64 == 0
    h = [int.from_bytes(digest[i : i + 4], "big") for i in range(0, 32, 4)]
    for at in range(0, len(blocks), 64):
        w = [int.from_bytes(blocks[at + i : at + i + 4], "big") for i in range(0, 64, 4)]
        for t in range(16, 64):
            s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
            s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
            w.append((w[t - 16] + s0 + w[t - 7] + s1) & 0xFFFFFFFF)
        a, b, c, d, e, f, g, hh = h
        for t in range(64):
            ch = (e & f) ^ (~e & g)
            t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ch + _SHA_K[t] + w[t]
            t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))
            a, b, c, d, e, f, g, hh = (
                (t1 + t2) & 0xFFFFFFFF,
                a,
                b,
                c,
                (d + t1) & 0xFFFFFFFF,
                e,
                f,
                g,
            )
        h = [(x + y) & 0xFFFFFFFF for x, y in zip(h, (a, b, c, d, e, f, g, hh), strict=True)]
    return b"".join(x.to_bytes(4, "big") for x in h)


def v7_link(prev: bytes, row: bytes) -> bytes:
    """docs/integrity.md, credsim-ledger-v7: the row followed by zeros up to whole 64-byte
    blocks (at least one), compressed in turn from the previous digest."""
    blocks = max(1, -(-len(row) // 64))
    return sha256_compress(prev, row + bytes(64 * blocks - len(row)))
