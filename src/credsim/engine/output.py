"""Turn a finished simulation into the run store's Arrow tables (schemas: credsim.store.schema)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from credsim.engine.lists import END_REASONS
from credsim.engine.measures import CAUSES
from credsim.engine.records import BASIS, ERRORS, STATUS, default_column
from credsim.engine.simulation import Simulation
from credsim.population.types import ORGANIZATION
from credsim.schemes.compile import ALL_CHANNELS
from credsim.store.schema import RECORDS_CONTENT, SCHEMAS


def _nullable(arr: np.ndarray, null: int = -1, type_: pa.DataType | None = None) -> pa.Array:
    """``arr`` as an Arrow array, null where ``arr == null``.

    The values are shared, not copied, and the validity bitmap is packed by numpy: a third of
    the time of ``pa.array(arr, mask=...)`` (1.7M values: 3 against 10 ms), none at all when
    no value is null."""
    arr = np.ascontiguousarray(arr)
    missing = arr == null
    k = int(np.count_nonzero(missing))
    own = pa.from_numpy_dtype(arr.dtype)
    if k == 0 or (type_ is not None and type_ != own):
        return pa.array(arr, mask=missing if k else None, type=type_)
    valid = pa.py_buffer(np.packbits(~missing, bitorder="little"))
    return pa.Array.from_buffers(own, arr.shape[0], [valid, pa.py_buffer(arr)], null_count=k)


def _flags(arr: np.ndarray) -> pa.Array:
    """Booleans as an Arrow array, their bits packed by numpy (Arrow's conversion took a
    nanosecond a value: 0.2 s for a 13M run's 220M records)."""
    bits = np.packbits(np.ascontiguousarray(arr, np.bool_), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), arr.shape[0], [None, pa.py_buffer(bits)])


def _labels(codes: np.ndarray, names: list[str], null: int = -1) -> pa.Array:
    """Strings from small integer codes, null where ``code == null`` (the small tables' labels,
    whose names may repeat: a measure's kind, a list's rule). A ``take`` from the names. Codes
    outside ``names`` raise an error.
    """
    codes = np.asarray(codes)
    is_null = codes == null
    if is_null.all() and codes.shape[0]:  # take would give the same nulls
        return pa.nulls(codes.shape[0], pa.string())
    if is_null.any():
        ix = pa.array(np.where(is_null, 0, codes), mask=is_null)
    else:
        ix = pa.array(codes)  # any integer type indexes (no copy)
    return pc.take(pa.array(names, pa.string()), ix)


def _label_maker(table: str, stored: bool) -> Callable[[str, np.ndarray, list[str]], pa.Array]:
    """How the label columns of ``table`` are built from their codes and names: as dictionary
    arrays over the names (no string built per row), except, unless the table is ``stored``
    (written, never handed to the caller), a column that may hold nulls, built as strings:
    pyarrow (26) decodes a null of a dictionary column as a value in ``ChunkedArray.to_numpy``
    (``table.column(name).to_numpy()``), the null row's index taken as it lies in memory."""
    schema = RECORDS_CONTENT if table == "records" else SCHEMAS[table]

    def make(name: str, codes: np.ndarray, names: list[str]) -> pa.Array:
        if _as_strings(schema, name, stored):
            return _labels(codes, names)
        return _dictionary(codes, names)

    return make


def _as_strings(schema: pa.Schema, name: str, stored: bool) -> bool:
    """Whether :func:`_label_maker` builds label column ``name`` of ``schema`` as strings."""
    return not stored and schema.field(name).nullable


