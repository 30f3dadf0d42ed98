"""The strict scheme loader: every malformed scheme is a SchemeError that names the file, the line,
the dotted path of the field and what was expected.

Each file in ``fixtures/bad/`` is ``fixtures/good/minimal.yaml`` with one defect. The lines an
error may point at (the defective value, or the key of the field the error names) end in the
comment ``# <- defect``; the expected line numbers are computed from those markers, never
hard-coded.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credsim.errors import SchemeError
from credsim.schemes.loader import bibliography, bundled_ids, load_scheme, load_scheme_text
from credsim.schemes.semantic import iter_nums
from credsim.schemes.yamlio import MAX_DEPTH

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOOD = FIXTURES / "good" / "minimal.yaml"
BAD = FIXTURES / "bad"
MARKER = "# <- defect"

# (fixture file, expected dotted-path fragment or None, expected message fragment)
CASES = [
    ("unknown-top-level-key.yaml", "colour", "unknown key (not part of the scheme format)"),
    ("unknown-nested-key.yaml", "behaviours.speeding.channels[0].detecton", "unknown key"),
    ("duplicate-key.yaml", "behaviours.speeding", "duplicate key 'rate'"),
    ("wrong-type.yaml", "behaviours.speeding.rate.value", "expected a number"),
    ("no-provenance.yaml", "population.male_share", "exactly one of 'source' or 'assumption'"),
    ("both-provenance.yaml", "population.male_share", "exactly one of 'source' or 'assumption'"),
    ("unknown-source.yaml", "items.speeding.points.source", "not in the bibliography"),
    ("nan.yaml", "behaviours.speeding.rate.value", "expected a finite number"),
    ("infinity.yaml", "population.size.value", "expected a finite number"),
    (
        "probability-above-one.yaml",
        "behaviours.speeding.channels[0].detection",
        "a probability must lie in [0.0, 1.0]",
    ),
    ("negative-count.yaml", "population.size", "expected a non-negative number"),
    (
        "fractional-days.yaml",
        "behaviours.speeding.channels[0].delay_days",
        "expected a whole number",
    ),
    ("item-unknown-behaviour.yaml", "items.speeding.behaviour", "unknown behaviour 'speedng'"),
    ("list-unknown-item.yaml", "lists.speeders.inclusion.item", "unknown item 'speedng'"),
    ("measure-unknown-list.yaml", "measures.no-flights.trigger.list", "unknown list 'speeder'"),
    ("trigger-unknown-grade.yaml", "measures.no-flights.trigger.grades", "unknown grade 'middle'"),
    pytest.param(
        "behaviour-not-in-catalogue.yaml",
        "behaviours.speedboating",
        "not in the catalogue nor custom_behaviours",
        id="behaviour-not-in-catalogue.yaml",
    ),
    pytest.param(
        "group-shares.yaml", "population.groups", "shares must sum to 1", id="group-shares.yaml"
    ),
    ("score-base-out-of-range.yaml", "score", "min <= base <= max"),
    pytest.param(
        "grades-not-ascending.yaml",
        "score",
        "from the lowest 'min' to the highest",
        id="grades-not-ascending.yaml",
    ),
    ("voluntary-without-rate.yaml", "enrolment", "a voluntary scheme needs 'rate'"),
    pytest.param("not-yaml.yaml", None, "not valid YAML", id="not-yaml.yaml"),
    ("empty.yaml", None, "the file is empty; expected a mapping"),
    pytest.param(
        "top-level-list.yaml", None, "expected a mapping of scheme fields", id="top-level-list.yaml"
    ),
    pytest.param(
        "anchors.yaml",
        "population.employment_rate",
        "anchors and aliases are not allowed",
        id="anchors.yaml",
    ),
]


def _case_name(case: object) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]  # type: ignore[index]


def marked_lines(text: str) -> list[int]:
    """1-based numbers of the lines that end in the defect marker."""
    return [i for i, line in enumerate(text.splitlines(), 1) if line.rstrip().endswith(MARKER)]


def check_error(message: str, file: str, lines: list[int], path: str | None, expect: str) -> None:
    """One line of ``message`` must read ``FILE:LINE: ...path...: ...expect...`` with LINE one of
    ``lines`` (or no line at all when ``lines`` is empty)."""
    assert file in message, message
    found = [ln for ln in message.splitlines() if expect in ln and (path is None or path in ln)]
    assert found, f"no error line with path {path!r} and {expect!r} in:\n{message}"
    line = found[0]
    assert line.startswith(f"{file}:"), line
    rest = line[len(file) :]
    if not lines:
        return
    number = rest[1:].split(":", 1)[0]
    assert number.isdigit(), f"no line number in {line!r} (expected one of {lines})"
    assert int(number) in lines, f"line {number} reported, expected one of {lines}: {line!r}"
    if path is not None:
        assert f": {path}" in rest or f" {path}" in rest, line


def test_every_bad_fixture_is_in_the_table() -> None:
    names = {_case_name(c) for c in CASES}
    assert names == {p.name for p in BAD.glob("*.yaml")}


def test_bad_fixtures_differ_from_the_good_one_in_few_lines() -> None:
    good = set(GOOD.read_text(encoding="utf-8").splitlines())
    for p in BAD.glob("*.yaml"):
        if p.name in ("empty.yaml", "top-level-list.yaml"):
            continue
        changed = [
            ln
            for ln in p.read_text(encoding="utf-8").splitlines()
            if ln not in good and not ln.startswith("#")
        ]
        assert 1 <= len(changed) <= 3, (p.name, changed)


@pytest.mark.parametrize(("name", "path", "expect"), CASES, ids=[_case_name(c) for c in CASES])
def test_bad_fixture(name: str, path: str | None, expect: str) -> None:
    fixture = BAD / name
    text = fixture.read_text(encoding="utf-8")
    lines = marked_lines(text)
    assert lines or not text.strip(), f"{name} has no '{MARKER}' line"
    with pytest.raises(SchemeError) as info:
        load_scheme(fixture)
    check_error(str(info.value), str(fixture), lines, path, expect)


@pytest.mark.parametrize(("name", "path", "expect"), CASES, ids=[_case_name(c) for c in CASES])
def test_bad_fixture_as_text(name: str, path: str | None, expect: str) -> None:
    """``load_scheme_text`` reports the same problems under the given name."""
    text = (BAD / name).read_text(encoding="utf-8")
    with pytest.raises(SchemeError) as info:
        load_scheme_text(text, "scheme.yaml")
    check_error(str(info.value), "scheme.yaml", marked_lines(text), path, expect)


def test_comments_only_file_is_empty(tmp_path: Path) -> None:
    p = tmp_path / "comments.yaml"
    p.write_text("# nothing but a comment\n\n", encoding="utf-8")
    with pytest.raises(SchemeError, match="the file is empty"):
        load_scheme(p)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    text = GOOD.read_text(encoding="utf-8").replace("name: Centre", f"name: Zentrüm  {MARKER}")
    p = tmp_path / "latin1.yaml"
    p.write_bytes(text.encode("latin-1"))
    with pytest.raises(SchemeError) as info:
        load_scheme(p)
    check_error(str(info.value), str(p), marked_lines(text), None, "not UTF-8")


def test_non_utf8_bytes_is_a_scheme_error(tmp_path: Path) -> None:
    """The part of the non-UTF-8 check that holds today: a SchemeError naming the file."""
    p = tmp_path / "latin1.yaml"
    p.write_bytes(GOOD.read_text(encoding="utf-8").replace("Centre", "Zentrüm").encode("latin-1"))
    with pytest.raises(SchemeError, match="not UTF-8") as info:
        load_scheme(p)
    assert str(p) in str(info.value)


@pytest.mark.parametrize("style", ["flow", "block"])
def test_deep_nesting(tmp_path: Path, style: str) -> None:
    depth = MAX_DEPTH + 10
    if style == "flow":
        deep = "deep: " + "[" * depth + "1" + "]" * depth + f"  {MARKER}\n"
    else:
        nest = [f"deep:  {MARKER}"] + ["  " * i + f"k{i}:" for i in range(1, depth)]
        deep = "\n".join([*nest, "  " * depth + "k: 1"]) + "\n"
    text = GOOD.read_text(encoding="utf-8") + deep
    p = tmp_path / "deep.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(SchemeError) as info:
        load_scheme(p)
    message = str(info.value)
    assert f"nesting deeper than {MAX_DEPTH} levels" in message
    assert "deep" in message
    # the error is raised inside the nest, at or below the marked line where it starts
    start = marked_lines(text)[0]
    number = int(message[len(str(p)) + 1 :].split(":", 1)[0])
    assert start <= number <= len(text.splitlines())


def test_very_deep_nesting_is_a_scheme_error(tmp_path: Path) -> None:
    p = tmp_path / "deeper.yaml"
    p.write_text("deep: " + "[" * 2000 + "]" * 2000 + "\n", encoding="utf-8")
    with pytest.raises(SchemeError, match="nesting") as info:
        load_scheme(p)
    assert str(p) in str(info.value)


@pytest.mark.parametrize("key", ["2019-13-45", "!custom colour", "!!int abc"])
def test_unreadable_key_is_a_scheme_error(key: str) -> None:
    text = GOOD.read_text(encoding="utf-8") + f"notes:\n  {key}: x\n"
    try:
        load_scheme_text(text, "scheme.yaml")
    except SchemeError as exc:
        assert "scheme.yaml:" in str(exc)
    except Exception as exc:
        pytest.fail(f"{type(exc).__name__} instead of SchemeError: {exc}")
    else:
        pytest.fail("loaded a scheme with an unreadable key")


# --------------------------------------------------------------------------------------------
# Good schemes


def test_good_fixture_loads() -> None:
    loaded = load_scheme(GOOD)
    s = loaded.scheme
    assert s.id == "minimal"
    assert list(s.behaviours) == ["speeding"] and list(s.items) == ["speeding"]
    assert len(s.population.groups) == len(s.population.districts) == 1
    assert len(s.population.age_bands) == 1
    assert s.behaviours["speeding"].channels[0].kind == "agency"
    assert s.score is not None
    assert loaded.path == str(GOOD)
    assert len(loaded.sha256) == 64


def test_good_fixture_loads_as_text() -> None:
    assert load_scheme_text(GOOD.read_text(encoding="utf-8")).scheme.id == "minimal"


def test_bundled_ids() -> None:
    ids = bundled_ids()
    assert ids == sorted(ids)
    assert "suzhou" in ids


@pytest.mark.parametrize("sid", bundled_ids())
def test_bundled_scheme_loads(sid: str) -> None:
    assert load_scheme(sid).scheme.id == sid


def test_reference_benchmark_loads() -> None:
    assert load_scheme(ROOT / "benchmarks" / "reference.yaml").scheme.id == "reference"


def test_unknown_scheme_lists_bundled_ids() -> None:
    with pytest.raises(SchemeError) as info:
        load_scheme("no-such-scheme")
    message = str(info.value)
    assert "no-such-scheme" in message
    for sid in bundled_ids():
        assert sid in message


@pytest.mark.parametrize("sid", bundled_ids())
def test_bundled_sources_resolve(sid: str) -> None:
    s = load_scheme(sid).scheme
    bib = bibliography()
    used = {num.source for _, num in iter_nums(s) if num.source is not None} | set(s.sources)
    if s.in_force.source is not None:
        used.add(s.in_force.source)
    assert used, f"{sid} cites no source at all"
    assert used <= set(bib), sorted(used - set(bib))


def test_bibliography_documents_exist() -> None:
    shared = ROOT.parent / "shared" / "sources"
    if not shared.is_dir():
        pytest.skip(f"{shared} is absent")
    documents = {k: e["document"] for k, e in bibliography().items() if "document" in e}
    assert documents
    missing = {k: d for k, d in documents.items() if not (shared / d).is_file()}
    assert not missing, missing


# --------------------------------------------------------------------------------------------
# Random damage: a mutated scheme either loads or is a SchemeError, never anything else.

GOOD_BYTES = GOOD.read_bytes()
YAML_CHARS = list(":-[]{}&*!|>'\"#%@`, \n\t?~.0123456789e")
_SCRATCH = tempfile.TemporaryDirectory(prefix="credsim-test-loader-")


def _delete_line(data: bytes, i: int) -> bytes:
    lines = data.splitlines(keepends=True)
    del lines[i % len(lines)]
    return b"".join(lines)


mutations = st.one_of(
    st.integers(min_value=0).map(lambda i: _delete_line(GOOD_BYTES, i)),
    st.integers(min_value=0, max_value=len(GOOD_BYTES)).map(lambda i: GOOD_BYTES[:i]),
    st.tuples(
        st.integers(min_value=0, max_value=len(GOOD_BYTES)),
        st.text(
            alphabet=st.one_of(st.sampled_from(YAML_CHARS), st.characters()), min_size=1, max_size=8
        ),
    ).map(
        lambda t: GOOD_BYTES[: t[0]] + t[1].encode("utf-8", "surrogatepass") + GOOD_BYTES[t[0] :]
    ),
    st.tuples(
        st.integers(min_value=0, max_value=len(GOOD_BYTES) - 1), st.binary(min_size=1, max_size=4)
    ).map(lambda t: GOOD_BYTES[: t[0]] + t[1] + GOOD_BYTES[t[0] :]),
)


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(mutations)
def test_mutated_scheme_loads_or_is_a_scheme_error(data: bytes) -> None:
    p = Path(_SCRATCH.name) / "mutated.yaml"
    p.write_bytes(data)
    try:
        load_scheme(p)
    except SchemeError as exc:
        assert str(exc).startswith(str(p)), str(exc)


def test_random_line_deletions_never_crash() -> None:
    """Every single-line deletion of the good fixture, deterministically (no hypothesis)."""
    text = GOOD.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    rng = random.Random(0)
    for i in rng.sample(range(len(lines)), len(lines)):
        try:
            load_scheme_text("".join(lines[:i] + lines[i + 1 :]), "cut.yaml")
        except SchemeError as exc:
            assert str(exc).startswith("cut.yaml"), str(exc)


def test_unknown_area_code_is_a_validation_error() -> None:
    text = GOOD.read_text(encoding="utf-8")
    import re

    code = re.search(r'code: "(\d{6})"', text)
    assert code is not None
    bad = text.replace(code.group(0), 'code: "990101"')
    with pytest.raises(SchemeError, match="not a GB/T 2260 area code"):
        load_scheme_text(bad, "scheme.yaml")
