"""Synthetic but formally valid Chinese identifiers for the population.

Persons get 18-digit resident identity numbers (RIC, GB 11643): a 6-digit birthplace code
(GB/T 2260), the birth date YYYYMMDD, a 3-digit sequence whose last digit is odd for men and
even for women, and a check character. Organisations get 18-character Unified Social Credit
Codes (USCC, GB 32100): ``91`` (enterprise registered by market regulation), the 6-digit code of
their district, a 9-character organisation code (GB 11714, with its own check character) and the
USCC check character.

python-stdnum (``stdnum.cn.ric`` and ``stdnum.cn.uscc``) is the authority for the RIC and USCC
check characters: they are computed in vectorised form (RIC: here, from per-part digit tables in
Numba; USCC and the GB 11714 check, which stdnum lacks: :mod:`credsim.population.orgcodes`, with
numpy), and tests hold both equal to stdnum's ``calc_check_digit`` on samples. The codes are ASCII
rows written into a small buffer, one chunk at a time, and either copied into an ``(n, 18)``
uint8 array (``ric_code_bytes``, ``uscc_code_bytes``: what the population keeps) or decoded as
one text and split into str objects (``ric_codes``, ``uscc_codes``), so that no Python step runs
per entity (:mod:`credsim.population.codetext`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
from numba import njit
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from credsim.population.codetext import _code_bytes, _digits, _strings
from credsim.population.orgcodes import (  # noqa: F401  (re-exported: callers import them here)
    ORG_BODY_ALPHABET,
    _org_check_bytes,
    _uscc_check_bytes,
    org_code_bodies,
    org_code_check_char,
    uscc_code_bytes,
    uscc_codes,
)

DAY0 = 17897
"""Reference day 0 of the simulation, 2019-01-01, in days since 1970-01-01."""

SEQ_PER_SEX = 500
"""Distinct 3-digit sequence numbers per (birthplace, birth date, sex): 500 odd, 500 even."""
_MAX_ROUNDS = 1000


# --------------------------------------------------------------------------------------------
# Resident identity numbers


@cache
def area_code_valid(code: int, year: int) -> bool:
    """Whether stdnum's GB/T 2260 database accepts ``code`` as a birthplace in ``year``."""
    try:
        ric.get_birth_place(f"{code:06d}{year:04d}01010010")
    except (ValidationError, KeyError):  # KeyError: a code with no county entry at all
        return False
    return True


