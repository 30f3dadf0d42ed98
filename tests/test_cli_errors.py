"""The command line on malformed schemes: a non-zero exit, the loader's message on stderr, and
nothing written to disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from credsim.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOOD = FIXTURES / "good" / "minimal.yaml"
BAD = FIXTURES / "bad"


def _bad_params() -> list[object]:
    out: list[object] = []
    for p in sorted(BAD.glob("*.yaml")):
        out.append(pytest.param(p, id=p.name))
    return out


# One of each kind: YAML syntax, empty file, top level, schema, provenance, semantic reference.
RUN_CASES = [
    "not-yaml.yaml",
    "empty.yaml",
    "top-level-list.yaml",
    "unknown-nested-key.yaml",
    "no-provenance.yaml",
    "measure-unknown-list.yaml",
    "group-shares.yaml",
]


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("bad", _bad_params())
def test_validate_bad_scheme(bad: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("credsim: error: ")
    assert str(bad) in err
    assert "Traceback" not in err


def test_validate_message_is_the_loaders(capsys: pytest.CaptureFixture[str]) -> None:
    bad = BAD / "unknown-nested-key.yaml"
    line = next(
        i
        for i, ln in enumerate(bad.read_text(encoding="utf-8").splitlines(), 1)
        if ln.lstrip().startswith("detecton:")
    )
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:{line}: behaviours.speeding.channels[0].detecton: unknown key" in err


def test_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.yaml"
    assert main(["validate", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "bundled" in err
    assert list(tmp_path.iterdir()) == []


def test_validate_good_scheme(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(GOOD)]) == 0
    out, err = capsys.readouterr()
    assert "valid scheme 'minimal'" in out
    assert err == ""


@pytest.mark.parametrize("name", RUN_CASES)
def test_run_bad_scheme_writes_nothing(
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # a stray default runs/ folder would show up here too
    bad = BAD / name
    out_dir = tmp_path / "run"
    rc = main(["run", str(bad), "--out", str(out_dir), "--population", "100", "--days", "5"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("credsim: error: ") and str(bad) in err
    assert not out_dir.exists()
    assert list(tmp_path.iterdir()) == []


def test_run_bad_scheme_without_out_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    rc = main(["run", str(BAD / "unknown-source.yaml"), "--population", "100", "--days", "5"])
    assert rc == 2
    assert "not in the bibliography" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_run_refuses_existing_nonempty_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    existing = tmp_path / "existing"
    (existing / "sub").mkdir(parents=True)
    (existing / "notes.txt").write_text("keep me\n", encoding="utf-8")
    (existing / "sub" / "data.bin").write_bytes(bytes(range(256)))
    old = os.stat(existing / "notes.txt").st_mtime_ns - 10**9
    os.utime(existing / "notes.txt", ns=(old, old))
    before = _snapshot(existing)
    rc = main(
        ["run", "suzhou", "--out", str(existing), "--population", "100", "--days", "5", "--quiet"]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert str(existing) in err and "not empty" in err
    assert _snapshot(existing) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]
