"""The fixed schemas of a run folder's tables, and :func:`conform` to hold tables to them.

The engine hands the writer pyarrow tables; every reader (``query``, ``summary``, ``explain``)
relies on exactly these columns and types. :func:`conform` is the single gate between the two:
it reorders columns, casts compatible types (e.g. int64 ids to int32, dictionary strings to
plain strings) and fails loudly, naming the table and column, on anything else - a missing or
extra column, a lossy cast, a null where the contract forbids one, or an unknown category.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from credsim.engine.records import BASIS, ERRORS, STATUS
from credsim.errors import RunStoreError
from credsim.schemes.compile import ALL_CHANNELS
from credsim.store.dictcodes import used_values


def _f(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


POPULATION = pa.schema(
    [
        _f("entity_id", pa.int32()),
        _f("kind", pa.string()),
        _f("code", pa.string()),
        _f("district", pa.string()),
        _f("group", pa.string(), True),
        _f("sex", pa.string(), True),
        _f("age", pa.int16(), True),
        _f("birth_date", pa.date32(), True),
        _f("income_decile", pa.int8(), True),
        _f("household_id", pa.int32(), True),
        _f("employer_id", pa.int32(), True),
        _f("enrolled", pa.bool_()),
    ]
)

RECORDS = pa.schema(
    [
        _f("record_id", pa.int64()),
        _f("day", pa.int32()),
        _f("behaviour_day", pa.int32(), True),
        _f("entity_id", pa.int32()),
        _f("actor_id", pa.int32(), True),
        _f("item", pa.string()),
        _f("behaviour", pa.string(), True),
        _f("channel", pa.string()),
        _f("source_agency", pa.string(), True),
        _f("points", pa.float64()),
        _f("applied", pa.float64()),
        _f("status", pa.string()),
        _f("truthful", pa.bool_()),
        _f("basis", pa.string()),
        _f("error", pa.string(), True),
        _f("cause_record", pa.int64(), True),
        _f("review_day", pa.int32(), True),
        _f("appeal_day", pa.int32(), True),
        _f("appealed", pa.bool_()),
        _f("import_row", pa.int32(), True),  # data row of an imported event (run --events)
        _f("excused", pa.bool_(), True),  # the behaviour had a legitimate excuse (context)
        # Computed by the writer (credsim.store.ledger), never by the engine: the first 4 bytes
        # (the tag) of the record's link in the hash chain (credsim-ledger-v6: sha256(the
        # canonical row's first 64 bytes || previous digest || its rest)); 8 in runs sealed
        # with credsim-ledger-v3 to -v5, all 32 before. Always the last column.
        _f("digest", pa.binary(4)),
    ]
)

DIGEST_COLUMN = "digest"
"""The records column the writer adds: each record's digest in the hash chain (its tag)."""

RECORDS_CONTENT = pa.schema([f for f in RECORDS if f.name != DIGEST_COLUMN])
"""The records schema without ``digest``: what the engine produces and the chain covers."""

SCORES = pa.schema(
    [
        _f("entity_id", pa.int32()),
        _f("day", pa.int32()),
        _f("score", pa.float64()),
        _f("grade", pa.string(), True),
    ]
)

LISTS = pa.schema(
    [
        _f("entity_id", pa.int32()),
        _f("list", pa.string()),
        _f("kind", pa.string()),
        _f("start_day", pa.int32()),
        _f("end_day", pa.int32(), True),
        _f("rule", pa.string()),
        _f("trigger_record", pa.int64(), True),
        _f("end_reason", pa.string(), True),
        _f("published", pa.bool_()),
    ]
)

MEASURES = pa.schema(
    [
        _f("entity_id", pa.int32()),
        _f("measure", pa.string()),
        _f("kind", pa.string()),
        _f("reward", pa.bool_()),
        _f("start_day", pa.int32()),
        _f("end_day", pa.int32(), True),
        _f("cause", pa.string()),
        _f("via_entity", pa.int32()),
        _f("trigger", pa.string()),
    ]
)

