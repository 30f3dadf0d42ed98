"""Identity codes kept as bytes: the population holds ``(n, 18)`` ASCII rows, the same codes the
str functions (``ric_codes``, ``uscc_codes``) make from the same inputs; ``Population.codes``
and the Arrow ``code`` column are built from those bytes (the column without a copy)."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from stdnum.cn import ric, uscc

from credsim.api import simulate
from credsim.engine.output import population_table
from credsim.population import Population, codetext, generate_population
from credsim.population import identifiers as ids
from credsim.population.types import codes_arrow
from credsim.schemes.loader import load_scheme
from test_population import SPEC
from tiny import BASE, load, n, tiny_scheme

REFERENCE = Path(__file__).parent.parent / "benchmarks" / "reference.yaml"


def decoded(code_bytes: np.ndarray) -> list[str]:
    """Each row as a str, one row at a time (independent of the code under test)."""
    return [bytes(row).decode("ascii") for row in code_bytes]


def spied_population(
    monkeypatch: pytest.MonkeyPatch, spec: Any, persons: int, seed: Any
) -> tuple[Population, list[str]]:
    """``generate_population`` with the byte functions spied on: each call also runs the str
    function on the same inputs (a copy of the same random state), which gives the codes the
    generator made before it kept bytes."""
    want: dict[str, list[str]] = {}
    real_ric, real_uscc = ids.ric_code_bytes, ids.uscc_code_bytes

    def ric_spy(*args: np.ndarray, out: np.ndarray | None = None) -> Any:
        codes, birth = ids.ric_codes(*(np.array(a, copy=True) for a in args))
        got, got_birth = real_ric(*args, out=out)
        assert np.array_equal(got_birth, birth)
        want["ric"] = codes.tolist()
        return got, got_birth

    def uscc_spy(d: np.ndarray, rng: np.random.Generator, out: np.ndarray | None = None) -> Any:
        want["uscc"] = ids.uscc_codes(d.copy(), copy.deepcopy(rng)).tolist()
        return real_uscc(d, rng, out=out)

    monkeypatch.setattr(ids, "ric_code_bytes", ric_spy)
    monkeypatch.setattr(ids, "uscc_code_bytes", uscc_spy)
    pop = generate_population(spec, persons, seed, with_friends=False)
    monkeypatch.undo()
    return pop, want["ric"] + want["uscc"]


CASES = [
    ("test", lambda: SPEC, 3000, 5),
    ("test", lambda: SPEC, 200_000, 11),  # more than one chunk of rows
    ("suzhou", lambda: load_scheme("suzhou").scheme.population, 30_000, 9),
    ("reference", lambda: load_scheme(REFERENCE).scheme.population, 20_000, 1),
]


@pytest.mark.parametrize(("name", "spec", "persons", "seed"), CASES)
def test_bytes_are_the_str_paths_codes(
    monkeypatch: pytest.MonkeyPatch, name: str, spec: Any, persons: int, seed: int
) -> None:
    pop, want = spied_population(monkeypatch, spec(), persons, seed)
    assert len(want) == pop.n
    cb = pop.code_bytes
    assert cb.dtype == np.uint8 and cb.shape == (pop.n, 18) and cb.flags.c_contiguous
    assert not cb.flags.writeable  # the Arrow column is built over this memory
    assert decoded(cb) == want
    # the spy changed nothing: the same population without it
    plain = generate_population(spec(), persons, seed, with_friends=False)
    assert np.array_equal(plain.code_bytes, cb)
    for i in range(0, pop.n_persons, max(1, pop.n_persons // 500)):
        assert ric.is_valid(want[i])
    assert all(uscc.is_valid(c) for c in want[pop.n_persons :])


def test_codes_property_is_todays_str_array_made_once() -> None:
    pop = generate_population(SPEC, 3000, 5, with_friends=False)
    assert "codes" not in vars(pop)  # not made until asked for
    codes = pop.codes
    assert codes.dtype == object and codes.shape == (pop.n,)
    assert all(type(c) is str for c in codes)
    assert codes.tolist() == decoded(pop.code_bytes)
    assert pop.codes is codes  # cached
    again = pickle.loads(pickle.dumps(pop))
    assert np.array_equal(again.code_bytes, pop.code_bytes)
    assert again.codes.tolist() == codes.tolist()


def test_byte_functions_equal_str_functions_directly() -> None:
    d = np.random.default_rng(0).choice([320505, 110101, 440300], 5000)
    got = ids.uscc_code_bytes(d, np.random.default_rng(4))
    assert decoded(got) == ids.uscc_codes(d, np.random.default_rng(4)).tolist()
    out = np.zeros((5000, 18), np.uint8)
    assert ids.uscc_code_bytes(d, np.random.default_rng(4), out=out) is out
    assert np.array_equal(out, got)
    empty = ids.uscc_code_bytes(np.zeros(0, np.int64), np.random.default_rng(4))
    assert empty.shape == (0, 18)
    with pytest.raises(ValueError, match="shape"):
        ids.uscc_code_bytes(d, np.random.default_rng(4), out=np.zeros((5000, 19), np.uint8))


def test_code_strings_round_trip() -> None:
    nums = np.random.default_rng(3).integers(10**16, 10**17, 150_000) * 10
    strs = ids._ric_strings(nums)  # noqa: SLF001
    rows = np.frombuffer("".join(strs.tolist()).encode(), np.uint8).reshape(-1, 18)
    back = codetext.code_strings(rows)
    assert back.dtype == object and back.tolist() == strs.tolist()
    assert codetext.code_strings(np.zeros((0, 18), np.uint8)).shape == (0,)


@pytest.mark.parametrize(
    "bad",
    [b"11010119900307001", b"1101011990030700112", b"1101011990030700x\n", b"\n" * 19],
    ids=["short", "long", "lower-case", "empty"],
)
def test_rows_that_are_not_18_characters_are_refused(bad: bytes) -> None:
    good = b"110101199003070011\n"

    def fill(s: int, e: int, buf: np.ndarray) -> None:
        text = (good * (e - s - 1) + bad)[: (e - s) * 19]
        text += b"\n" * ((e - s) * 19 - len(text))
        buf[: e - s] = np.frombuffer(text, np.uint8).reshape(-1, 19)

    with pytest.raises(AssertionError, match="18 characters"):
        codetext._code_bytes(4, 19, fill)  # noqa: SLF001


@pytest.mark.parametrize("persons", [1, 3000])
def test_arrow_column_is_todays_over_the_same_memory(persons: int) -> None:
    pop = generate_population(SPEC, persons, 7, with_friends=False)
    col = pop.code_array()
    today = pa.array(decoded(pop.code_bytes), pa.string())
    assert isinstance(col, pa.StringArray) and col.equals(today)
    col.validate(full=True)
    assert col.buffers()[2].address == pop.code_bytes.ctypes.data  # no copy of the bytes
    chunked = codes_arrow(pop.code_bytes, max_rows=7)
    assert isinstance(chunked, pa.ChunkedArray) or pop.n <= 7
    assert chunked.equals(today if pop.n <= 7 else pa.chunked_array([today]))
    empty = codes_arrow(np.zeros((0, 18), np.uint8))
    assert empty.equals(pa.array([], pa.string()))


def test_population_table_code_column_as_before() -> None:
    pop = generate_population(SPEC, 3000, 7, with_friends=False)
    sim = SimpleNamespace(pop=pop, enrolled=np.ones(pop.n, bool))
    table = population_table(sim)  # type: ignore[arg-type]
    assert "codes" not in vars(pop)  # no Python strings made
    i = table.schema.get_field_index("code")
    before = table.set_column(i, "code", pa.array(pop.codes.tolist(), pa.string()))
    assert table.equals(before)


def test_a_run_with_imported_codes_makes_no_str_codes(tmp_path: Path) -> None:
    scheme = tiny_scheme(
        population={**copy.deepcopy(BASE["population"]), "organizations_per_1000": n(100)}
    )
    loaded = load(scheme)
    first = simulate(loaded, 20, 10, 0)
    codes = first.tables["population"].column("code").to_pylist()
    assert "codes" not in vars(first.simulation.pop)
    path = tmp_path / "ev.csv"
    path.write_text(f"entity,day,behaviour,note\n{codes[3]},2,speeding,\n{codes[20]},4,speeding,\n")
    result = simulate(loaded, 20, 10, 0, events=path)
    assert "codes" not in vars(result.simulation.pop)
    assert result.tables["events"].column("entity_id").to_pylist() == [3, 20]
    assert result.tables["quarantine"].num_rows == 0
