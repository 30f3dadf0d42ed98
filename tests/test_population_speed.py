"""The fast population kernels equal the numpy formulations (and stdnum) they replaced.

The generator's output is pinned by digests taken from the numpy generator before its steps
moved to Numba: the kernels must reproduce it bit for bit, random draws included.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric, uscc

from credsim.population import Population, generate_population
from credsim.population import kernels as K
from credsim.population.identifiers import (
    ORG_BODY_ALPHABET,
    _ric_strings,
    _uscc_check_bytes,
    ric_codes,
    uscc_codes,
)
from credsim.schemes.loader import load_scheme
from test_population import SPEC

FIELDS = (
    "kind",
    "district",
    "group",
    "sex",
    "age",
    "birth_date",
    "income_decile",
    "household",
    "hh_start",
    "employer",
    "codes",
    "friends_indptr",
    "friends",
)


def digest(pop: Population) -> str:
    h = hashlib.sha256()
    for f in FIELDS:
        a = getattr(pop, f)
        if a is None:
            h.update(b"None")
        elif a.dtype == object:
            h.update("\n".join(a.tolist()).encode())
        else:
            h.update(a.dtype.str.encode() + np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def test_output_pinned_to_the_numpy_generator() -> None:
    """Digests of the pre-Numba generator's output. A deliberate change of the model (or of
    stdnum's GB/T 2260 data, which decides birthplace fallbacks) changes them: update then."""
    pop = generate_population(SPEC, 30_000, 5, with_friends=True)
    assert digest(pop) == "2cf91a1d9a8aa8c5"
    suzhou = load_scheme("suzhou").scheme.population
    pop = generate_population(suzhou, 30_000, np.random.SeedSequence(9), with_friends=False)
    assert digest(pop) == "ffb6bbde0779dab4"


def test_codes_written_on_a_helper_are_the_same() -> None:
    """The identity codes (and the birth dates they move) written on another thread while
    the friendships are made: the same population, complete once :meth:`complete` returns."""
    with ThreadPoolExecutor(1) as helper:
        pop = generate_population(SPEC, 30_000, 5, with_friends=True, helper=helper)
        assert pop.pending is not None
        pop.complete()
        assert pop.pending is None
    assert digest(pop) == "2cf91a1d9a8aa8c5"
    assert not pop.code_bytes.flags.writeable  # (Arrow columns are built over them)
    with ThreadPoolExecutor(1) as helper:  # codes and code_array wait themselves
        later = generate_population(SPEC, 2_000, 5, with_friends=False, helper=helper)
        assert (
            later.codes.tolist()
            == generate_population(SPEC, 2_000, 5, with_friends=False).codes.tolist()
        )
        assert later.pending is None


def test_an_error_writing_the_codes_is_raised_by_complete(monkeypatch) -> None:  # noqa: ANN001
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no codes")

    monkeypatch.setattr("credsim.population.identifiers.ric_code_bytes", broken)
    with ThreadPoolExecutor(1) as helper:
        pop = generate_population(SPEC, 1_000, 5, with_friends=False, helper=helper)
        with pytest.raises(RuntimeError, match="no codes"):
            pop.complete()


def test_codes_are_str_and_valid() -> None:
    pop = generate_population(SPEC, 5000, 2, with_friends=False)
    assert pop.codes.dtype == object and all(type(c) is str for c in pop.codes)
    assert all(ric.is_valid(c) for c in pop.codes[: pop.n_persons])
    assert all(uscc.is_valid(c) for c in pop.codes[pop.n_persons :])


ALPHABET = st.sampled_from(list(ORG_BODY_ALPHABET))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(ALPHABET, min_size=17, max_size=17), min_size=1, max_size=100))
def test_uscc_check_character_is_stdnums(prefixes: list[str]) -> None:
    pre = np.frombuffer("".join(prefixes).encode(), np.uint8).reshape(-1, 17)
    got = bytes(_uscc_check_bytes(pre)).decode()
    assert list(got) == [uscc.calc_check_digit(p) for p in prefixes]


def test_uscc_codes_valid_and_distinct() -> None:
    codes = uscc_codes(np.full(20_000, 320505), np.random.default_rng(4))
    assert all(uscc.is_valid(c) for c in codes) and len(set(codes)) == codes.shape[0]
    out = np.empty(20_000, dtype=object)
    assert uscc_codes(np.full(20_000, 320505), np.random.default_rng(4), out=out) is out
    assert np.array_equal(out, codes)


def test_ric_strings_chunks_and_empty() -> None:
    nums = np.random.default_rng(0).integers(10**16, 10**17, 300_000) * 10
    got = _ric_strings(nums)  # more than one chunk of rows
    want = [str(b) + ric.calc_check_digit(str(b) + "0") for b in (nums // 10).tolist()[::997]]
    assert got[::997].tolist() == want
    assert _ric_strings(np.zeros(0, np.int64)).shape == (0,)


def test_ric_codes_into_out() -> None:
    birth = np.full(1500, 10_000, np.int32)  # 1500 persons born the same day: overflow
    age = np.full(1500, 30, np.int16)
    sex = np.zeros(1500, np.int8)
    win_start, win_len = np.full(31, 9_900, np.int64), np.full(31, 365, np.int64)
    out = np.empty(1500, dtype=object)
    codes, moved = ric_codes(
        np.zeros(1500, np.int32), np.array([320505]), birth, sex, age, win_start, win_len, out=out
    )
    assert codes is out and moved is not birth and (birth == 10_000).all()
    assert len(set(out)) == 1500 and all(ric.is_valid(c) for c in out)
    assert np.bincount(moved - 10_000).tolist() == [500, 500, 500]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 5), min_size=1, max_size=40),
    st.integers(0, 2**32 - 1),
    st.integers(0, 3000),
)
def test_categorical_is_searchsorted(p: list[float], seed: int, size: int) -> None:
    cdf = np.cumsum(p)
    if cdf[-1] <= 0:
        return
    u = np.random.default_rng(seed).random(size)
    u[: min(size, 3)] = [0.0, 1 - 2**-53, 0.5][: min(size, 3)]
    want = np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), len(p) - 1)
    got = np.empty(size, np.int16)
    K.categorical(u, cdf, got)
    assert np.array_equal(got, want)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-2000, 2000), max_size=500))