FRIENDSHIPS = pa.schema(
    [
        _f("entity_id", pa.int32()),
        _f("friend_id", pa.int32()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "population": POPULATION,
    "records": RECORDS,
    "scores": SCORES,
    "lists": LISTS,
    "measures": MEASURES,
    "friendships": FRIENDSHIPS,
}
"""Every table a run folder may hold, in the order they are written."""

REQUIRED_TABLES: tuple[str, ...] = ("population", "records", "scores", "lists", "measures")
"""Tables every run has (possibly with zero rows); ``friendships`` is optional."""

EVENTS = pa.schema(
    [
        _f("row", pa.int64()),
        _f("entity_id", pa.int32()),
        _f("day", pa.int32()),
        _f("behaviour", pa.string(), True),
        _f("item", pa.string()),
        _f("note", pa.string(), True),
        _f("record_id", pa.int64()),
    ]
)

QUARANTINE = pa.schema(
    [
        _f("row", pa.int64()),
        _f("entity", pa.string(), True),
        _f("day", pa.string(), True),
        _f("behaviour", pa.string(), True),
        _f("note", pa.string(), True),
        _f("reason", pa.string()),
    ]
)

IMPORT_TABLES: dict[str, pa.Schema] = {"events": EVENTS, "quarantine": QUARANTINE}
"""Optional tables of a run made with ``--events`` (engine/events.py), written after
:data:`SCHEMAS`: the accepted rows of the events file with the record each became, and the
rejected rows as given with their reasons. ``row`` is the 1-based data row (1: first after the
header)."""
ALL_TABLES: dict[str, pa.Schema] = {**SCHEMAS, **IMPORT_TABLES}
"""Every table a run folder can hold, in the canonical order."""

OPTIONAL_COLUMNS: frozenset[tuple[str, str]] = frozenset(
    {("records", "import_row"), ("records", "excused")}
)
"""Nullable columns that :func:`conform` fills with nulls when a table lacks them."""

ALLOWED: dict[tuple[str, str], frozenset[str]] = {
    ("population", "kind"): frozenset({"person", "organization"}),
    ("population", "sex"): frozenset({"female", "male"}),
    ("records", "channel"): frozenset(ALL_CHANNELS),
    ("records", "status"): frozenset(STATUS),
    ("records", "basis"): frozenset(BASIS),
    ("records", "error"): frozenset(ERRORS),
    ("lists", "kind"): frozenset({"black", "red"}),
    ("lists", "end_reason"): frozenset(
        {
            "expired",
            "repaired",
            "clean_period",
            "overturned",
            "condition_ended",
        }
    ),
    ("measures", "cause"): frozenset({"own", "association"}),
}
"""The closed vocabularies of categorical columns (nulls are checked separately)."""


def conform(name: str, table: pa.Table, *, dictionaries: bool = False) -> pa.Table:
    """Return ``table`` with exactly the columns, order and types of the schema ``name``.

    Raises :class:`~credsim.errors.RunStoreError` naming the table and column when a column is
    missing or extra, cannot be cast without loss, holds nulls where none are allowed, or holds
    a category outside :data:`ALLOWED`. A records table may lack the ``digest`` column (the
    writer computes it); it is then conformed to :data:`RECORDS_CONTENT`.

    ``dictionaries``: a dictionary-encoded column of the schema's value type stays encoded (the
    same values; checked the same way), and so does its field in the returned table's schema.
    """
    if name not in SCHEMAS and name not in IMPORT_TABLES:
        raise RunStoreError(f"unknown table {name!r}; a run holds {', '.join(SCHEMAS)}")
    if not isinstance(table, pa.Table):
        raise RunStoreError(f"table {name!r} must be a pyarrow.Table, not {type(table).__name__}")
    schema = SCHEMAS.get(name) or IMPORT_TABLES[name]
    have = table.column_names
    if name == "records" and DIGEST_COLUMN not in have:
        schema = RECORDS_CONTENT  # the writer adds the digest column when it seals the run
    for f in schema:
        if (name, f.name) in OPTIONAL_COLUMNS and f.name not in have:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    have = table.column_names
    missing = [f.name for f in schema if f.name not in have]
    extra = [c for c in have if c not in schema.names]
    dupes = sorted({c for c in have if have.count(c) > 1})
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected column(s) {', '.join(extra)}")
    if dupes:
        problems.append(f"duplicate column(s) {', '.join(dupes)}")
    if problems:
        raise RunStoreError(f"table {name!r}: {'; '.join(problems)} (expected: {schema.names})")
    columns = []
    fields = []
    for field in schema:
        column = table.column(field.name)
        encoded = (
            dictionaries
            and pa.types.is_dictionary(column.type)
            and column.type.value_type == field.type
        )
        if encoded:
            fields.append(pa.field(field.name, column.type, field.nullable, field.metadata))
        else:
            fields.append(field)
        if column.type != field.type and not encoded:
            try:
                column = pc.cast(column, field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise RunStoreError(
                    f"table {name!r}, column {field.name!r}: cannot convert {column.type} "
                    f"to {field.type}: {exc}"
                ) from exc
        if not field.nullable and column.null_count:
            raise RunStoreError(
                f"table {name!r}, column {field.name!r}: {column.null_count} null value(s) "
                "in a column that must always be filled"
            )
        allowed = ALLOWED.get((name, field.name))
        if allowed is not None and len(column):
            values = used_values(column) if encoded else pc.unique(column.drop_null()).to_pylist()
            unknown = sorted(v for v in values if v not in allowed)
            if unknown:
                raise RunStoreError(
                    f"table {name!r}, column {field.name!r}: unknown value(s) {unknown}; "
                    f"allowed: {sorted(allowed)}"
                )
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=schema.metadata))
