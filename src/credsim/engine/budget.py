"""Memory budget: refuse a run that would not fit, before allocating anything.

The estimate is linear in persons: bytes per entity (population columns, identity codes, engine
state, list and measure bookkeeping, escalation buffers, the output tables) plus bytes per
expected record (the record buffer with its growth slack, the Arrow table, the Parquet writer)
plus score snapshots, plus a fixed base for the interpreter and libraries. The constants were
fitted to measured peaks (Suzhou at 1M and 13M persons, the reference model at 1M) and err on the
high side. ``CREDSIM_MEMORY_LIMIT`` (e.g. ``2GiB``) overrides the memory taken as available.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from credsim.errors import CredsimError
from credsim.schemes.compile import Compiled

BASE = 400 * 2**20  # interpreter, NumPy, Numba, Arrow, DuckDB
# Population columns, identity code, state, output row. The identity code is 18 bytes (uint8
# rows, the Arrow column built over them) since it stopped being a Python str: 72 B less than
# the 260 fitted before, the drop measured in generate_population's retained and peak RSS (the
# reference model at 2M persons: 125 -> 53 B per person; a whole 2M run's peak fell by more).
PER_ENTITY = 188
PER_TRAIT = 28  # trait value, packed alias table entry (16 B, per weighting), block order
PER_RECORD = 200  # buffer with growth slack, Arrow column copies, Parquet writer
# A record of a run held in memory (``simulate``): the engine's columns with growth slack and
# its Arrow table, whose labels that cannot be null are dictionary arrays over the engine's
# codes. Measured: the reference model's peak resident set at 1M, 2M and 3M persons, 2.08,
# 3.85 and 5.60 GB, grows by 1.76 GB per million persons (16.9M records), about 86 B a record
# beside the persons' own. (With every label a string, 2M persons peaked at 5.27 GB.)
PER_RECORD_HELD = 100
PER_SNAPSHOT_ROW = 36  # entity, day, score, grade, in memory and in Arrow
SHARE_USABLE = 0.85


@dataclass(frozen=True)
class Estimate:
    bytes_fixed: float
    bytes_per_person: float
    records_per_person: float

    def total(self, persons: int) -> float:
        return self.bytes_fixed + self.bytes_per_person * persons


def records_per_person_year(cs: Compiled) -> float:
    """Expected observed records per person-year (mean group rate x detection, false reports)."""
    shares = [g.share.value for g in cs.scheme.population.groups.values()]
    rate = cs.rate[:, : len(shares)] @ shares if shares else cs.rate[:, 0] * 0
    total = 0.0
    for c in range(cs.ch_behaviour.shape[0]):
        total += float(rate[cs.ch_behaviour[c]]) * float(cs.ch_detect[c])
        total += float(cs.ch_false_reports[c])
    # spill-over copies a deduction onto each relative (about two per household) and friend
    spill = 2.0 * (cs.household_share > 0) + cs.scheme.population.friends_mean.value * (
        cs.friend_share > 0
    )
    return total * (1.0 + spill)


def expected_records(cs: Compiled, persons: int, days: int) -> float:
    """Records a run of ``persons`` over ``days`` is expected to make (see
    :func:`records_per_person_year`)."""
    return records_per_person_year(cs) * persons * days / 365.0


STREAM_BATCHES = 3  # batches of settled records in flight while streaming (stream.FLUSH_ROWS)
STREAM_BATCH_ROWS = 1 << 20
STREAM_SNAPSHOTS = 3  # score snapshots a streamed run holds at once, at most


def held_share(cs: Compiled, days: int) -> float:
    """Share of a streamed run's records still in memory at any time: those within the longest
    look-back (an escalation window, the appeal period). A review backlog is not foreseen."""
    lag = 0
    if cs.esc_item.shape[0]:
        lag = days if (cs.esc_window < 0).any() else int(cs.esc_window.max())
    if cs.appeals:
        lag = max(lag, int(cs.appeal_days))
    return min(1.0, (lag + 1) / max(days, 1))


def estimate(cs: Compiled, days: int, streamed: bool = False) -> Estimate:
    """``streamed``: records leave memory once settled (a run written to a folder)."""
    s = cs.scheme
    orgs = s.population.organizations_per_1000.value / 1000.0
    enrol = 1.0 if s.enrolment.mode == "mandatory" else float(s.enrolment.rate.value)  # type: ignore[union-attr]
    per_entity = float(PER_ENTITY + PER_TRAIT * max(1, len(cs.traits)))
    per_entity += 12 * len(cs.lists) + 10 * len(cs.measures) + 8 * int(cs.esc_count.sum())
    per_entity += 8 * int((cs.m_effect != 1.0).any(axis=0).sum()) + 8 * int(
        (cs.cap < float("inf")).sum()
    )
    per_entity += 2 * 8 * s.population.friends_mean.value
    taken = days // 30 + 2
    snapshots = taken * enrol * PER_SNAPSHOT_ROW if cs.has_score else 0.0
    recs = records_per_person_year(cs) * days / 365.0
    if not streamed:
        return Estimate(BASE, per_entity * (1 + orgs) + snapshots + recs * PER_RECORD_HELD, recs)
    # a streamed run lets each snapshot go once written (RecordStream): one being written,
    # one or two waiting at most
    snapshots *= min(taken, STREAM_SNAPSHOTS) / taken
    kept_day = 4 if cs.esc_item.shape[0] else 0  # the day of every record stays (escalation)
    per_record = PER_RECORD * held_share(cs, days) + kept_day
    fixed = BASE + STREAM_BATCHES * STREAM_BATCH_ROWS * PER_RECORD
    return Estimate(fixed, per_entity * (1 + orgs) + snapshots + recs * per_record, recs)


def available_bytes() -> float:
    """Memory available to this run: ``CREDSIM_MEMORY_LIMIT`` or the machine's MemAvailable."""
    limit = os.environ.get("CREDSIM_MEMORY_LIMIT")
    if limit:
        return parse_size(limit)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def parse_size(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?i?B?)?\s*", text, re.IGNORECASE)
    if not m:
        raise CredsimError(f"CREDSIM_MEMORY_LIMIT: cannot read '{text}' (expected e.g. 2GiB)")
    unit = (m.group(2) or "").upper().rstrip("B").rstrip("I")
    return float(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[unit]


def gib(x: float) -> str:
    return f"{x / 2**30:.1f} GiB"


def check(cs: Compiled, persons: int, days: int, streamed: bool = False) -> Estimate:
    """Raise a clear error, before anything is allocated, if the run would not fit in memory."""
    est = estimate(cs, days, streamed)
    need = est.total(persons)
    have = available_bytes() * SHARE_USABLE
    if need <= have:
        return est
    fit = int(max(0.0, have - est.bytes_fixed) / est.bytes_per_person)
    raise CredsimError(
        f"a run of '{cs.scheme.id}' with {persons:,} persons for {days} days would need about "
        f"{gib(need)} of memory ({est.bytes_per_person:,.0f} bytes per person, "
        f"{est.records_per_person:.1f} records each); {gib(have)} is usable here. "
        f"At most about {fit:,} persons fit for {days} days; use --population {fit:,} or fewer."
    )