def population_table(sim: Simulation, *, stored: bool = False) -> pa.Table:
    """The population as the run store's table, its labels as :func:`_label_maker` builds
    them."""
    pop = sim.pop
    org = pop.kind == ORGANIZATION
    label = _label_maker("population", stored)
    return pa.table(
        {
            "entity_id": pa.array(np.arange(pop.n, dtype=np.int32)),
            "kind": label("kind", pop.kind.astype(np.int32), ["person", "organization"]),
            "code": pop.code_array(),  # over the population's bytes, no str objects
            "district": label("district", pop.district.astype(np.int32), pop.district_ids),
            "group": label("group", np.where(org, -1, pop.group).astype(np.int32), pop.group_ids),
            "sex": label("sex", np.where(org, -1, pop.sex).astype(np.int32), ["female", "male"]),
            "age": pa.array(pop.age.astype(np.int16), mask=org),
            "birth_date": pa.array(pop.birth_date.astype(np.int32), mask=org).cast(pa.date32()),
            "income_decile": pa.array(pop.income_decile.astype(np.int8), mask=org),
            "household_id": _nullable(pop.household.astype(np.int32)),
            "employer_id": _nullable(pop.employer.astype(np.int32)),
            "enrolled": _flags(sim.enrolled),
        }
    )


def records_table(sim: Simulation) -> pa.Table:
    """Every record of the run as the run store's Arrow table."""
    r = sim.records
    return records_arrow({k: r.view(k) for k in r.columns}, 0, record_names(sim))


def record_names(sim: Simulation) -> dict[str, list[str]]:
    """The names behind the records' code columns (item, behaviour, agency)."""
    return {
        "item": list(sim.item_names),
        "behaviour": list(sim.cs.behaviours),
        "agency": list(sim.observer.agencies),
    }


def records_arrow(
    cols: Mapping[str, np.ndarray | None],
    start: int,
    names: dict[str, list[str]],
    *,
    stored: bool = False,
) -> pa.Table:
    """Records given as engine columns (:data:`~credsim.engine.records.COLUMNS`; None: every
    row at the column's default, :meth:`~credsim.engine.records.Table.view`), the first with
    id ``start``, as the run store's Arrow table.

    The label columns (``item``, ``status``, ...) that cannot be null are dictionary arrays
    over their names: the values the schema's strings hold (stored as strings,
    :func:`credsim.store.parquet.label_writer`; pandas: categorical), without a string built
    per row; so are the others when ``stored`` (:func:`_label_maker`). Built as strings, the
    seven took two thirds of the time of the tables at 1e5 persons (1.7M records, about 12
    bytes a row each on fresh pages)."""
    c = cast(Callable[[str], np.ndarray], cols.__getitem__)  # columns never lazy
    n = c("day").shape[0]

    zeros: list[pa.Buffer] = []

    def zero() -> pa.Buffer:
        """One zero buffer (untouched pages) is every all-null column's validity and values
        and every all-false flag column's bits."""
        if not zeros:
            zeros.append(pa.py_buffer(np.zeros(max(n, 1) * 8, np.uint8)))
        return zeros[0]

    def nullable(name: str, type_: pa.DataType) -> pa.Array:
        v = cols[name]
        if v is not None:
            return _nullable(v)
        return pa.Array.from_buffers(type_, n, [zero(), zero()], null_count=n)

    def flags(name: str) -> pa.Array:
        v = cols[name]
        if v is not None:
            return _flags(v)
        return pa.Array.from_buffers(pa.bool_(), n, [None, zero()])  # all false, no copy

    label_names = record_labels(names)
    labels: dict[str, tuple[np.ndarray, list[str]]] = {}  # label columns from their codes
    for field, name in LABEL_COLUMNS.items():
        codes = cols[name]
        labels[field] = (default_column(name, n) if codes is None else codes, label_names[field])
    label = _label_maker("records", stored)
    strings = [k for k in labels if _as_strings(RECORDS_CONTENT, k, stored)]

    def ids() -> pa.Array:
        return pa.array(np.arange(start, start + n, dtype=np.int64))

    if strings and n >= SPLIT_ROWS:  # (never when stored: every label is a dictionary)
        first = strings[0]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="credsim-labels") as pool:
            # the first column built as strings (12 ns a row) and the ids (fresh memory: 3 to
            # 15 ns a row) on a second thread while this one builds the others (Arrow's take
            # and numpy's arange release the interpreter's lock)
            aside, record_id = pool.submit(label, first, *labels[first]), pool.submit(ids)
            s = {k: label(k, *labels[k]) for k in labels if k != first}
            s |= {first: aside.result(), "record_id": record_id.result()}
    else:
        s = {k: label(k, *labels[k]) for k in labels} | {"record_id": ids()}
    return pa.table(
        {
            "record_id": s["record_id"],
            "day": pa.array(c("day")),
            "behaviour_day": _nullable(c("behaviour_day")),
            "entity_id": pa.array(c("entity")),
            "actor_id": _nullable(c("actor")),
            "item": s["item"],
            "behaviour": s["behaviour"],
            "channel": s["channel"],
            "source_agency": s["source_agency"],
            "points": pa.array(c("points")),
            "applied": pa.array(c("applied")),
            "status": s["status"],
            "truthful": _flags(c("truthful")),
            "basis": s["basis"],
            "error": s["error"],
            "cause_record": nullable("cause", pa.int64()),
            "review_day": nullable("review_day", pa.int32()),
            "appeal_day": nullable("appeal_day", pa.int32()),
            "appealed": flags("appealed"),
            "import_row": nullable("import_row", pa.int32()),
            "excused": flags("excused"),
        }
    )


