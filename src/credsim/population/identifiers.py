"""Synthetic but formally valid Chinese identifiers for the population.

Persons get 18-digit resident identity numbers (RIC, GB 11643): a 6-digit birthplace code
(GB/T 2260), the birth date YYYYMMDD, a 3-digit sequence whose last digit is odd for men and
even for women, and a check character. Organisations get 18-character Unified Social Credit
Codes (USCC, GB 32100): ``91`` (enterprise registered by market regulation), the 6-digit code of
their district, a 9-character organisation code (GB 11714, with its own check character) and the
USCC check character.

The RIC and USCC check characters are computed by python-stdnum (``stdnum.cn.ric`` and
``stdnum.cn.uscc``) so that they agree with the reference validators; only the GB 11714
organisation-code check, which stdnum lacks, is written here. Everything except the final
string assembly is vectorised; the strings themselves are built in chunks with the garbage
collector paused, because creating millions of small objects otherwise triggers it constantly.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit
from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError

DAY0 = 17897
"""Reference day 0 of the simulation, 2019-01-01, in days since 1970-01-01."""

ORG_BODY_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""Characters allowed in a USCC body: 0-9 and A-Z without I, O, S, V, Z."""

_ORG_WEIGHTS = np.array([3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
SEQ_PER_SEX = 500
"""Distinct 3-digit sequence numbers per (birthplace, birth date, sex): 500 odd, 500 even."""
_MAX_ROUNDS = 1000


# --------------------------------------------------------------------------------------------
# GB 11714 organisation code


def org_code_check_char(body: str) -> str:
    """Return the GB 11714 check character of an 8-character organisation-code body.

    Characters take their base-36 value (0-9, A=10 .. Z=35) and are weighted 3,7,9,10,5,8,4,2;
    the check is ``11 - sum mod 11`` with 10 written ``X`` and 11 written ``0``.
    """
    if len(body) != 8:
        raise ValueError(f"an organisation-code body has 8 characters, got {body!r}")
    total = sum(int(ch, 36) * int(w) for ch, w in zip(body.upper(), _ORG_WEIGHTS, strict=True))
    c = 11 - total % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def _org_check_bytes(body: np.ndarray) -> np.ndarray:
    """Vectorised :func:`org_code_check_char` over an ``(n, 8)`` array of ASCII codes."""
    b = body.astype(np.int64)
    values = np.where(b >= ord("A"), b - ord("A") + 10, b - ord("0"))
    c = 11 - (values @ _ORG_WEIGHTS) % 11
    return np.where(c == 10, ord("X"), np.where(c == 11, ord("0"), c + ord("0"))).astype(np.uint8)


def _unique_ints(rng: np.random.Generator, high: int, size: int) -> np.ndarray:
    """``size`` distinct integers drawn uniformly from ``[0, high)`` (redrawing collisions)."""
    if size > high:
        raise ValueError(f"cannot draw {size} distinct codes out of {high}")
    out = rng.integers(0, high, size, dtype=np.int64)
    while True:
        _, first = np.unique(out, return_index=True)
        dup = np.ones(size, dtype=bool)
        dup[first] = False
        if not dup.any():
            return out
        out[dup] = rng.integers(0, high, int(dup.sum()), dtype=np.int64)


def _digits(values: np.ndarray, width: int, alphabet: bytes) -> np.ndarray:
    """Write non-negative integers as ``width`` characters in base ``len(alphabet)``."""
    lut = np.frombuffer(alphabet, dtype=np.uint8)
    out = np.empty((values.shape[0], width), dtype=np.uint8)
    v = values.astype(np.int64, copy=True)
    for i in range(width - 1, -1, -1):
        v, r = np.divmod(v, len(alphabet))
        out[:, i] = lut[r]
    return out


def org_code_bodies(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw ``n`` distinct 8-character organisation-code bodies as an ``(n, 8)`` ASCII array.

    Half look like pre-2015 all-digit codes, half like post-2015 ``MA`` codes (``MA`` + six
    characters from :data:`ORG_BODY_ALPHABET`); the two families cannot collide.
    """
    new_style = rng.random(n) < 0.5
    k = int(new_style.sum())
    body = np.empty((n, 8), dtype=np.uint8)
    body[~new_style] = _digits(_unique_ints(rng, 10**8, n - k), 8, b"0123456789")
    tail = _digits(_unique_ints(rng, len(ORG_BODY_ALPHABET) ** 6, k), 6, ORG_BODY_ALPHABET.encode())
    body[new_style, :2] = np.frombuffer(b"MA", dtype=np.uint8)
    body[new_style, 2:] = tail
    return body


def uscc_codes(district_codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """USCCs (object array of str) for organisations registered in the given 6-digit codes."""
    n = district_codes.shape[0]
    pre = np.empty((n, 17), dtype=np.uint8)
    pre[:, :2] = np.frombuffer(b"91", dtype=np.uint8)
    pre[:, 2:8] = _digits(district_codes, 6, b"0123456789")
    body = org_code_bodies(rng, n)
    pre[:, 8:16] = body
    pre[:, 16] = _org_check_bytes(body)
    prefixes = pre.view("S17").ravel().astype("U17").tolist()
    out = np.empty(n, dtype=object)
    out[:] = [p + uscc.calc_check_digit(p) for p in prefixes]
    return out


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


@njit(cache=True)
def _running_count(key: np.ndarray, n_keys: int) -> np.ndarray:  # pragma: no cover (numba)
    """Rank of each element among the earlier elements with the same (dense) key: O(n)."""
    seen = np.zeros(n_keys, dtype=np.int32)
    out = np.empty(key.shape[0], dtype=np.int32)
    for i in range(key.shape[0]):
        k = key[i]
        out[i] = seen[k]
        seen[k] += 1
    return out


def ric_codes(
    area_index: np.ndarray,
    area_table: np.ndarray,
    birth_date: np.ndarray,
    sex: np.ndarray,
    age: np.ndarray,
    window_start: np.ndarray,
    window_len: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Unique RICs for persons; returns ``(codes, birth_date)``.

    Each person's preferred birthplace is ``area_table[area_index]``; it falls back to the
    prefecture or province code where stdnum's database says it did not exist in the birth year
    (resolved once per distinct (code, year) pair). Sequence numbers are ranks within
    (birthplace, birth date, sex). A person ranked beyond the 500 numbers of a combination has
    the birth date moved one day later, wrapping within ``window_start[age]`` +
    ``[0, window_len[age])`` (the dates that keep the age), and all is re-ranked until nobody
    overflows. The returned ``birth_date`` is a copy if any date moved.
    """
    birth = birth_date
    n_codes = area_table.shape[0]
    for _ in range(_MAX_ROUNDS):
        # Lookup tables over the (few) distinct days, codes and years instead of per-person work.
        d0 = int(birth.min())
        day = birth.astype(np.int64) - d0
        n_days = int(day.max()) + 1
        year_t, ymd_t = date_parts(np.arange(d0, d0 + n_days))
        y0 = int(year_t[0])
        n_years = int(year_t[-1]) - y0 + 1
        pair = area_index.astype(np.int64) * n_years + (year_t[day] - y0)
        present = np.flatnonzero(np.bincount(pair, minlength=n_codes * n_years))
        resolved = np.zeros(n_codes * n_years, dtype=np.int64)
        resolved[present] = [
            birthplace_code(int(area_table[p // n_years]), y0 + int(p % n_years)) for p in present
        ]
        codes, code_idx = np.unique(resolved[present], return_inverse=True)
        dense = np.zeros(n_codes * n_years, dtype=np.int64)
        dense[present] = code_idx.ravel()
        key = (dense[pair] * n_days + day) * 2 + sex
        n_keys = codes.shape[0] * n_days * 2
        if n_keys > max(4 * key.shape[0], 1 << 25):  # many birthplaces: compact the key space
            uniq, key = np.unique(key, return_inverse=True)
            n_keys = uniq.shape[0]
        rank = _running_count(key.ravel(), n_keys)
        over = rank >= SEQ_PER_SEX
        if not over.any():
            break
        birth = birth.copy()
        a = age[over]
        birth[over] = window_start[a] + (birth[over] - window_start[a] + 1) % window_len[a]
    else:
        raise RuntimeError("could not give every person a distinct identity number")
    seq = 2 * rank.astype(np.int64) + sex  # last digit odd for men, even for women
    # 18-digit integers: area, date, sequence and a placeholder check digit 0.
    numbers = resolved[pair] * 10**12 + ymd_t[day] * 10**4 + seq * 10
    return _ric_strings(numbers), birth


_RIC_WEIGHTS = np.array([pow(2, 17 - i, 11) for i in range(17)], np.int64)


def _ric_strings(numbers: np.ndarray) -> np.ndarray:
    """Turn 18-digit integers ending in a placeholder 0 into RIC strings with their check
    character (ISO 7064 MOD 11-2, as stdnum's ``cn.ric.calc_check_digit``, vectorised; a test
    holds the two equal)."""
    n = numbers.shape[0]
    digits = np.empty((n, 18), np.uint8)
    x = numbers.astype(np.int64)
    for i in range(17, -1, -1):
        digits[:, i] = x % 10
        x //= 10
    total = digits[:, :17].astype(np.int64) @ _RIC_WEIGHTS
    check = (12 - total % 11) % 11
    chars = digits + ord("0")
    chars[:, 17] = np.where(check == 10, ord("X"), check + ord("0"))
    return chars.view("S18").ravel().astype("U18").astype(object)
