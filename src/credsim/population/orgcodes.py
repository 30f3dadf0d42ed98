"""Organisations' identifiers: GB 11714 organisation codes and the 18-character Unified Social
Credit Codes built on them (USCC, GB 32100): ``91`` (enterprise registered by market
regulation), the 6-digit code of the organisation's district, a 9-character organisation code
(8 body characters and the GB 11714 check character) and the USCC check character, which
python-stdnum (``stdnum.cn.uscc``) is the authority for; tests hold the vectorised check equal
to stdnum's. The GB 11714 check, which stdnum lacks, is written here.
"""

from __future__ import annotations

import numpy as np

from credsim.population.codetext import _code_bytes, _digits, _strings

ORG_BODY_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""Characters allowed in a USCC body: 0-9 and A-Z without I, O, S, V, Z."""

_ORG_WEIGHTS = np.array([3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)


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


_USCC_WEIGHTS = np.array([pow(3, i, 31) for i in range(17)], np.int64)
_USCC_VALUE = np.full(256, -1, np.int64)
_USCC_VALUE[np.frombuffer(ORG_BODY_ALPHABET.encode(), np.uint8)] = np.arange(31)


def _uscc_check_bytes(pre: np.ndarray) -> np.ndarray:
    """USCC check characters of an ``(n, 17)`` ASCII array of prefixes, as stdnum's
    ``cn.uscc.calc_check_digit`` (weights ``3**i mod 31`` over the 31-character alphabet)
    vectorised; a test holds the two equal."""
    values = _USCC_VALUE[pre]
    if (values < 0).any():
        raise ValueError("a USCC prefix holds a character outside the USCC alphabet")
    check = (-(values @ _USCC_WEIGHTS)) % 31
    return np.frombuffer(ORG_BODY_ALPHABET.encode(), np.uint8)[check]


def _uscc_rows(district_codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """USCC rows (``(n, 19)`` ASCII, each ending in a newline) for organisations registered in
    the given 6-digit codes."""
    n = district_codes.shape[0]
    rows = np.empty((n, 19), dtype=np.uint8)
    rows[:, :2] = np.frombuffer(b"91", dtype=np.uint8)
    rows[:, 2:8] = _digits(district_codes, 6, b"0123456789")
    body = org_code_bodies(rng, n)
    rows[:, 8:16] = body
    rows[:, 16] = _org_check_bytes(body)
    rows[:, 17] = _uscc_check_bytes(rows[:, :17])
    rows[:, 18] = ord("\n")
    return rows


def uscc_codes(
    district_codes: np.ndarray, rng: np.random.Generator, out: np.ndarray | None = None
) -> np.ndarray:
    """USCCs (object array of str, ``out`` if given) for organisations registered in the given
    6-digit codes."""
    rows = _uscc_rows(district_codes, rng)

    def fill(s: int, e: int, buf: np.ndarray) -> None:
        buf[: e - s] = rows[s:e]

    return _strings(rows.shape[0], 19, fill, out)


def uscc_code_bytes(
    district_codes: np.ndarray, rng: np.random.Generator, out: np.ndarray | None = None
) -> np.ndarray:
    """:func:`uscc_codes` (the same codes for the same ``rng`` state) as an ``(n, 18)`` uint8
    array of ASCII characters (``out`` if given), without making str objects."""
    rows = _uscc_rows(district_codes, rng)

    def fill(s: int, e: int, buf: np.ndarray) -> None:
        buf[: e - s] = rows[s:e]

    return _code_bytes(rows.shape[0], 19, fill, out)