LABEL_COLUMNS = {
    "item": "item",
    "behaviour": "behaviour",
    "channel": "channel",
    "source_agency": "agency",
    "status": "status",
    "basis": "basis",
    "error": "error",
}
"""The records' label fields and the engine columns holding their codes."""


def record_labels(names: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Each label field's names, the engine's code ``k`` naming ``[field][k]`` (``names``: the
    run's own, :attr:`~credsim.engine.simulation.Simulation.names`)."""
    return {
        "item": names["item"],
        "behaviour": names["behaviour"],
        "channel": ALL_CHANNELS,
        "source_agency": names["agency"],
        "status": STATUS,
        "basis": BASIS,
        "error": ERRORS,
    }


SPLIT_ROWS = 100_000
"""Records from which :func:`records_arrow` builds a string column on a second thread (below,
starting the thread costs more than it spares)."""

_INDEX_TYPES = (np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.int32))
"""Code types a dictionary array takes as its indices without a copy."""


def _dictionary(codes: np.ndarray, names: list[str], null: int = -1) -> pa.Array:
    """A dictionary array over ``names`` with indices ``codes``, null where ``code == null``
    (codes outside ``names`` raise an error, and so do repeated names: a dictionary's values
    are distinct, as pandas' categories must be)."""
    if len(set(names)) != len(names):
        raise ValueError(f"repeated label names: {names}")
    codes = np.asarray(codes)
    # narrow codes index as they are (int8 and int16 dictionaries, no widening copy: 4
    # columns of a million records took 6 ms to widen)
    ix = codes if codes.dtype in _INDEX_TYPES else codes.astype(np.int32)
    if codes.shape[0]:
        lo, hi = int(codes.min()), int(codes.max())
        if lo < min(null, 0) or hi >= len(names):
            bad = codes[(codes < 0) & (codes != null) | (codes >= len(names))][0]
            raise IndexError(f"label code {bad} outside the {len(names)} names")
        # checked here, Arrow's own check of every index (safe=True) is left out; with no
        # code at null, no mask is built
        indices = pa.array(ix) if lo > null else _nullable(ix, null)
    else:
        indices = pa.array(ix)
    return pa.DictionaryArray.from_arrays(indices, pa.array(names, pa.string()), safe=False)


def scores_table(sim: Simulation) -> pa.Table:
    parts = list(_score_parts(sim))
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts)


class TableParts:
    """A table too large to build whole: its row count and its parts, in order, built one at
    a time while it is written (:func:`credsim.store.writer.write_run`)."""

    def __init__(self, num_rows: int, parts: Callable[[], Iterator[pa.Table]]) -> None:
        self.num_rows = num_rows
        self.parts = parts


def scores_parts(sim: Simulation) -> TableParts:
    """The scores table as one part per snapshot (a national year holds billions of rows)."""
    return TableParts(sum(s[0].shape[0] for s in sim.snap), lambda: _score_parts(sim))


