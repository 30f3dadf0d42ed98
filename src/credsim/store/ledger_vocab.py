"""The label vocabularies of the packed ledger rows (``credsim-ledger-v2`` to ``-v4``): a
vocabulary is the run's labels for a string column (the manifest's ``labels``: the engine's
names, fixed before the first record, the same whether the records are streamed or written at
once), then any value the records hold that the labels lack, sorted (ascending UTF-8 bytes).
See :mod:`credsim.store.ledger_packed` for the rows and docs/integrity.md for every byte."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from credsim.errors import RunStoreError
from credsim.store.ledger_chain import _as_type


def labels_of(manifest: Mapping[str, Any]) -> dict[str, list[str]]:
    """The manifest's ``labels`` (string column: its names in code order), or {} when it has
    none. Refuses anything but a mapping of column names to lists of strings."""
    given = manifest.get("labels")
    if given is None:
        return {}
    if not isinstance(given, Mapping) or not all(
        isinstance(v, list | tuple) and all(isinstance(w, str) for w in v) for v in given.values()
    ):
        raise RunStoreError(
            "manifest 'labels' must map each label column to a list of its names (strings)"
        )
    return {str(k): list(v) for k, v in given.items()}


def _distinct(names: Iterable[str]) -> list[str]:
    """``names`` without repeats, each where it first occurs."""
    return list(dict.fromkeys(names))


def _values_outside(column: pa.ChunkedArray | pa.Array, known: set[str]) -> set[str]:
    """The values of a string column (nulls aside) that are not in ``known``. Cheap for label
    columns given as dictionaries over known names (as the engine builds them): their rows are
    not looked at unless their names hold an unknown value."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out: set[str] = set()
    for arr in chunks:
        if len(arr) == arr.null_count:
            continue
        if pa.types.is_dictionary(arr.type):
            words = _as_type(arr.dictionary, pa.string()).to_pylist()
            if set(words) <= known:
                continue
            ix = arr.indices.drop_null().to_numpy(zero_copy_only=False)
            used = np.bincount(ix, minlength=len(words)) if len(ix) else np.zeros(0, np.int64)
            out.update(words[i] for i in np.flatnonzero(used) if words[i] not in known)
            continue
        uniq = pc.unique(_as_type(arr, pa.string()).drop_null()).to_pylist()
        out.update(w for w in uniq if w not in known)
    return out


def vocabularies(
    labels: Mapping[str, Sequence[str]], table: pa.Table | None, columns: Sequence[str]
) -> dict[str, list[str]]:
    """The vocabulary of each string column in ``columns``: its ``labels`` (repeats dropped),
    then the values ``table`` holds that they lack, in ascending order of their UTF-8 bytes
    (Python's order of ``str``, code point by code point: the same)."""
    out = {}
    for name in columns:
        given = _distinct(labels.get(name, ()))
        unseen: set[str] = set()
        if table is not None and name in table.column_names:
            unseen = _values_outside(table.column(name), set(given))
        out[name] = given + sorted(unseen)
    return out


def check_vocabulary(
    vocabulary: Any, labels: Sequence[str] | None, *, order: bool = True
) -> str | None:
    """Why ``vocabulary`` cannot be one :func:`vocabularies` gives for these ``labels`` (None
    when it can): what ``verify`` uses to name an altered ``ledger.vocabularies``. Without
    ``order`` (the labels are not known) only that it lists distinct strings."""
    if not isinstance(vocabulary, list) or not all(isinstance(w, str) for w in vocabulary):
        return "not a list of strings"
    if len(set(vocabulary)) != len(vocabulary):
        return "a value listed twice"
    if not order:
        return None
    given = _distinct(labels or ())
    if vocabulary[: len(given)] != given:
        return "does not start with the run's labels"
    rest = vocabulary[len(given) :]
    if rest != sorted(rest):
        return "values beyond the labels out of order"
    return None
