"""The records' growable columns (engine/records.py: Table.append), computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from credsim.engine.records import PENDING, RecordBuffer


def test_append_broadcasts_scalars_and_numbers_the_rows() -> None:
    buf = RecordBuffer(capacity=4)
    ids = buf.append(day=3, entity=np.array([5, 6, 7], np.int32), points=-2.5, truthful=True)
    assert ids.tolist() == [0, 1, 2] and ids.dtype == np.int64
    ids = buf.append(day=np.int32(4), entity=[8, 9], points=np.array([1.0, 2.0]))  # a list too
    assert ids.tolist() == [3, 4] and buf.n == 5
    assert buf.col("day").tolist() == [3, 3, 3, 4, 4]
    assert buf.col("entity").tolist() == [5, 6, 7, 8, 9]
    assert buf.col("points").tolist() == [-2.5, -2.5, -2.5, 1.0, 2.0]
    assert buf.col("truthful").tolist() == [True, True, True, False, False]  # the default
    assert buf.col("status").tolist() == [PENDING] * 5  # not given: the default
    assert buf.view("cause") is None  # a lazy column never given: no array


def test_append_of_scalars_only_adds_no_row() -> None:
    buf = RecordBuffer()
    assert buf.append(day=1, points=2.0).tolist() == [] and buf.n == 0


def test_a_lazy_column_gets_an_array_only_for_a_value_other_than_its_default() -> None:
    buf = RecordBuffer()
    buf.append(day=np.zeros(2, np.int32), cause=np.array([-1, -1]))  # only the default
    assert buf.view("cause") is None
    buf.append(day=np.ones(2, np.int32), cause=np.array([0, -1]))
    assert buf.col("cause").tolist() == [-1, -1, 0, -1]


def test_append_refuses_unequal_lengths_and_unknown_columns_and_adds_nothing() -> None:
    buf = RecordBuffer()
    with pytest.raises(ValueError, match=r"different lengths: 3 and 2 \(entity\)"):
        buf.append(day=np.zeros(3, np.int32), entity=np.zeros(2, np.int32))
    with pytest.raises(KeyError, match=r"unknown record columns: \['colour'\]"):
        buf.append(day=np.zeros(3, np.int32), colour=np.zeros(3))
    assert buf.n == 0