def _score_parts(sim: Simulation) -> Iterator[pa.Table]:
    snaps = sim.snap or [NO_SNAPSHOT]
    for snap in snaps:
        yield score_part(sim, snap)


NO_SNAPSHOT = (np.zeros(0, np.int32), 0, np.zeros(0), np.zeros(0, np.int16))
"""The part of a scores table without snapshots (its schema, no rows)."""


def score_part(
    sim: Simulation,
    snap: tuple[np.ndarray, int, np.ndarray, np.ndarray],
    *,
    stored: bool = False,
) -> pa.Table:
    """One snapshot ``(entities, day, scores, grades)`` as rows of the scores table (the
    grades as :func:`_label_maker` builds them)."""
    label = _label_maker("scores", stored)
    ents, day, score, grade = snap
    return pa.table(
        {
            "entity_id": pa.array(ents.astype(np.int32, copy=False)),
            "day": pa.array(np.full(ents.shape[0], day, np.int32)),
            "score": pa.array(score),
            "grade": label("grade", grade.astype(np.int32), sim.cs.grade_names or [""]),
        }
    )


def lists_table(sim: Simulation) -> pa.Table:
    e = sim.lists.eps
    lst = e.col("list")
    cs = sim.cs
    return pa.table(
        {
            "entity_id": pa.array(e.col("entity")),
            "list": _labels(lst, cs.lists or [""]),
            "kind": pa.array(
                np.where(cs.list_black[lst], "black", "red") if lst.size else [], pa.string()
            ),
            "start_day": pa.array(e.col("start")),
            "end_day": _nullable(e.col("end")),
            "rule": _labels(lst, cs.list_rule_text or [""]),
            "trigger_record": _nullable(e.col("record")),
            "end_reason": _labels(e.col("reason").astype(np.int32), END_REASONS),
            "published": pa.array(cs.list_published[lst] if lst.size else np.zeros(0, bool)),
        }
    )


def measures_table(sim: Simulation) -> pa.Table:
    e = sim.measures.eps
    m = e.col("measure")
    cs = sim.cs
    kinds: list[str] = [str(x.kind) for x in cs.scheme.measures.values()]
    rewards = np.array([x.reward for x in cs.scheme.measures.values()], bool)
    return pa.table(
        {
            "entity_id": pa.array(e.col("entity")),
            "measure": _labels(m, cs.measures or [""]),
            "kind": _labels(m, kinds or [""]),
            "reward": pa.array(rewards[m] if m.size else np.zeros(0, bool)),
            "start_day": pa.array(e.col("start")),
            "end_day": _nullable(e.col("end")),
            "cause": _labels(e.col("cause").astype(np.int32), CAUSES),
            "via_entity": pa.array(e.col("via")),
            "trigger": _labels(m, cs.m_trigger_text or [""]),
        }
    )


def friendships_table(sim: Simulation) -> pa.Table | None:
    pop = sim.pop
    if pop.friends is None or pop.friends_indptr is None:
        return None
    deg = np.diff(pop.friends_indptr)
    src = np.repeat(np.arange(pop.n_persons, dtype=np.int32), deg)
    return pa.table(
        {"entity_id": pa.array(src), "friend_id": pa.array(pop.friends.astype(np.int32))}
    )


def all_tables(
    sim: Simulation, records: bool = True, written: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Every table of the run store; without ``records`` when they were streamed out, and
    with the tables in ``written`` (written while the run went on) as they are given there."""
    done = dict(written or {})
    out: dict[str, Any] = {
        "population": done["population"] if "population" in done else population_table(sim)
    }
    if records:
        out["records"] = records_table(sim)
    if "scores" in done:
        out["scores"] = done["scores"]
    else:
        out["scores"] = scores_table(sim) if records else scores_parts(sim)
    out |= {"lists": lists_table(sim), "measures": measures_table(sim)}
    fr = done["friendships"] if "friendships" in done else friendships_table(sim)
    if fr is not None:
        out["friendships"] = fr
    return out
