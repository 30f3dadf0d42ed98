"""Tests of the synthetic population generator and its identifiers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from stdnum.cn import ric, uscc

from credsim.population import ORGANIZATION, PERSON, Population, generate_population
from credsim.population.identifiers import (
    DAY0,
    _org_check_bytes,
    birthplace_code,
    org_code_bodies,
    org_code_check_char,
    ric_codes,
)
from credsim.schemes.model import PopulationSpec

EPOCH = dt.date(1970, 1, 1)


def num(v: float) -> dict:
    return {"value": v, "assumption": "test"}


def make_spec(**over: object) -> PopulationSpec:
    data: dict = {
        "size": num(13_000_000),
        "groups": {
            "local": {"name": "Local hukou", "share": num(0.6)},
            "migrant": {"name": "Migrant", "share": num(0.4), "area_codes": ["510100", "410100"]},
        },
        "districts": {
            "gusu": {"name": "Gusu", "code": "320508", "share": num(0.3)},
            "kunshan": {"name": "Kunshan", "code": "320583", "share": num(0.7)},
        },
        "age_bands": [
            {"min": num(0), "max": num(17), "share": num(0.18)},
            {"min": num(18), "max": num(59), "share": num(0.62)},
            {"min": num(60), "max": num(90), "share": num(0.20)},
        ],
        "male_share": num(0.51),
        "household_size_mean": num(2.6),
        "organizations_per_1000": num(20),
        "friends_mean": num(6),
        "employment_rate": num(0.7),
    }
    data.update(over)
    return PopulationSpec.model_validate(data)


SPEC = make_spec()
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


@pytest.fixture(scope="module")
def pop() -> Population:
    return generate_population(SPEC, 3000, 7, with_friends=True)


@pytest.fixture(scope="module")
def big() -> Population:
    return generate_population(SPEC, 200_000, 11, with_friends=False)


def to_date(days: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(days))


def age_on_day0(born: dt.date) -> int:
    return 2019 - born.year - ((born.month, born.day) > (1, 1))


# --------------------------------------------------------------------------------------------
# Organisation code and birthplace helpers


@pytest.mark.parametrize("body, check", [("77604965", "3"), ("MA5CJQ4N", "5"), ("07283195", "4")])
def test_org_code_check_known_codes(body: str, check: str) -> None:
    assert org_code_check_char(body) == check


@pytest.mark.parametrize("code", ["91350200776049653A", "91440101MA5CJQ4N59", "913502000728319549"])
def test_known_usccs_contain_a_valid_org_code(code: str) -> None:
    assert uscc.is_valid(code)
    assert org_code_check_char(code[8:16]) == code[16]


def test_vectorised_org_check_matches_scalar() -> None:
    body = org_code_bodies(np.random.default_rng(0), 2000)
    checks = _org_check_bytes(body)
    for row, c in zip(body, checks, strict=True):
        assert org_code_check_char(row.tobytes().decode()) == chr(c)
    assert len({row.tobytes() for row in body}) == 2000  # distinct


def test_birthplace_fallbacks() -> None:
    assert birthplace_code(320508, 2015) == 320508  # Gusu exists from 2012
    assert birthplace_code(320508, 2000) == 320500  # before: prefecture (Suzhou)
    assert birthplace_code(131002, 1980) == 130000  # county and prefecture too new: province
    assert birthplace_code(510100, 1950) == 510100


def test_ric_sequence_overflow_moves_birth_dates() -> None:
    # 1200 women born on 1 January 1989 (age 30, the last day of their window) in one place:
    # only 500 even sequence numbers exist, so 700 must move (wrapping to 2 January 1988).
    n = 1200
    age = np.full(n, 30, dtype=np.int16)
    win_start = np.zeros(31, dtype=np.int64)
    win_len = np.ones(31, dtype=np.int64)
    win_start[30] = (dt.date(1988, 1, 2) - EPOCH).days
    win_len[30] = 366
    birth = np.full(n, (dt.date(1989, 1, 1) - EPOCH).days, dtype=np.int64)
    codes, moved = ric_codes(
        np.zeros(n, dtype=np.int32),
        np.array([320583]),
        birth,
        np.zeros(n, dtype=np.int8),
        age,
        win_start,
        win_len,
    )
    assert len(set(codes)) == n
    assert all(ric.is_valid(c) and int(c[16]) % 2 == 0 for c in codes)
    days = sorted(set(moved.tolist()))
    assert len(days) == 3 and (np.bincount(np.unique(moved, return_inverse=True)[1]) <= 500).all()
    assert all(age_on_day0(to_date(d)) == 30 for d in days)
    assert birth[0] == (dt.date(1989, 1, 1) - EPOCH).days  # the input is not modified


# --------------------------------------------------------------------------------------------
# Structure of a small population


def test_shapes_and_dtypes(pop: Population) -> None:
    n = pop.n
    assert pop.n_persons == 3000 and pop.n_orgs == 60 and n == 3060
    expect = {
        "kind": np.int8,
        "district": np.int16,
        "group": np.int16,
        "sex": np.int8,
        "age": np.int16,
        "birth_date": np.int32,
        "income_decile": np.int8,
        "household": np.int32,
        "employer": np.int32,
        "codes": object,
    }
    for name, dtype in expect.items():
        arr = getattr(pop, name)
        assert arr.shape == (n,) and arr.dtype == dtype, name
    assert pop.hh_start.dtype == np.int64
    assert pop.friends_indptr.dtype == np.int64 and pop.friends_indptr.shape == (3001,)
    assert pop.friends.dtype == np.int32
    assert pop.district_ids == ["gusu", "kunshan"] and pop.group_ids == ["local", "migrant"]


def test_organisation_fields(pop: Population) -> None:
    p, o = slice(0, pop.n_persons), slice(pop.n_persons, pop.n)
    assert (pop.kind[p] == PERSON).all() and (pop.kind[o] == ORGANIZATION).all()
    for name, fill in [
        ("group", -1),
        ("sex", -1),
        ("age", -1),
        ("birth_date", -1),
        ("income_decile", 0),
        ("household", -1),
        ("employer", -1),
    ]:
        assert (getattr(pop, name)[o] == fill).all(), name
    assert ((pop.district[o] >= 0) & (pop.district[o] < 2)).all()
    assert ((pop.income_decile[p] >= 1) & (pop.income_decile[p] <= 10)).all()
    assert set(np.unique(pop.sex[p])) <= {0, 1} and (pop.group[p] >= 0).all()


def test_identity_numbers(pop: Population) -> None:
    assert len(set(pop.codes.tolist())) == pop.n
    assert all(type(c) is str for c in pop.codes)
    for i in range(pop.n_persons):
        code = pop.codes[i]
        assert ric.validate(code) == code
        assert int(code[16]) % 2 == pop.sex[i]
        born = to_date(pop.birth_date[i])
        assert ric.get_birth_date(code) == born
        assert age_on_day0(born) == pop.age[i]
        if pop.group_ids[pop.group[i]] == "migrant":
            assert code[:6] in ("510100", "410100")
        else:
            assert code[:6] in ("320508", "320583", "320500")
            assert code[:6] != "320508" or born.year >= 2012
    for i in range(pop.n_persons, pop.n):
        code = pop.codes[i]
        assert uscc.validate(code) == code
        assert code[:2] == "91" and code[2:8] == ("320508", "320583")[pop.district[i]]
        assert org_code_check_char(code[8:16]) == code[16]


def test_households(pop: Population) -> None:
    hs = pop.hh_start
    sizes = np.diff(hs)
    assert hs[0] == 0 and hs[-1] == pop.n_persons and (sizes >= 1).all()
    assert (pop.household[: pop.n_persons] == np.repeat(np.arange(pop.n_households), sizes)).all()
    for name in ("district", "group", "income_decile"):
        col = getattr(pop, name)[: pop.n_persons]
        assert (col == np.repeat(col[hs[:-1]], sizes)).all(), name
    assert (pop.age[hs[:-1]] >= 18).all()  # heads are adults
    couples = hs[:-1][sizes >= 2]
    assert (pop.age[couples + 1] >= 18).all()
    assert (pop.sex[couples] != pop.sex[couples + 1]).all()
    assert np.abs(pop.age[couples].astype(int) - pop.age[couples + 1]).mean() < 5


def test_employers(pop: Population) -> None:
    emp = pop.employer[: pop.n_persons]
    employed = emp >= 0
    assert ((emp[employed] >= pop.n_persons) & (emp[employed] < pop.n)).all()
    assert (pop.kind[emp[employed]] == ORGANIZATION).all()
    age = pop.age[: pop.n_persons][employed]
    assert ((age >= 18) & (age <= 64)).all()
    assert (pop.district[emp[employed]] == pop.district[: pop.n_persons][employed]).all()


def test_friendship_graph(pop: Population) -> None:
    indptr, fr = pop.friends_indptr, pop.friends
    assert indptr[0] == 0 and indptr[-1] == fr.shape[0] and (np.diff(indptr) >= 0).all()
    src = np.repeat(np.arange(pop.n_persons), np.diff(indptr))
    assert ((fr >= 0) & (fr < pop.n_persons)).all()
    assert (src != fr).all()
    row_change = np.diff(src) != 0
    assert ((np.diff(fr) > 0) | row_change).all()  # each row sorted, hence no duplicates
    pairs = set(zip(src.tolist(), fr.tolist(), strict=True))
    assert len(pairs) == fr.shape[0]  # no duplicates
    assert all((b, a) in pairs for a, b in pairs)  # symmetric
    assert abs(fr.shape[0] / pop.n_persons - 6) < 0.5  # mean degree
    assert (pop.district[src] == pop.district[fr]).mean() > 0.85  # mostly within district


# --------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_same_population(pop: Population) -> None:
    again = generate_population(SPEC, 3000, 7, with_friends=True)
    for name in FIELDS:
        assert np.array_equal(getattr(pop, name), getattr(again, name)), name
    assert (again.n_orgs, again.district_ids) == (pop.n_orgs, pop.district_ids)


def test_seed_sequence_and_friends_flag() -> None:
    ss = np.random.SeedSequence(7)
    a = generate_population(SPEC, 1000, ss, with_friends=True)
    b = generate_population(SPEC, 1000, ss, with_friends=False)  # ss not consumed by a
    c = generate_population(SPEC, 1000, 7, with_friends=False)
    assert b.friends is None and b.friends_indptr is None
    for name in FIELDS[:-2]:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert np.array_equal(getattr(b, name), getattr(c, name)), name


def test_different_seed_differs(pop: Population) -> None:
    other = generate_population(SPEC, 3000, 8, with_friends=True)
    assert not np.array_equal(pop.age, other.age)
    assert not np.array_equal(pop.codes, other.codes)
    assert not np.array_equal(pop.friends, other.friends)


# --------------------------------------------------------------------------------------------
# Shares on a larger sample (200,000 persons in about 78,000 households)


def test_shares(big: Population) -> None:
    n = big.n_persons
    assert big.n_orgs == 4000
    # Districts and groups are drawn per household: sd of a share is about 0.002.
    assert abs(np.mean(big.district[:n] == 1) - 0.7) < 0.01
    assert abs(np.mean(big.district[n:] == 1) - 0.7) < 0.03  # 4000 organisations
    assert abs(np.mean(big.group[:n] == 1) - 0.4) < 0.01
    assert abs(big.sex[:n].mean() - 0.51) < 0.01
    assert abs(n / big.n_households - 2.6) < 0.05
    age = big.age[:n]
    for lo, hi, share in [(0, 17, 0.18), (18, 59, 0.62), (60, 90, 0.20)]:
        assert abs(np.mean((age >= lo) & (age <= hi)) - share) < 0.01
    working = (age >= 18) & (age <= 64)
    assert abs(np.mean(big.employer[:n][working] >= 0) - 0.7) < 0.01
    assert abs(big.income_decile[:n].mean() - 5.5) < 0.1
    assert len(set(big.codes.tolist())) == big.n


# --------------------------------------------------------------------------------------------
# Edge cases


def test_single_person_and_no_organisations() -> None:
    one = generate_population(SPEC, 1, 0, with_friends=True)
    assert one.n_persons == 1 and one.n_orgs == 1  # 0.02 organisations rounds up to one
    assert one.n_households == 1 and one.age[0] >= 18 and ric.is_valid(one.codes[0])
    assert one.friends_indptr.tolist() == [0, 0] and one.friends.shape == (0,)
    spec = make_spec(organizations_per_1000=num(0))
    none = generate_population(spec, 500, 0, with_friends=False)
    assert none.n_orgs == 0 and (none.employer == -1).all()


def test_singles_and_few_adults() -> None:
    spec = make_spec(
        household_size_mean=num(1),
        age_bands=[
            {"min": num(0), "max": num(17), "share": num(0.9)},
            {"min": num(18), "max": num(40), "share": num(0.1)},
        ],
    )
    p = generate_population(spec, 2000, 3, with_friends=False)
    assert (np.diff(p.hh_start) == 1).all()
    assert (p.age[: p.n_persons] >= 18).all()  # every person heads a household


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError):
        generate_population(SPEC, 0, 0, with_friends=False)
    with pytest.raises(ValueError):
        generate_population(
            make_spec(age_bands=[{"min": num(0), "max": num(17), "share": num(1)}]),
            10,
            0,
            with_friends=False,
        )
    assert DAY0 == (dt.date(2019, 1, 1) - EPOCH).days
