"""Events files read as a whole: readable, UTF-8 CSV or real Parquet, the right columns.

The first of the two steps of an import (:mod:`credsim.engine.events`): a file that cannot be
used as a whole raises :class:`~credsim.errors.CredsimError` naming the file and what was
expected; what it returns is every non-blank row as text, for the row-level checks.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from credsim.errors import CredsimError

REQUIRED = ("entity", "day", "behaviour")
OPTIONAL = ("note",)
COLUMNS = REQUIRED + OPTIONAL
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
_EXPECTED = "a header row with the columns entity, day, behaviour and optionally note"


@dataclass
class EventsFile:
    """The rows of an events file as text, after the file-level checks."""

    path: Path
    sha256: str
    rows: np.ndarray  # int64 1-based data row numbers of the non-blank rows
    text: dict[str, pa.Array]  # column -> string array (null: absent), raw as in the file
    width: list[str | None]  # per row: a problem with its number of fields (CSV), or None


def _fail(path: Path, problem: str) -> CredsimError:
    return CredsimError(f"events file {path}: {problem}")


def _np(a: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(a.to_numpy(zero_copy_only=False))


def _strip(a: pa.Array) -> pa.Array:
    return pc.utf8_trim_whitespace(a.fill_null(""))


def _names(names: list[str], limit: int = 6) -> str:
    shown = [repr(n[:40]) if n else "an unnamed column" for n in names[:limit]]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(shown) + more


def _columns(path: Path, header: list[str]) -> dict[str, int]:
    """Map each expected column to its position in ``header``; raise on a wrong header."""
    names = [h.strip().lower() for h in header]
    dupes = sorted({n for n in names if names.count(n) > 1})
    missing = [c for c in REQUIRED if c not in names]
    extra = [n for n in names if n not in COLUMNS]
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if extra:
        problems.append(f"unexpected column(s) {_names(extra)}")
    if dupes:
        problems.append(f"duplicate column(s) {_names(dupes)}")
    if problems:
        hint = ""
        if len(header) == 1 and any(s in header[0] for s in ";\t|"):
            hint = " (columns must be separated by commas)"
        raise _fail(path, f"{'; '.join(problems)}; expected {_EXPECTED}{hint}")
    return {n: i for i, n in enumerate(names)}


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise _fail(path, "no such file")
    if not path.is_file():
        raise _fail(path, "not a file (expected a CSV or Parquet file)")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"cannot be read: {exc.strerror or exc}") from exc


def read_events_file(path: str | Path) -> EventsFile:
    """Read an events file and check it as a whole; raise :class:`CredsimError` if it is not a
    readable UTF-8 CSV or Parquet file with the expected columns and at least one row."""
    p = Path(path)
    data = _read_bytes(p)
    if not data:
        raise _fail(p, f"the file is empty; expected {_EXPECTED}")
    digest = hashlib.sha256(data).hexdigest()
    is_parquet = p.suffix.lower() in PARQUET_SUFFIXES or (
        data[:4] == b"PAR1" and data[-4:] == b"PAR1" and len(data) > 8
    )
    rows, text, width = _read_parquet(p, data) if is_parquet else _read_csv(p, data)
    if rows.shape[0] == 0:
        raise _fail(p, f"no event rows (every row is blank); expected {_EXPECTED} and rows below")
    return EventsFile(p, digest, rows, text, width)


def _decode(path: Path, data: bytes) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise _fail(path, "is UTF-16 text; expected a CSV file in UTF-8 (save as 'CSV UTF-8')")
    if data[:4] == b"PK\x03\x04":
        raise _fail(
            path, "is a zip archive (an Excel workbook?); expected a CSV file in UTF-8 or Parquet"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(
            path,
            f"is not UTF-8 text (invalid byte at offset {exc.start}); expected a CSV file in "
            "UTF-8 or a Parquet file",
        ) from exc


def _read_csv(path: Path, data: bytes) -> tuple[np.ndarray, dict[str, pa.Array], list[str | None]]:
    text = _decode(path, data)
    if "\x00" in text:
        raise _fail(path, "holds NUL characters, so it is not a text (CSV) file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    header: list[str] | None = None
    w = 0
    number = 0
    rows: list[int] = []
    recs: list[list[str | None]] = []
    width: list[str | None] = []
    try:
        for rec in reader:
            if header is None:
                if "".join(rec).strip():
                    header = rec
                    cols = _columns(path, header)
                    w = len(header)
                continue
            number += 1
            if not "".join(rec).strip():
                continue  # a blank row: not read, but it keeps its number
            rows.append(number)
            if len(rec) == w:
                recs.append(rec)  # type: ignore[arg-type]
                width.append(None)
            else:
                recs.append([*rec[:w], *([None] * (w - len(rec)))])
                width.append(f"row has {len(rec)} fields, the header has {w}")
    except csv.Error as exc:
        raise _fail(path, f"is not valid CSV near data row {number + 1}: {exc}") from exc
    if header is None:
        raise _fail(path, f"holds only blank lines; expected {_EXPECTED}")
    cols_text = {
        c: pa.array([r[cols[c]] for r in recs], pa.string())
        if c in cols
        else pa.nulls(len(recs), pa.string())
        for c in COLUMNS
    }
    return np.array(rows, np.int64), cols_text, width


def _as_text(path: Path, name: str, col: pa.ChunkedArray) -> pa.Array:
    """A Parquet column as strings: text as is, integers in digits, whole floats as integers."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    if (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_integer(t)
        or (pa.types.is_decimal(t))
    ):
        return pc.cast(arr, pa.string())
    if pa.types.is_floating(t):
        v = arr.to_numpy(zero_copy_only=False).astype(np.float64)
        out = [
            None if isnan else (str(int(x)) if np.isfinite(x) and x == np.floor(x) else repr(x))
            for x, isnan in zip(v.tolist(), _np(arr.is_null()).tolist(), strict=True)
        ]
        return pa.array(out, pa.string())
    raise _fail(path, f"column {name!r} holds {t}; expected text or numbers")


def _read_parquet(
    path: Path, data: bytes
) -> tuple[np.ndarray, dict[str, pa.Array], list[str | None]]:
    """The rows of a Parquet file; any failure to decode it (a damaged footer, page, column name
    or string) is the file's fault and becomes a :class:`CredsimError`."""
    try:
        table = pq.read_table(pa.BufferReader(data))
        names = [str(n) for n in table.column_names]
        cols = _columns(path, names)
        text = {c: _as_text(path, c, table.column(cols[c])) for c in COLUMNS if c in cols}
        for a in text.values():
            a.validate(full=True)  # e.g. strings that are not UTF-8
        if "note" not in text:
            text["note"] = pa.nulls(table.num_rows, pa.string())
        blank = np.ones(table.num_rows, bool)
        for a in text.values():
            blank &= _np(pc.equal(_strip(a), ""))
    except CredsimError:
        raise
    except Exception as exc:  # anything else: the file cannot be decoded
        raise _fail(path, f"is not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
    keep = np.nonzero(~blank)[0]
    mask = pa.array(~blank)
    text = {c: pc.filter(a, mask) for c, a in text.items()}
    return (keep + 1).astype(np.int64), text, [None] * keep.shape[0]