@cache
def birthplace_code(code: int, year: int) -> int:
    """``code`` if it was valid in ``year``, else its prefecture, else its province code."""
    for candidate in (code, code // 100 * 100, code // 10000 * 10000):
        if area_code_valid(candidate, year):
            return candidate
    raise ValueError(f"area code {code:06d} is unknown to stdnum's GB/T 2260 database")


def birth_windows(max_age: int) -> tuple[np.ndarray, np.ndarray]:
    """Per whole age a: first day and number of days of the birth dates giving age a on day 0.

    Age a on 2019-01-01 means born from 2 January of year 2018-a to 1 January of 2019-a.
    """
    year = 2018 - np.arange(max_age + 1)
    jan1 = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
    next_jan1 = (year - 1969).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
    return jan1 + 1, next_jan1 - jan1


def birthplace_candidates(
    rng: np.random.Generator,
    district_codes: list[int],
    group_area_codes: list[list[str] | None],
    district: np.ndarray,
    group: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Each person's preferred birthplace as an index into a small code table.

    The table holds the district codes, then every group's own ``area_codes``; a person of a
    group with area codes gets a random one of them, anyone else the code of their district.
    Returns ``(area_index int32, table int64)``.
    """
    table = list(district_codes)
    area_index = district.astype(np.int32)
    for gi, own in enumerate(group_area_codes):
        if own:
            mine = np.flatnonzero(group == gi)
            area_index[mine] = len(table) + rng.integers(0, len(own), mine.shape[0])
            table += [int(c) for c in own]
    return area_index, np.array(table, dtype=np.int64)


def date_parts(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(year, YYYYMMDD) as int64 arrays for dates given in days since 1970-01-01."""
    d = np.asarray(days).astype("datetime64[D]")
    month_start = d.astype("datetime64[M]")
    year = d.astype("datetime64[Y]").astype(np.int64) + 1970
    month = month_start.astype(np.int64) % 12 + 1
    day = (d - month_start).astype(np.int64) + 1
    return year, year * 10000 + month * 100 + day


@njit(cache=True, nogil=True)
def _running_count(key: np.ndarray, n_keys: int) -> np.ndarray:  # pragma: no cover (numba)
    """Rank of each element among the earlier elements with the same (dense) key: O(n)."""
    seen = np.zeros(n_keys, dtype=np.int32)
    out = np.empty(key.shape[0], dtype=np.int32)
    for i in range(key.shape[0]):
        k = key[i]
        out[i] = seen[k]
        seen[k] += 1
    return out


@njit(cache=True, nogil=True)
def _pair_counts(
    area_index: np.ndarray, birth: np.ndarray, d0: int, yoff: np.ndarray, n_years: int, size: int
) -> np.ndarray:  # pragma: no cover (numba)
    """``bincount(pair, minlength=size)`` with ``pair = area_index * n_years + yoff[birth - d0]``
    (index of a (preferred birthplace, birth year) combination)."""
    counts = np.zeros(size, np.int64)
    for i in range(area_index.shape[0]):
        counts[np.int64(area_index[i]) * n_years + yoff[birth[i] - d0]] += 1
    return counts


@njit(cache=True, nogil=True)
def _ric_key(
    i: int,
    area_index: np.ndarray,
    birth: np.ndarray,
    sex: np.ndarray,
    d0: int,
    yoff: np.ndarray,
    n_years: int,
    dense: np.ndarray,
    n_days: int,
) -> int:  # pragma: no cover (numba)
    """Key of person ``i``'s (birthplace, birth date, sex): ``(dense[pair] * n_days + day) * 2
    + sex``."""
    day = birth[i] - d0
    return (dense[np.int64(area_index[i]) * n_years + yoff[day]] * n_days + day) * 2 + sex[i]


@njit(cache=True, nogil=True)
def _ric_keys(
    area_index: np.ndarray,
    birth: np.ndarray,
    sex: np.ndarray,
    d0: int,
    yoff: np.ndarray,
    n_years: int,
    dense: np.ndarray,
    n_days: int,
) -> np.ndarray:  # pragma: no cover (numba)
    """Every person's :func:`_ric_key`."""
    key = np.empty(area_index.shape[0], np.int64)
    for i in range(area_index.shape[0]):
        key[i] = _ric_key(i, area_index, birth, sex, d0, yoff, n_years, dense, n_days)
    return key


@njit(cache=True, nogil=True)
def _ric_ranks(
    area_index: np.ndarray,
    birth: np.ndarray,
    sex: np.ndarray,
    d0: int,
    yoff: np.ndarray,
    n_years: int,
    dense: np.ndarray,
    n_days: int,
    n_keys: int,
) -> np.ndarray:  # pragma: no cover (numba)
    """``_running_count(_ric_keys(...), n_keys)`` without the keys array."""
    seen = np.zeros(n_keys, np.int32)
    rank = np.empty(area_index.shape[0], np.int32)
    for i in range(area_index.shape[0]):
        k = _ric_key(i, area_index, birth, sex, d0, yoff, n_years, dense, n_days)
        rank[i] = seen[k]
        seen[k] += 1
    return rank


def ric_codes(
    area_index: np.ndarray,
    area_table: np.ndarray,
    birth_date: np.ndarray,
    sex: np.ndarray,
    age: np.ndarray,
    window_start: np.ndarray,
    window_len: np.ndarray,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Unique RICs for persons; returns ``(codes, birth_date)`` (``codes`` is ``out`` if given,
    an object array of ``n`` to fill). See :func:`_ric_plan`."""
    fill, birth = _ric_plan(area_index, area_table, birth_date, sex, age, window_start, window_len)
    return _strings(area_index.shape[0], 19, fill, out), birth


def ric_code_bytes(
    area_index: np.ndarray,
    area_table: np.ndarray,
    birth_date: np.ndarray,
    sex: np.ndarray,
    age: np.ndarray,
    window_start: np.ndarray,
    window_len: np.ndarray,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ric_codes` (the same codes and birth dates) with the codes as an ``(n, 18)``
    uint8 array of ASCII characters (``out`` if given), without making str objects."""
    fill, birth = _ric_plan(area_index, area_table, birth_date, sex, age, window_start, window_len)
    return _code_bytes(area_index.shape[0], 19, fill, out), birth


def _ric_plan(
    area_index: np.ndarray,
    area_table: np.ndarray,
    birth_date: np.ndarray,
    sex: np.ndarray,
    age: np.ndarray,
    window_start: np.ndarray,
    window_len: np.ndarray,
) -> tuple[Callable[[int, int, np.ndarray], None], np.ndarray]:
    """The persons' RICs as ``(fill, birth_date)``: ``fill(s, e, buf)`` writes the rows
    ``s:e`` (for :func:`_strings` or :func:`_code_bytes`).

    Each person's preferred birthplace is ``area_table[area_index]``; it falls back to the
    prefecture or province code where stdnum's database says it did not exist in the birth year
    (resolved once per distinct (code, year) pair). Sequence numbers are ranks within
    (birthplace, birth date, sex). A person ranked beyond the 500 numbers of a combination has
    the birth date moved one day later, wrapping within ``window_start[age]`` +
    ``[0, window_len[age])`` (the dates that keep the age), and all is re-ranked until nobody
    overflows. The returned ``birth_date`` is a copy if any date moved.
    """
    birth = birth_date
    n, n_codes = area_index.shape[0], area_table.shape[0]
    sex8 = np.ascontiguousarray(sex, dtype=np.int8)
    for _ in range(_MAX_ROUNDS):
        # Lookup tables over the (few) distinct days, codes and years instead of per-person work.
        d0 = int(birth.min())
        n_days = int(birth.max()) - d0 + 1
        year_t, ymd_t = date_parts(np.arange(d0, d0 + n_days))
        y0 = int(year_t[0])
        n_years = int(year_t[-1]) - y0 + 1
        yoff = year_t - y0
        args = (area_index, birth, d0, yoff, n_years)
        present = np.flatnonzero(_pair_counts(*args, n_codes * n_years))
        resolved = np.zeros(n_codes * n_years, dtype=np.int64)
        resolved[present] = [
            birthplace_code(int(area_table[p // n_years]), y0 + int(p % n_years)) for p in present
        ]
        codes, code_idx = np.unique(resolved[present], return_inverse=True)
        dense = np.zeros(n_codes * n_years, dtype=np.int64)
        dense[present] = code_idx.ravel()
        n_keys = codes.shape[0] * n_days * 2
        kargs = (area_index, birth, sex8, d0, yoff, n_years, dense, n_days)
        if n_keys > max(4 * n, 1 << 25):  # many birthplaces: compact the key space
            uniq, key = np.unique(_ric_keys(*kargs), return_inverse=True)
            rank = _running_count(key.ravel(), uniq.shape[0])
        else:
            rank = _ric_ranks(*kargs, n_keys)
        over = rank >= SEQ_PER_SEX
        if not over.any():
            break
        birth = birth.copy()
        a = age[over]
        birth[over] = window_start[a] + (birth[over] - window_start[a] + 1) % window_len[a]
    else:
        raise RuntimeError("could not give every person a distinct identity number")
    # Area, date, sequence (last digit odd for men, even for women) and the check character.
    tables = _ric_tables(resolved, ymd_t, np.arange(2 * SEQ_PER_SEX))
    per = (area_index, birth, sex8, rank, d0, yoff, n_years)

    def fill(s: int, e: int, buf: np.ndarray) -> None:
        _ric_rows_of(*per, *tables, s, e, buf)

    return fill, birth


_RIC_WEIGHTS = np.array([pow(2, 17 - i, 11) for i in range(17)], np.int64)


def _ric_tables(
    area: np.ndarray, ymd: np.ndarray, seq: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ASCII digits of the values a RIC's area (6 digits), date (8) and sequence (3) parts
    take, each with its part of the check sum ``sum(digit * 2**(17 - i) mod 11)``."""
    out = []
    for values, first, width in ((area, 0, 6), (ymd, 6, 8), (seq, 14, 3)):
        digits = _digits(values, width, b"0123456789")
        out += [digits, (digits.astype(np.int64) - ord("0")) @ _RIC_WEIGHTS[first : first + width]]
    return tuple(out)  # type: ignore[return-value]


@njit(cache=True, nogil=True)
def _put_ric(
    rows: np.ndarray,
    r: int,
    a_digits: np.ndarray,
    a_sums: np.ndarray,
    a: int,
    d_digits: np.ndarray,
    d_sums: np.ndarray,
    d: int,
    s_digits: np.ndarray,
    s_sums: np.ndarray,
    s: int,
) -> None:  # pragma: no cover (numba)
    """Row ``r``: area ``a``, date ``d`` and sequence ``s`` (indices into the digit tables of
    :func:`_ric_tables`), the ISO 7064 MOD 11-2 check character (``(12 - sum) mod 11``, 10
    written X) and a newline."""
    for i in range(6):
        rows[r, i] = a_digits[a, i]
    for i in range(8):
        rows[r, 6 + i] = d_digits[d, i]
    for i in range(3):
        rows[r, 14 + i] = s_digits[s, i]
    check = (12 - (a_sums[a] + d_sums[d] + s_sums[s]) % 11) % 11
    rows[r, 17] = 88 if check == 10 else 48 + check  # "X" or the digit
    rows[r, 18] = 10


@njit(cache=True, nogil=True)
def _ric_rows_of(
    area_index: np.ndarray,
    birth: np.ndarray,
    sex: np.ndarray,
    rank: np.ndarray,
    d0: int,
    yoff: np.ndarray,
    n_years: int,
    a_digits: np.ndarray,
    a_sums: np.ndarray,
    d_digits: np.ndarray,
    d_sums: np.ndarray,
    s_digits: np.ndarray,
    s_sums: np.ndarray,
    start: int,
    stop: int,
    rows: np.ndarray,
) -> None:  # pragma: no cover (numba)
    """Rows ``start:stop`` of :func:`ric_codes`: the resolved code of the person's (birthplace,
    birth year) pair, the birth date and sequence ``2 * rank + sex``."""
    for i in range(start, stop):
        day = birth[i] - d0
        pair = np.int64(area_index[i]) * n_years + yoff[day]
        seq = 2 * np.int64(rank[i]) + sex[i]
        r = i - start
        _put_ric(rows, r, a_digits, a_sums, pair, d_digits, d_sums, day, s_digits, s_sums, seq)


@njit(cache=True, nogil=True)
def _ric_rows(
    a_idx: np.ndarray,
    d_idx: np.ndarray,
    s_idx: np.ndarray,
    a_digits: np.ndarray,
    a_sums: np.ndarray,
    d_digits: np.ndarray,
    d_sums: np.ndarray,
    s_digits: np.ndarray,
    s_sums: np.ndarray,
    start: int,
    stop: int,
    rows: np.ndarray,
) -> None:  # pragma: no cover (numba)
    """Rows ``start:stop`` given each row's indices into the digit tables."""
    for i in range(start, stop):
        a, d, s = a_idx[i], d_idx[i], s_idx[i]
        _put_ric(rows, i - start, a_digits, a_sums, a, d_digits, d_sums, d, s_digits, s_sums, s)


def _ric_strings(numbers: np.ndarray) -> np.ndarray:
    """Turn 18-digit integers ending in a placeholder 0 into RIC strings with their check
    character (ISO 7064 MOD 11-2, as stdnum's ``cn.ric.calc_check_digit``; a test holds the two
    equal), through the same digit tables and row writer as :func:`ric_codes`."""
    x = np.asarray(numbers, dtype=np.int64)
    (a, a_idx), (d, d_idx), (q, q_idx) = (
        np.unique(v, return_inverse=True) for v in (x // 10**12, x // 10**4, x // 10)
    )
    t = _ric_tables(a, d, q)
    return _strings(x.shape[0], 19, lambda s, e, buf: _ric_rows(a_idx, d_idx, q_idx, *t, s, e, buf))
