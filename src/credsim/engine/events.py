"""Import hand-written case-study events into a run, validating every row.

A case study ("she missed a bill during a hospital stay") is a CSV or Parquet file with one event
per row:

``entity``
    an entity id of the run's population (digits, e.g. ``42``) or an 18-character code: a resident
    identity number (``stdnum.cn.ric``) or a unified social credit code (``stdnum.cn.uscc``);
``day``
    the day the event happens and reaches the database, a whole number in ``1..days``;
``behaviour``
    a behaviour id of the scheme (its item is recorded) or an item id (e.g. ``credit-downgrade``,
    an item that escalation produces); a name that is both is taken as the behaviour;
``note`` (optional)
    free text kept with the event and shown by ``credsim explain``.

Column names are matched case-insensitively; other columns are an error. Reading is in two steps:
:func:`read_events_file` checks the file as a whole (readable, UTF-8 CSV or real Parquet, the
right columns, at least one row) and raises :class:`~credsim.errors.CredsimError` naming the file
and what was expected; :func:`validate_events` then checks each row against the population and the
scheme. Rows that fail are quarantined with their row number and every reason; the others become
records. Row numbers are 1-based *data* rows: row 1 is the first row after the header (in a
spreadsheet, row R of the file is spreadsheet row R + 1). Rows left entirely blank are skipped:
they are not counted as read but they keep their number, so the numbers match the spreadsheet.
Always ``accepted + quarantined == rows_read``.

An imported event is taken as true: the record is about the entity named, its actor is that
entity, ``truthful`` is true, ``basis`` and ``channel`` are ``import`` and it has no source agency
(a case study names no agency). It arrives on its day ahead of that day's observations and then
goes through review, scoring, escalation, lists, measures and appeals like any observed record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from stdnum.cn import ric, uscc
from stdnum.exceptions import InvalidChecksum, ValidationError

from credsim.engine.events_file import (  # noqa: F401  (re-exported)
    COLUMNS,
    OPTIONAL,
    REQUIRED,
    EventsFile,
    _names,
    _np,
    _strip,
    read_events_file,
)
from credsim.engine.records import B_IMPORT, E_NONE
from credsim.population.types import Population
from credsim.schemes.compile import ALL_CHANNELS, Compiled

CH_IMPORT = ALL_CHANNELS.index("import")
_RIC_SHAPE = re.compile(r"\d{17}[\dX]")

Batch = dict[str, np.ndarray]


@dataclass
class ImportedEvents:
    """Validated events: the batches to inject, the accepted rows and the quarantined ones."""

    file: str
    sha256: str
    rows_read: int
    batches: dict[int, Batch]  # arrival day -> records, in row order
    accepted: pa.Table  # row, entity_id, day, behaviour, item, note (sorted by row)
    quarantine: pa.Table  # row, entity, day, behaviour, note, reason (sorted by row)
    arrival_rows: np.ndarray = field(repr=False)  # rows in the order their records arrive

    @property
    def n_accepted(self) -> int:
        return int(self.accepted.num_rows)

    @property
    def n_quarantined(self) -> int:
        return int(self.quarantine.num_rows)

    def manifest(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "rows_read": self.rows_read,
            "accepted": self.n_accepted,
            "quarantined": self.n_quarantined,
        }

    def attach(self, records: Any) -> pa.Table:
        """After the run: the accepted rows with the ``record_id`` each became, from ``records``
        (the run's :class:`~credsim.engine.records.RecordBuffer`), whose imported records carry
        their data row in ``import_row`` since they arrived."""
        ids = np.nonzero(records.col("import_row") >= 0)[0]
        return self.attach_ids(ids, records.col("import_row")[ids])

    def attach_ids(self, ids: np.ndarray, rows: np.ndarray) -> pa.Table:
        """The accepted rows with their ``record_id``, given the imported records (``ids``) and
        their data rows (``rows``). Every accepted row became exactly one record."""
        if ids.shape[0] != self.arrival_rows.shape[0] or not np.array_equal(
            np.sort(rows), np.sort(self.arrival_rows)
        ):
            raise RuntimeError(
                f"internal error: {self.arrival_rows.shape[0]} events imported but "
                f"{ids.shape[0]} imported records found"
            )
        rid = np.asarray(ids, np.int64)[np.argsort(rows, kind="stable")]  # accepted: by row
        return self.accepted.append_column("record_id", pa.array(rid, pa.int64()))


def read_events(path: str | Path, pop: Population, cs: Compiled, days: int) -> ImportedEvents:
    """Read ``path`` (CSV or Parquet) and validate every row; see the module docstring."""
    return validate_events(read_events_file(path), pop, cs, days)


# --------------------------------------------------------------------------------------------
# Row level


def _show(v: str) -> str:
    return repr(v if len(v) <= 40 else v[:37] + "...")


def _whole(s: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(is a whole number, its value or -1 when it has more than 9 digits) for each string."""
    whole = _np(pc.match_substring_regex(s, r"^[+-]?[0-9]+(\.0*)?$"))
    neg = _np(pc.starts_with(s, "-"))
    body = pc.replace_substring_regex(s, r"^[+-]", "")
    body = pc.replace_substring_regex(body, r"\.0*$", "")
    body = pc.replace_substring_regex(body, r"^0+([0-9])", r"\1")
    small = whole & (_np(pc.utf8_length(body)) <= 9)
    value = np.full(len(s), -1, np.int64)
    if small.any():
        value[small] = _np(pc.cast(pc.filter(body, pa.array(small)), pa.int64()))
        value[small & neg] *= -1
    return whole, value


def _code_problem(code: str) -> str:
    """Why an 18-character code not in the population is not a valid RIC or USCC, or ''."""
    if ric.is_valid(code) or uscc.is_valid(code):
        return ""
    mod: Any = ric if _RIC_SHAPE.fullmatch(code) else uscc
    what = "identity number" if mod is ric else "unified social credit code"
    try:
        mod.validate(code)
    except InvalidChecksum:
        try:
            want = f" (expected {mod.calc_check_digit(code[:17])})"
        except Exception:  # a character outside the code's alphabet
            want = ""
        return f"{what} {code} has a wrong check character{want}"
    except ValidationError as exc:
        detail = {
            "InvalidComponent": "impossible birth date or unknown birthplace code",
            "InvalidFormat": "characters not allowed where they are",
        }.get(type(exc).__name__, str(exc))
        return f"{what} {code} is not well formed ({detail})"
    return ""


def _check_digit_ok(code: str) -> bool:
    """The check character of a code found in the population, recomputed with python-stdnum."""
    try:
        if _RIC_SHAPE.fullmatch(code) and code[-1] == ric.calc_check_digit(code):
            return True
        return bool(code[-1] == uscc.calc_check_digit(code))
    except Exception:  # a character outside the code's alphabet
        return False


def _entities(ent: pa.Array, pop: Population, reasons: list[list[str]]) -> np.ndarray:
    """Entity ids (-1 where the entity is not valid, with the reason appended)."""
    m = len(ent)
    out = np.full(m, -1, np.int64)
    length = _np(pc.utf8_length(ent))
    digits = _np(pc.match_substring_regex(ent, r"^[0-9]+$"))
    code = (length == 18) & _np(pc.match_substring_regex(ent, r"^[0-9A-Za-z]+$"))
    idf = digits & (length != 18)
    _, value = _whole(ent)
    ok = idf & (value >= 0) & (value < pop.n)
    out[ok] = value[ok]
    values = ent.to_pylist()
    for i in np.nonzero(length == 0)[0]:
        reasons[i].append("entity is empty")
    for i in np.nonzero((length > 0) & ~idf & ~code)[0]:
        reasons[i].append(
            f"entity {_show(values[i])} is neither an entity id (digits) nor an 18-character "
            "identity number or unified social credit code"
        )
    for i in np.nonzero(idf & ~ok)[0]:
        reasons[i].append(
            f"unknown entity: entity_id {_show(values[i])} is not in the run's population "
            f"(ids 0 to {pop.n - 1})"
        )
    if code.any():
        rows = np.nonzero(code)[0]
        codes = pc.utf8_upper(pc.filter(ent, pa.array(code)))
        uniq = pc.unique(codes)
        pop_codes = pop.code_array()
        found = _np(pc.index_in(uniq, value_set=pop_codes).fill_null(-1)).astype(np.int64)
        ulist = uniq.to_pylist()
        problem = [
            ("" if _check_digit_ok(c) else f"{c} has a wrong check character")
            if f >= 0
            else (
                _code_problem(c) or f"unknown entity: {_kind(c)} {c} is not in the run's population"
            )
            for c, f in zip(ulist, found.tolist(), strict=True)
        ]
        where = _np(pc.index_in(codes, value_set=uniq)).astype(np.int64)
        for r, u in zip(rows.tolist(), where.tolist(), strict=True):
            if problem[u]:
                reasons[r].append(problem[u])
            else:
                out[r] = found[u]
    return out


def _kind(code: str) -> str:
    return "identity number" if ric.is_valid(code) else "unified social credit code"


def _days(day: pa.Array, days: int, reasons: list[list[str]]) -> np.ndarray:
    whole, value = _whole(day)
    length = _np(pc.utf8_length(day))
    ok = whole & (value >= 1) & (value <= days)
    values = day.to_pylist()
    for i in np.nonzero(length == 0)[0]:
        reasons[i].append("day is empty")
    for i in np.nonzero((length > 0) & ~whole)[0]:
        reasons[i].append(f"day {_show(values[i])} is not a whole number")
    for i in np.nonzero(whole & ~ok)[0]:
        reasons[i].append(f"day {_show(values[i])} is outside the run (1 to {days})")
    return np.where(ok, value, -1)


def _vocabulary(cs: Compiled) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names a row may give, with the behaviour (-1: none) and item (-1: none) each stands for."""
    names = list(cs.behaviours)
    beh = list(range(len(names)))
    item = [int(i) for i in cs.behaviour_item]
    for i, (key, it) in enumerate(cs.scheme.items.items()):
        if key not in names:
            names.append(key)
            beh.append(cs.behaviours.index(it.behaviour) if it.behaviour in cs.behaviours else -1)
            item.append(i)
    return names, np.array(beh, np.int32), np.array(item, np.int32)


def _behaviours(
    b: pa.Array, cs: Compiled, reasons: list[list[str]]
) -> tuple[np.ndarray, np.ndarray]:
    names, beh, item = _vocabulary(cs)
    low = pc.utf8_lower(b)
    ix = _np(pc.index_in(low, value_set=pa.array(names, pa.string())).fill_null(-1)).astype(
        np.int64
    )
    length = _np(pc.utf8_length(b))
    known = ix >= 0
    out_b = np.where(known, beh[np.maximum(ix, 0)], -1)
    out_i = np.where(known, item[np.maximum(ix, 0)], -1)
    values = b.to_pylist()
    vocab = _names(names, 8)
    for i in np.nonzero(length == 0)[0]:
        reasons[i].append("behaviour is empty")
    for i in np.nonzero((length > 0) & ~known)[0]:
        reasons[i].append(
            f"unknown behaviour or item {_show(values[i])} (the scheme knows {vocab})"
        )
    for i in np.nonzero(known & (out_i < 0))[0]:
        reasons[i].append(
            f"behaviour {_show(values[i])} has no item in this scheme, so it makes no record"
        )
    return out_b, out_i


def validate_events(f: EventsFile, pop: Population, cs: Compiled, days: int) -> ImportedEvents:
    """Check every row of ``f`` against the population and the scheme; see the module docstring."""
    m = f.rows.shape[0]
    reasons: list[list[str]] = [[] if w is None else [w] for w in f.width]
    good_width = np.array([w is None for w in f.width], bool)
    ent = _strip(f.text["entity"])
    day_s = _strip(f.text["day"])
    beh_s = _strip(f.text["behaviour"])
    # rows with the wrong number of fields are judged on that alone: their fields are shifted
    scratch: list[list[str]] = [[] for _ in range(m)]
    eid = _entities(ent, pop, scratch)
    day = _days(day_s, days, scratch)
    beh, item = _behaviours(beh_s, cs, scratch)
    for i in np.nonzero(good_width)[0]:
        reasons[i] += scratch[i]
    valid = np.array([not r for r in reasons], bool)
    # duplicates: the same entity, day, behaviour and item as an earlier valid row
    vi = np.nonzero(valid)[0]
    if vi.shape[0]:
        key = np.stack([eid[vi], day[vi], beh[vi], item[vi]], axis=1).astype(np.int64)
        _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
        orig = vi[first[inv.reshape(-1)]]
        is_dup = orig != vi
        for i, o in zip(vi[is_dup].tolist(), orig[is_dup].tolist(), strict=True):
            reasons[i].append(f"duplicate of row {int(f.rows[o])} (same entity, day and behaviour)")
        valid[vi[is_dup]] = False
    note = f.text["note"]
    note_s = _strip(note)
    note_clean = pc.if_else(pc.equal(note_s, ""), pa.scalar(None, pa.string()), note_s)
    acc = np.nonzero(valid)[0]
    bad = np.nonzero(~valid)[0]
    item_names = list(cs.items)
    beh_names = list(cs.behaviours)
    accepted = pa.table(
        {
            "row": pa.array(f.rows[acc], pa.int64()),
            "entity_id": pa.array(eid[acc].astype(np.int32)),
            "day": pa.array(day[acc].astype(np.int32)),
            "behaviour": pa.array(
                [beh_names[k] if k >= 0 else None for k in beh[acc].tolist()], pa.string()
            ),
            "item": pa.array([item_names[k] for k in item[acc].tolist()], pa.string()),
            "note": note_clean.take(pa.array(acc, pa.int64())),
        }
    )
    take_bad = pa.array(bad, pa.int64())
    quarantine = pa.table(
        {
            "row": pa.array(f.rows[bad], pa.int64()),
            "entity": f.text["entity"].take(take_bad),
            "day": f.text["day"].take(take_bad),
            "behaviour": f.text["behaviour"].take(take_bad),
            "note": note.take(take_bad),
            "reason": pa.array(["; ".join(reasons[i]) for i in bad.tolist()], pa.string()),
        }
    )
    order = acc[np.lexsort((f.rows[acc], day[acc]))]
    batches: dict[int, Batch] = {}
    arrival_days, starts = np.unique(day[order], return_index=True)
    chunks = np.split(order, starts[1:]) if order.shape[0] else []
    for d, sel in zip(arrival_days.tolist(), chunks, strict=True):
        k = sel.shape[0]
        e = eid[sel].astype(np.int32)
        it = item[sel].astype(np.int32)
        batches[int(d)] = {
            "behaviour_day": np.full(k, d, np.int32),
            "entity": e,
            "actor": e.copy(),
            "item": it,
            "behaviour": beh[sel].astype(np.int32),
            "channel": np.full(k, CH_IMPORT, np.int8),
            "agency": np.full(k, -1, np.int32),
            "points": cs.points[it].astype(np.float64),
            "truthful": np.ones(k, np.bool_),
            "basis": np.full(k, B_IMPORT, np.int8),
            "error": np.full(k, E_NONE, np.int8),
            "import_row": f.rows[sel].astype(np.int32),
        }
    result = ImportedEvents(
        file=str(f.path),
        sha256=f.sha256,
        rows_read=m,
        batches=batches,
        accepted=accepted,
        quarantine=quarantine,
        arrival_rows=f.rows[order].astype(np.int32),
    )
    assert result.n_accepted + result.n_quarantined == result.rows_read
    return result