def test_stable_rank_is_stable_argsort(keys: list[int]) -> None:
    key = np.array(keys, np.int16)
    want = np.empty(key.shape[0], np.int64)
    want[np.argsort(key, kind="stable")] = np.arange(key.shape[0])
    assert np.array_equal(K._stable_rank(key), want)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 400))
def test_age_placement_is_the_numpy_one(seed: int, n_hh: int) -> None:
    """Heads, spouses and members 2+ placed as numpy's rank pairing placed them."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 8, n_hh)
    hh_start = np.concatenate([[0], np.cumsum(sizes)])
    n = int(hh_start[-1])
    couples = np.flatnonzero(sizes >= 2)
    need = n_hh + couples.shape[0]
    ages = rng.integers(0, 90, n).astype(np.int16)
    ages[:need] = rng.integers(18, 90, need)
    z_h, z_s = rng.normal(0, 2, couples.shape[0]), rng.normal(0, 2, couples.shape[0])
    member = np.arange(n) - np.repeat(hh_start[:-1], sizes)
    gap = rng.integers(320, 656, n - need)

    adults = np.flatnonzero(ages >= 18)
    head, spouse = ages[adults[:n_hh]], ages[adults[n_hh:need]]
    rest = np.sort(np.concatenate([ages[adults[need:]], ages[ages < 18]]))
    want = np.empty(n, np.int16)
    want[hh_start[:-1]] = head
    paired = np.empty_like(spouse)
    kh = np.rint((head[couples] + z_h) * 16).astype(np.int16)
    ks = np.rint((spouse + z_s) * 16).astype(np.int16)
    paired[np.argsort(kh, kind="stable")] = spouse[np.argsort(ks, kind="stable")]
    want[hh_start[couples] + 1] = paired
    slots = np.flatnonzero(member >= 2)
    slot_hh = np.repeat(np.arange(n_hh), np.maximum(sizes - 2, 0))
    key = (head[slot_hh].astype(np.int32) * 16 - gap).astype(np.int16)
    want[slots[np.argsort(key, kind="stable")]] = rest

    h, s, pool = K.split_ages(ages, n_hh, need, 18, 90)
    assert np.array_equal(h, head) and np.array_equal(s, spouse)
    assert np.array_equal(np.repeat(np.arange(90), pool), rest)
    got = np.full(n, -7, np.int16)
    K.place_heads_and_spouses(got, hh_start, couples, h, s, z_h, z_s)
    K.place_rest(got, hh_start, h, gap, pool)
    assert np.array_equal(got, want)


def test_employers_are_the_numpy_ones() -> None:
    rng = np.random.default_rng(3)
    n, n_orgs, n_d = 20_000, 300, 5
    age = rng.integers(0, 90, n).astype(np.int16)
    district = rng.integers(0, n_d, n).astype(np.int16)
    org_district = rng.choice([0, 1, 3], n_orgs).astype(np.int16)  # districts 2, 4 have none
    u = rng.random(n)
    who = np.flatnonzero((age >= 18) & (age <= 64) & (u < 0.7))
    assert np.array_equal(K.employable(age, u, 0.7, 18, 64), who)
    u2, anywhere = rng.random(who.shape[0]), rng.integers(0, n_orgs, who.shape[0])
    order = np.argsort(org_district, kind="stable")
    count = np.bincount(org_district, minlength=n_d)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    c = count[district[who]]
    pos = start[district[who]] + np.floor(u2 * c).astype(np.int64)
    want = np.full(n, -1, np.int32)
    want[who] = n + np.where(c > 0, order[np.where(c > 0, pos, 0)], anywhere)
    got = np.full(n, -1, np.int32)
    K.assign_employers(who, district, org_district, n_d, u2, anywhere, got)
    assert np.array_equal(got, want)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 60), st.integers(0, 3000))
def test_friend_csr_is_the_sorted_unique_pairs(seed: int, n: int, m: int) -> None:
    """Self loops and repeats dropped (few persons and many pairs: many repeats)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, (2, m), dtype=np.int32)
    keep = a != b
    lo0, hi0 = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    edges = np.unique((lo0.astype(np.int64) << 32) | hi0)
    lo, hi = edges >> 32, edges & 0xFFFFFFFF
    want_ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(lo, minlength=n) + np.bincount(hi, minlength=n), out=want_ptr[1:])
    rows = [[] for _ in range(n)]
    for x, y in zip(lo.tolist(), hi.tolist(), strict=True):
        rows[x].append(y)
        rows[y].append(x)
    keys = K.pair_keys(a, b)
    assert np.array_equal(keys, (lo0.astype(np.int64) << 32) | hi0)
    indptr, friends = K.friend_csr(np.sort(keys), n)
    assert np.array_equal(indptr, want_ptr) and friends.dtype == np.int32
    assert friends.tolist() == [v for r in rows for v in sorted(r)]
