"""Fuzzing the scheme loader: whatever the bytes, the outcome is a scheme or a SchemeError with a
message naming the file — never another exception, never a hang."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credsim.errors import SchemeError
from credsim.schemes.loader import load_scheme, load_scheme_text, parse_scheme
from credsim.schemes.yamlio import MAX_BYTES, read_yaml_text

GOOD = (Path(__file__).resolve().parent / "fixtures" / "good" / "minimal.yaml").read_text("utf-8")
FUZZ = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _loads_or_clean_error(data: bytes | str, name: str = "fuzz.yaml") -> None:
    try:
        parse_scheme(read_yaml_text(data, name))
    except SchemeError as exc:
        assert name in str(exc) and str(exc).strip()


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data: bytes) -> None:
    _loads_or_clean_error(data)


@FUZZ
@given(st.text(max_size=500))
def test_arbitrary_text(text: str) -> None:
    _loads_or_clean_error(text)


@FUZZ
@given(st.integers(0, len(GOOD)))
def test_truncated_scheme(cut: int) -> None:
    _loads_or_clean_error(GOOD[:cut])


@FUZZ
@given(
    st.sampled_from(
        [
            ".nan",
            ".inf",
            "-.inf",
            "1e400",
            "-1e400",
            "1e16",
            "99999999999999999999",
            "0x7fffffffffffffff",
            "1_000",
            "~",
            "[]",
            "{}",
            "'1'",
            "true",
            "2019-01-01",
            "!!binary aGVsbG8=",
            "!!python/object:os.system x",
        ]
    ),
    st.sampled_from(["value: 2", "value: 0.5", "value: 100"]),
)
def test_odd_scalars_in_number_fields(scalar: str, where: str) -> None:
    if where not in GOOD:
        pytest.skip("the fixture has no such field")
    _loads_or_clean_error(GOOD.replace(where, f"value: {scalar}", 1))


@pytest.mark.parametrize(
    "doc",
    [
        "a: &x [*x]\n",  # a list that contains itself
        "a: &x {b: *x}\n",  # a mapping that contains itself
        "a: &a [*a, *a, *a]\nb: &b [*a, *a]\n",  # alias bombs stay unexpanded
        "x: " + "[" * 5000 + "]" * 5000 + "\n",
        "x:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 300)),
    ],
)
def test_cycles_bombs_and_depth_are_refused(doc: str) -> None:
    with pytest.raises(SchemeError) as info:
        load_scheme_text(doc, "evil.yaml")
    assert "evil.yaml" in str(info.value)


def test_absurd_sizes(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: " + b"x" * (MAX_BYTES + 1))
    with pytest.raises(SchemeError, match="too large"):
        load_scheme(big)
    many = "id: x\nnotes:\n" + "".join(f"  k{i}: v\n" for i in range(60_000))
    with pytest.raises(SchemeError):
        load_scheme_text(many, "many.yaml")
