"""`credsim verify`: a sealed run verifies; every kind of tampering with its files is caught.

One small real run (Nanjing, 2,000 persons, 60 days) is made once; each test tampers with its
own copy, as an outsider would: reading a Parquet file or the manifest, changing it, writing it
back. The re-implementation tests at the end follow docs/integrity.md byte for byte, without
using :mod:`credsim.store.ledger`, to keep the specification honest. New runs are sealed with
``credsim-ledger-v7`` (each record stores a 4-byte tag of its digest; a null column takes no
bytes in a record's row, and each link is SHA-256's compression function over the row's blocks
from the previous digest; the other tables' content digests BLAKE3); the same run sealed as
runs were before it (``credsim-ledger-v6``, each link hashing the previous digest after the
row's first 64 bytes; ``credsim-ledger-v5``, 8-byte tags;
``credsim-ledger-v4``, the tables' digests SHA-256;
``credsim-ledger-v3``, the previous digest before the row; ``credsim-ledger-v2``, whole
digests, each link checked on its own; and ``credsim-ledger-v1``) must still verify, and its
tampering still be caught and named.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import credsim
from credsim.cli import main
from credsim.errors import RunStoreError
from credsim.store import ledger, ledger_chain, sha_ni, write_run
from credsim.store.schema import RECORDS_CONTENT, SCHEMAS, conform
from credsim.store.verify import verify
from credsim.store.verify_chain import TAG_ALTERED
from tiny import STRUCT_FORMAT, v7_link

K = 57  # the record tampered with


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("verify") / "run"
    credsim.run("nanjing", population=2000, days=60, seed=1, out=out)
    return out


@pytest.fixture
def run(sealed: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sealed, tmp_path / "run"))


@pytest.fixture(scope="module")
def sealed_as(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The same run sealed with an earlier encoding, as runs were before the next one (each
    sealed once, when a test first asks for it): v5 (8-byte tags), v4 (the other tables' and
    the files' digests SHA-256), v3 (the previous digest before the row), v2 (whole digests), v1."""
    sealed: dict[str, Path] = {}

    def seal(encoding: str) -> Path:
        if encoding not in sealed:
            out = tmp_path_factory.mktemp(f"verify-{encoding[-2:]}") / "run"
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(ledger, "ENCODING", encoding)
                credsim.run("nanjing", population=2000, days=60, seed=1, out=out)
            sealed[encoding] = out
        return sealed[encoding]

    return seal


def _copy(seal: Callable[[str], Path], encoding: str, tmp_path: Path) -> Path:
    """A copy of the run sealed with ``encoding``, for a test to tamper with."""
    return Path(shutil.copytree(seal(encoding), tmp_path / f"run-{encoding[-2:]}"))


@pytest.fixture
def run_v6(sealed_as: Callable[[str], Path], tmp_path: Path) -> Path:
    return _copy(sealed_as, ledger.ENCODING_V6, tmp_path)


@pytest.fixture
def run_v5(sealed_as: Callable[[str], Path], tmp_path: Path) -> Path:
    return _copy(sealed_as, ledger.ENCODING_V5, tmp_path)


@pytest.fixture
def run_v4(sealed_as: Callable[[str], Path], tmp_path: Path) -> Path:
    return _copy(sealed_as, ledger.ENCODING_V4, tmp_path)


@pytest.fixture
def run_v3(sealed_as: Callable[[str], Path], tmp_path: Path) -> Path:
    return _copy(sealed_as, ledger.ENCODING_V3, tmp_path)


@pytest.fixture
def run_v2(sealed_as: Callable[[str], Path], tmp_path: Path) -> Path:
    return _copy(sealed_as, ledger.ENCODING_V2, tmp_path)


@pytest.fixture
def run_v1(sealed_as: Callable[[str], Path], tmp_path: Path) -> Path:
    return _copy(sealed_as, ledger.ENCODING_V1, tmp_path)


def rewrite(path: Path, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    """Read a Parquet table, change its rows, write it back with the same schema."""
    table = pq.read_table(path)
    rows = change(table.to_pylist())
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def edit_manifest(run: Path, change: Callable[[dict[str, Any]], None]) -> None:
    m = json.loads((run / "manifest.json").read_text())
    change(m)
    (run / "manifest.json").write_text(json.dumps(m, indent=2))


def problems(run: Path, **kw: Any) -> list[str]:
    report = verify(run, **kw)
    assert not report.ok and report.problems
    assert report.summary().startswith(f"TAMPERED: {run}")
    return report.problems


# -- intact runs ------------------------------------------------------------------------------


def test_intact_run_verifies(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = verify(run)
    assert report.ok, report.problems
    m = json.loads((run / "manifest.json").read_text())
    assert report.records == m["counts"]["records"] == m["ledger"]["records"] > 2 * K
    assert report.head == m["ledger"]["head"]
    assert report.manifest_digest == m["manifest_digest"]
    assert main(["verify", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"intact: {run}") and m["manifest_digest"] in out
    assert main(["verify", str(run), "--expect", m["manifest_digest"]]) == 0
    assert main(["verify", str(run), "--expect", m["ledger"]["head"]]) == 0


def test_sealed_manifest_and_records(run: Path) -> None:
    m = json.loads((run / "manifest.json").read_text())
    lg = m["ledger"]
    assert lg["encoding"] == "credsim-ledger-v7" and lg["first_record_id"] == 0
    assert lg["contiguous_ids"] is True
    assert lg["columns"] == [
        f"{f.name}:string:u16" if f.type == pa.string() else f"{f.name}:{f.type}"
        for f in RECORDS_CONTENT
    ]
    # the engine's names for each label column, in code order: nothing outside them was seen
    assert lg["vocabularies"] == m["labels"]
    assert set(m["labels"]) == {f.name for f in RECORDS_CONTENT if f.type == pa.string()}
    assert set(m["table_digests"]) == set(m["tables"])
    assert list(m)[-1] == "manifest_digest"
    records = pq.read_table(run / "records.parquet")
    assert records.schema.equals(SCHEMAS["records"], check_metadata=False)
    assert records.schema.names[-1] == "digest"
    assert records.schema.field("digest").type == pa.binary(4)  # the tags
    assert records.column("digest")[-1].as_py().hex() == lg["head"][:8]


def test_fixture_run_with_ids_from_one_and_friendships(tmp_path: Path) -> None:
    from test_store import manifest, tables

    out = write_run(tmp_path / "r", tables(), manifest())
    assert verify(out).ok
    m = json.loads((out / "manifest.json").read_text())
    assert m["ledger"]["first_record_id"] == 1 and m["ledger"]["contiguous_ids"]
    rewrite(out / "friendships.parquet", lambda rows: rows[:1])
    assert any(p.startswith("table friendships: content digest") for p in problems(out))


def test_conform_accepts_records_with_or_without_digest() -> None:
    from test_store import tables

    bare = conform("records", tables()["records"])
    assert bare.schema.equals(RECORDS_CONTENT)
    sealed = ledger.Sealer({"seed": 1}).add("records", bare)
    assert conform("records", sealed).schema.equals(SCHEMAS["records"])


# -- each kind of tampering -------------------------------------------------------------------


def test_modified_record_field(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[K]["points"] = rows[K]["points"] - 1
        return rows

    rewrite(run / "records.parquet", change)
    found = problems(run)
    assert f"record {K} (record_id {K}): digest mismatch - content changed" in found
    assert not any(p.startswith(f"record {K + 1} ") for p in found)
    assert "table records: content digest mismatch (rows changed, added or removed)" in found
    assert main(["verify", str(run)]) == 1
    assert f"record {K} (record_id {K})" in capsys.readouterr().out


def test_modified_string_field(run: Path) -> None:
    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[K]["source_agency"] = "someone-else"
        return rows

    rewrite(run / "records.parquet", change)
    assert f"record {K} (record_id {K}): digest mismatch - content changed" in problems(run)


def test_deleted_record(run: Path) -> None:
    rewrite(run / "records.parquet", lambda rows: rows[:K] + rows[K + 1 :])
    found = problems(run)
    assert (
        f"records: record_id sequence broken at position {K} (expected {K}, found {K + 1}): "
        "records deleted, inserted or reordered" in found
    )
    assert any(
        p.startswith(f"record {K} (record_id {K + 1}): digest mismatch - chain broken")
        for p in found
    )
    assert any("counts.records" in p or "the manifest's counts say" in p for p in found)


def test_deleted_last_record(run: Path) -> None:
    rewrite(run / "records.parquet", lambda rows: rows[:-1])
    found = problems(run)
    assert any(p.startswith("records: the chain ends in") for p in found)
    assert any(p.startswith("records: records.parquet holds") for p in found)


def test_inserted_record(run: Path) -> None:
    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fake = dict(rows[K], entity_id=rows[K]["entity_id"] + 1)
        return rows[:K] + [fake] + rows[K:]

    rewrite(run / "records.parquet", change)
    found = problems(run)
    assert f"record {K} (record_id {K}): digest mismatch - content changed" in found
    assert any(
        p.startswith(f"records: record_id sequence broken at position {K + 1}") for p in found
    )


def _swap(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows[K], rows[K + 1] = rows[K + 1], rows[K]
    return rows


def test_swapped_records(run: Path) -> None:
    rewrite(run / "records.parquet", _swap)
    found = problems(run)
    n = pq.read_metadata(run / "records.parquet").num_rows
    assert found == [
        "table records: file records.parquet altered (blake3 differs from the manifest)",
        f"records: record_id sequence broken at position {K} (expected {K}, found {K + 1}): "
        "records deleted, inserted or reordered",
        f"record {K} (record_id {K + 1}): digest mismatch - chain broken: records deleted, "
        "inserted or moved at this point",
        f"records: the {n - K - 1:,} records after record {K} cannot be checked one by one "
        "(each digest covers the one before; this run stores 8 bytes of each)",
        "table records: content digest mismatch (rows changed, added or removed)",
    ]


def test_swapped_records_v2_names_each(run_v2: Path) -> None:
    """With whole digests stored (v2) every link is checked on its own."""
    run = run_v2
    rewrite(run / "records.parquet", _swap)
    found = problems(run)
    assert (
        found[0] == "table records: file records.parquet altered (sha256 differs from the manifest)"
    )
    assert found[1].startswith(
        f"records: record_id sequence broken at position {K} (expected {K}, found {K + 1})"
    )
    assert found[2].startswith(f"record {K} (record_id {K + 1}): digest mismatch - chain broken")
    assert found[3].startswith(f"record {K + 1} (record_id {K}): digest mismatch - chain broken")
    assert (
        f"record {K + 2} (record_id {K + 2}): digest mismatch - content intact, but the "
        "record before it was moved away" in found
    )
    # the same rows in another order: the table's content digest changes too
    assert "table records: content digest mismatch (rows changed, added or removed)" in found


def test_swapped_records_with_ids_swapped_back(run: Path) -> None:
    """Reordering content while keeping record_id in sequence is still caught by the chain."""

    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        a, b = rows[K], rows[K + 1]
        rows[K], rows[K + 1] = dict(b, record_id=K), dict(a, record_id=K + 1)
        return rows

    rewrite(run / "records.parquet", change)
    found = problems(run)
    assert any(p.startswith(f"record {K} (record_id {K}): digest mismatch") for p in found)


@pytest.mark.parametrize(
    ("which", "at"),
    [("v7", K), ("v7", -1), ("v6", K), ("v5", K), ("v5", -1), ("v3", K), ("v2", K)],
)
def test_altered_stored_digest(
    run: Path, run_v6: Path, run_v5: Path, run_v3: Path, run_v2: Path, which: str, at: int
) -> None:
    """A stored digest (since v3: its tag, 8 bytes to v5, 4 since) altered, its record intact,
    is named as such; with tags also the last record's, which no record after it confirms (the
    ledger's head does; v2 calls that one a content change)."""
    run = {"v7": run, "v6": run_v6, "v5": run_v5, "v3": run_v3, "v2": run_v2}[which]
    n = pq.read_metadata(run / "records.parquet").num_rows
    K = at % n

    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[K]["digest"] = bytes(len(rows[K]["digest"]))
        return rows

    rewrite(run / "records.parquet", change)
    found = problems(run)
    assert (
        f"record {K} (record_id {K}): digest mismatch - its stored digest was altered "
        "(its content is intact)"
    ) in found
    assert not any(p.startswith(f"record {K + 1} ") for p in found)


@pytest.mark.parametrize("field", ["digest", "points"])
@pytest.mark.parametrize("batch", [K + 1, K, 7])
def test_tag_failure_at_a_batch_edge(
    run: Path, monkeypatch: pytest.MonkeyPatch, field: str, batch: int
) -> None:
    """verify reads the records in batches: a tag that fails at a batch's end (K + 1 rows a
    batch) is told apart from a content change by the next batch's first tag, at a batch's
    start (K rows) by the record after it, as anywhere else (7)."""
    monkeypatch.setattr(ledger, "BATCH_ROWS", batch)

    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[K][field] = bytes(4) if field == "digest" else rows[K][field] - 1
        return rows

    rewrite(run / "records.parquet", change)
    found = problems(run)
    why = TAG_ALTERED if field == "digest" else "content changed"
    assert [p for p in found if p.startswith("record ")] == [
        f"record {K} (record_id {K}): digest mismatch - {why}"
    ]
    unchecked = [p for p in found if p.startswith("records: the ")]
    assert len(unchecked) == (field == "points")  # a tag alone: the chain stays in step


def test_removed_digest_column(run: Path) -> None:
    table = pq.read_table(run / "records.parquet")
    pq.write_table(table.drop_columns(["digest"]), run / "records.parquet")
    found = problems(run)  # the chain is recomputed from scratch: its head still matches
    assert not any(p.startswith("record") for p in found)
    assert any(
        p.startswith("table records: content digest mismatch") and "missing column(s) digest" in p
        for p in found
    )


def test_many_modified_records_are_counted(run_v2: Path) -> None:
    """v2: every link is checked on its own, the failing ones counted."""
    run = run_v2

    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for r in rows[: 2 * K]:
            r["applied"] = 0.5
        return rows

    rewrite(run / "records.parquet", change)
    found = problems(run)
    assert sum(p.startswith("record ") for p in found) == 10
    assert any(p.startswith("records: ") and "fail their digest check" in p for p in found)


def test_many_modified_records_with_tags_names_the_first(run: Path) -> None:
    """Since v3: the first changed record breaks every tag after it; it is named, the rest
    said to be unchecked."""

    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for r in rows[K : 2 * K]:
            r["applied"] = 0.5
        return rows

    rewrite(run / "records.parquet", change)
    found = problems(run)
    named = [p for p in found if p.startswith("record ")]
    assert named == [f"record {K} (record_id {K}): digest mismatch - content changed"]
    assert any(p.startswith("records: the ") and f"after record {K} cannot" in p for p in found)


def test_altered_other_table(run: Path) -> None:
    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[3]["start_day"] += 1
        return rows

    rewrite(run / "lists.parquet", change)
    found = problems(run)
    assert found == [
        "table lists: file lists.parquet altered (blake3 differs from the manifest)",
        "table lists: content digest mismatch (rows changed, added or removed)",
    ]


def test_rewritten_file_with_same_content(run: Path) -> None:
    """Bytes differ, content does not: the file is still not the one written."""
    pq.write_table(
        pq.read_table(run / "scores.parquet"), run / "scores.parquet", compression="snappy"
    )
    assert problems(run) == [
        "table scores: file scores.parquet altered (blake3 differs from the manifest)"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda m: m.update(seed=2), "manifest: field 'seed' altered"),
        (
            lambda m: m["counts"].update(records=m["counts"]["records"] + 1),
            "manifest: field 'counts.records' altered",
        ),
        (lambda m: m["ledger"].update(head="0" * 64), "manifest: field 'ledger.head' altered"),
        (lambda m: m["ledger"].update(records=1), "manifest: field 'ledger.records' altered"),
        (lambda m: m["tables"]["lists"].update(rows=1), "manifest: field 'tables.lists.rows'"),
        (
            lambda m: m["table_digests"].update(lists="0" * 64),
            "manifest: field 'table_digests.lists' altered",
        ),
        (lambda m: m.update(population=1), "manifest: field 'population' altered"),
        (lambda m: m.update(days=61), "manifest: field 'days' altered"),
        (lambda m: m.update(manifest_digest="0" * 64), "manifest: field 'manifest_digest' altered"),
        (lambda m: m.pop("created"), "manifest: field 'created' removed"),
        (lambda m: m.update(note="hello"), "manifest: field 'note' added"),
    ],
)
def test_altered_manifest_field(
    run: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    edit_manifest(run, change)
    found = problems(run)
    assert found[0].startswith(expected), found
    assert main(["verify", str(run)]) == 1


def test_forged_seed_with_recomputed_manifest_digests(run: Path) -> None:
    def change(m: dict[str, Any]) -> None:
        m["seed"] = 2
        m["field_digests"] = ledger.field_digests(m)
        m["manifest_digest"] = ledger.manifest_digest(m)

    edit_manifest(run, change)
    assert problems(run)[0].startswith(
        "manifest: the ledger genesis does not derive from the seed and scheme sha256"
    )


def _statuses(run: Path) -> list[str]:
    return pq.read_table(run / "records.parquet", columns=["status"]).column(0).to_pylist()


def test_altered_vocabulary(run: Path) -> None:
    """Two statuses swapped in the manifest's vocabulary: the genesis no longer derives from
    it, and the records holding them no longer chain."""

    def change(m: dict[str, Any]) -> None:
        vocab = m["ledger"]["vocabularies"]["status"]
        vocab[0], vocab[1] = vocab[1], vocab[0]

    edit_manifest(run, change)
    found = problems(run)
    assert found[0].startswith("manifest: field 'ledger.vocabularies' altered ('status': "), found
    statuses = _statuses(run)
    m = json.loads((run / "manifest.json").read_text())
    swapped = m["ledger"]["vocabularies"]["status"][:2]
    first = next(i for i, v in enumerate(statuses) if v in swapped)
    assert f"record {first} (record_id {first}): digest mismatch - content changed" in found


def test_vocabulary_with_an_added_value(run: Path) -> None:
    """A value added at the end still follows the vocabulary's rule: the genesis catches it."""
    edit_manifest(run, lambda m: m["ledger"]["vocabularies"]["error"].append("zzz-forged"))
    found = problems(run)
    assert found[0].startswith(
        "manifest: field 'ledger.genesis', 'ledger.columns' or 'ledger.vocabularies' altered"
    ), found
    assert not any(p.startswith("record ") for p in found)  # no code changed


def test_forged_vocabulary_with_recomputed_manifest_digests(run: Path) -> None:
    def change(m: dict[str, Any], genesis: bool) -> None:
        vocab = m["ledger"]["vocabularies"]["status"]
        vocab[0], vocab[1] = vocab[1], vocab[0]
        if genesis:
            m["ledger"]["genesis"] = ledger.genesis(
                m, m["ledger"]["encoding"], m["ledger"]["columns"], m["ledger"]["vocabularies"]
            ).hex()
        m["field_digests"] = ledger.field_digests(m)
        m["manifest_digest"] = ledger.manifest_digest(m)

    original = (run / "manifest.json").read_text()
    edit_manifest(run, lambda m: change(m, False))
    assert problems(run)[0].startswith(
        "manifest: the ledger genesis does not derive from the seed and scheme sha256 (with the "
        "ledger's columns and vocabularies)"
    )
    (run / "manifest.json").write_text(original)
    edit_manifest(run, lambda m: change(m, True))  # the genesis recomputed too
    found = problems(run)
    assert found[0].startswith("manifest: field 'ledger.vocabularies' or 'labels' altered")
    assert any(p.endswith("digest mismatch - content changed") for p in found)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda lg: lg.update(vocabularies="x"), "'ledger.vocabularies' altered (not a mapping"),
        (lambda lg: lg["vocabularies"].pop("status"), "'ledger.vocabularies' altered (no vocab"),
        (lambda lg: lg["vocabularies"]["error"].append(3), "'ledger.vocabularies' altered ('err"),
        (
            lambda lg: lg["vocabularies"]["basis"].append(lg["vocabularies"]["basis"][0]),
            "'ledger.vocabularies' altered ('basis': a value listed twice",
        ),
        (lambda lg: lg.update(columns=5), "'ledger.genesis', 'ledger.columns' or"),
        (lambda lg: lg["columns"].__setitem__(5, "item:string:u32"), "'ledger.genesis', 'ledger"),
    ],
)
def test_malformed_ledger_is_reported(
    run: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    edit_manifest(run, lambda m: change(m["ledger"]))
    found = problems(run)
    assert found[0].startswith(f"manifest: field {expected}"), found


def test_label_outside_the_vocabulary(run: Path) -> None:
    """A status no run can hold: the record is reported as changed, with or without the
    digest column (never a crash, never accepted)."""

    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[K]["status"] = "quietly-forgiven"
        return rows

    rewrite(run / "records.parquet", change)
    found = problems(run)
    assert f"record {K} (record_id {K}): digest mismatch - content changed" in found
    assert not any(p.startswith(f"record {K + 1} ") for p in found)
    table = pq.read_table(run / "records.parquet")
    pq.write_table(table.drop_columns(["digest"]), run / "records.parquet")
    found = problems(run)
    assert f"record {K} (record_id {K}): digest mismatch - content changed" in found


def test_label_swapped_for_another_vocabulary_value(run: Path) -> None:
    vocab = json.loads((run / "manifest.json").read_text())["ledger"]["vocabularies"]["status"]

    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[K]["status"] = next(v for v in vocab if v != rows[K]["status"])
        return rows

    rewrite(run / "records.parquet", change)
    found = problems(run)
    assert f"record {K} (record_id {K}): digest mismatch - content changed" in found
    assert sum(p.startswith("record ") for p in found) == 1


def test_full_forgery_needs_an_anchor(run: Path) -> None:
    """Someone who re-seals everything defeats a self-contained check; --expect catches it."""
    original = json.loads((run / "manifest.json").read_text())["manifest_digest"]
    table = pq.read_table(run / "records.parquet")
    rows = table.to_pylist()
    rows[K]["points"] -= 1
    m = json.loads((run / "manifest.json").read_text())
    sealer = ledger.Sealer(m)
    forged = sealer.add("records", pa.Table.from_pylist(rows, schema=table.schema))
    pq.write_table(forged, run / "records.parquet")
    for name in m["tables"]:
        if name != "records":
            sealer.add(name, pq.read_table(run / f"{name}.parquet"))
        m["tables"][name]["blake3"] = blake3.blake3(
            (run / f"{name}.parquet").read_bytes()
        ).hexdigest()
    (run / "manifest.json").write_text(json.dumps(sealer.finish(m), indent=2))
    assert verify(run).ok  # consistent forgery: undetectable without an outside record
    found = problems(run, expect=original)
    assert found[0].startswith("manifest: neither the manifest digest")
    assert main(["verify", str(run), "--expect", original]) == 1


def test_truncated_parquet(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = (run / "records.parquet").read_bytes()
    (run / "records.parquet").write_bytes(data[: len(data) // 2])
    found = problems(run)
    assert (
        found[0] == "table records: file records.parquet altered (blake3 differs from the manifest)"
    )
    assert found[1].startswith(
        "table records: records.parquet cannot be read, truncated or corrupt"
    )
    assert main(["verify", str(run)]) == 1
    assert "cannot be read" in capsys.readouterr().out


def test_corrupted_parquet(run: Path) -> None:
    path = run / "population.parquet"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    found = problems(run)
    assert (
        found[0] == "table population: file population.parquet altered (blake3 differs "
        "from the manifest)"
    )
    assert len(found) >= 2 and found[1].startswith("table population: ")


def test_deleted_table_file(run: Path) -> None:
    (run / "scores.parquet").unlink()
    assert problems(run) == ["table scores: scores.parquet is missing (deleted)"]


def test_added_table_file(run: Path) -> None:
    pq.write_table(
        pa.table({"entity_id": pa.array([0], pa.int32()), "friend_id": pa.array([1], pa.int32())}),
        run / "friendships.parquet",
    )
    assert (
        problems(run)[0] == "table friendships: friendships.parquet is not in the manifest (added)"
    )


def test_unreadable_or_missing_manifest(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run / "manifest.json").write_text("{not json")
    with pytest.raises(RunStoreError, match="cannot be read as JSON"):
        verify(run)
    assert main(["verify", str(run)]) == 2
    (run / "manifest.json").unlink()
    assert main(["verify", str(run)]) == 2
    assert main(["verify", str(run / "absent")]) == 2
    assert "no run folder" in capsys.readouterr().err


def test_unsealed_run(run: Path) -> None:
    def change(m: dict[str, Any]) -> None:
        for key in ("ledger", "table_digests", "field_digests", "manifest_digest"):
            del m[key]

    edit_manifest(run, change)
    assert problems(run)[0].startswith("manifest: no 'manifest_digest': the run was not sealed")


# -- runs sealed with credsim-ledger-v4 --------------------------------------------------------


def test_v4_run_still_verifies_with_sha256_digests(run: Path, run_v4: Path) -> None:
    """v4 (the tables' content and files digested with SHA-256) and v6 (BLAKE3) hold the same
    records, chained alike (another genesis), and the same other tables."""
    m4 = json.loads((run_v4 / "manifest.json").read_text())
    m5 = json.loads((run / "manifest.json").read_text())
    assert m4["ledger"]["encoding"] == "credsim-ledger-v4"
    assert all(set(t) == {"rows", "sha256"} for t in m4["tables"].values())
    assert all(set(t) == {"rows", "blake3"} for t in m5["tables"].values())
    report = verify(run_v4)
    assert report.ok, report.problems
    assert report.head == m4["ledger"]["head"] != m5["ledger"]["head"]
    for name in m5["tables"]:
        a, b = pq.read_table(run / f"{name}.parquet"), pq.read_table(run_v4 / f"{name}.parquet")
        if name == "records":
            a, b = a.drop_columns(["digest"]), b.drop_columns(["digest"])
        assert a.equals(b), name
        if name != "records":  # same content, another digest
            assert m4["table_digests"][name] != m5["table_digests"][name]


def test_v4_changed_table_is_named_by_its_sha256(run_v4: Path) -> None:
    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[0]["start_day"] += 1
        return rows

    rewrite(run_v4 / "lists.parquet", change)
    assert problems(run_v4) == [
        "table lists: file lists.parquet altered (sha256 differs from the manifest)",
        "table lists: content digest mismatch (rows changed, added or removed)",
    ]


# -- runs sealed with credsim-ledger-v3 --------------------------------------------------------


def test_v3_run_still_verifies_and_seals_the_same_records(run: Path, run_v3: Path) -> None:
    lg = json.loads((run_v3 / "manifest.json").read_text())["ledger"]
    assert lg["encoding"] == "credsim-ledger-v3"
    report = verify(run_v3)
    assert report.ok, report.problems
    assert report.head == lg["head"] and report.records == lg["records"]
    a = pq.read_table(run / "records.parquet")
    b = pq.read_table(run_v3 / "records.parquet")
    assert a.drop_columns(["digest"]).equals(b.drop_columns(["digest"]))
    assert a.column("digest") != b.column("digest")  # another chain
    v4 = json.loads((run / "manifest.json").read_text())["ledger"]
    assert v4["head"] != lg["head"] and v4["columns"] == lg["columns"]


def test_v3_modified_record_is_named(run_v3: Path) -> None:
    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[K]["points"] -= 1
        return rows

    rewrite(run_v3 / "records.parquet", change)
    found = problems(run_v3)
    assert [p for p in found if p.startswith("record ")] == [
        f"record {K} (record_id {K}): digest mismatch - content changed"
    ]


# -- runs sealed with credsim-ledger-v1 --------------------------------------------------------


def test_v1_run_still_verifies(run_v1: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = json.loads((run_v1 / "manifest.json").read_text())
    lg = m["ledger"]
    assert lg["encoding"] == "credsim-ledger-v1" and "vocabularies" not in lg
    assert lg["columns"] == [f"{f.name}:{f.type}" for f in RECORDS_CONTENT]
    report = verify(run_v1)
    assert report.ok, report.problems
    assert report.head == lg["head"] and report.records == lg["records"]
    assert main(["verify", str(run_v1), "--expect", m["manifest_digest"]]) == 0
    assert capsys.readouterr().out.startswith(f"intact: {run_v1}")


def test_v1_and_v2_seal_the_same_records(run: Path, run_v1: Path) -> None:
    for name in ("population", "scores", "lists", "measures"):
        assert pq.read_table(run / f"{name}.parquet").equals(
            pq.read_table(run_v1 / f"{name}.parquet")
        )
    a = pq.read_table(run / "records.parquet")
    b = pq.read_table(run_v1 / "records.parquet")
    assert a.drop_columns(["digest"]).equals(b.drop_columns(["digest"]))
    assert a.column("digest") != b.column("digest")


@pytest.mark.parametrize(
    ("column", "value"), [("points", -123.0), ("source_agency", "someone-else"), ("day", 0)]
)
def test_v1_modified_record_is_caught(run_v1: Path, column: str, value: Any) -> None:
    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert rows[K][column] != value
        rows[K][column] = value
        return rows

    rewrite(run_v1 / "records.parquet", change)
    found = problems(run_v1)
    assert f"record {K} (record_id {K}): digest mismatch - content changed" in found
    assert not any(p.startswith(f"record {K + 1} ") for p in found)


def test_v1_swapped_records_and_altered_seed_are_caught(run_v1: Path) -> None:
    def change(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[K], rows[K + 1] = rows[K + 1], rows[K]
        return rows

    rewrite(run_v1 / "records.parquet", change)
    edit_manifest(run_v1, lambda m: m.update(seed=2))
    found = problems(run_v1)
    assert found[0].startswith("manifest: field 'seed' altered (the ledger's genesis")
    assert any(p.startswith(f"record {K} (record_id {K + 1}): digest mismatch") for p in found)


# -- the chain and the specification ------------------------------------------------------


@pytest.mark.parametrize("split", [0, 64])
@pytest.mark.parametrize("size", [ledger.RECORD_LAYOUT.size, 81, 1])
def test_fast_chain_matches_hashlib(size: int, split: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain and the links by hashlib, by OpenSSL's loop (SHA extensions off) and, where
    the CPU has them, with the SHA extensions: the same digests, the previous digest before
    the row or after its first 64 bytes (v4)."""
    split = min(split, 64 * (size // 64))
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, (1000, size), dtype=np.uint8)
    start = bytes(range(32))
    expected = ledger.chain_py(rows, start, split)
    first = hashlib.sha256(rows[0, :split].tobytes() + start + rows[0, split:].tobytes())
    assert expected[0].tobytes() == first.digest()
    prevs = np.vstack([np.frombuffer(start, np.uint8), expected[:-1]])
    assert np.array_equal(ledger.links_py(rows, prevs, split), expected)
    for sha_extensions in (True, False):
        monkeypatch.setattr(sha_ni, "ENABLED", sha_extensions)
        assert np.array_equal(ledger.chain(rows, start, split=split), expected)
        assert np.array_equal(ledger.links(rows, prevs, split=split), expected)
    assert ledger.chain(rows[:0], start, split=split).shape == (0, 32)


def test_hashlib_fallback_gives_the_same_result(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_chain, "_FAST", None)
    assert not ledger.fast_path()
    assert verify(run).ok
    m = json.loads((run / "manifest.json").read_text())
    resealed = ledger.Sealer(m).add("records", pq.read_table(run / "records.parquet"))
    assert resealed.column("digest")[-1].as_py().hex() == m["ledger"]["head"][:8]


def test_batches_do_not_change_digests(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger, "BATCH_ROWS", 7)
    assert verify(run).ok


_FMT = STRUCT_FORMAT


def _scalar(value: Any, t: str, fmt: dict[str, str] = _FMT) -> bytes:
    if value is None:
        value = 0
    elif isinstance(value, dt.date):
        value = (value - dt.date(1970, 1, 1)).days
    return struct.pack("<" + fmt[t], value)


_WORD = {t: "d" if t == "double" else "q" for t in _FMT}  # every value one 64-bit word
_CODE = {"u16": "H", "u32": "I"}


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("which", ["v7", "v6", "v5", "v4", "v3", "v2"])
def test_record_digests_follow_the_documented_encoding(
    run: Path,
    run_v6: Path,
    run_v5: Path,
    run_v4: Path,
    run_v3: Path,
    run_v2: Path,
    which: str,
) -> None:
    """docs/integrity.md (credsim-ledger-v7 to -v2), re-implemented with struct, hashlib and a
    compression function of the tests' own only: v7's rows leave null columns out and each
    link is SHA-256's compression function over the row and zeros to a whole block, from the
    previous digest; v6 to v2 the same 81-byte rows, v6 to v4 hashing each row's first 64
    bytes, the previous digest, the row's last 17 bytes, v3 and v2 the previous digest, then
    the row; v7 and v6 store each digest's first 4 bytes, v5 to v3
    store each digest's first 8 bytes, v2 all 32."""
    run = {"v7": run, "v6": run_v6, "v5": run_v5, "v4": run_v4, "v3": run_v3, "v2": run_v2}[which]
    m = json.loads((run / "manifest.json").read_text())
    lg = m["ledger"]
    vocabularies = lg["vocabularies"]
    basis = {
        "scheme_sha256": m["scheme"]["sha256"],
        "seed": m["seed"],
        "columns": lg["columns"],
        "vocabularies": vocabularies,
    }
    encoding = f"credsim-ledger-{which}"
    assert lg["encoding"] == encoding
    genesis = hashlib.sha256(encoding.encode() + b"\0" + _canonical(basis)).digest()
    assert genesis.hex() == lg["genesis"]
    columns = [c.split(":") for c in lg["columns"]]
    assert len(columns) <= 32  # a uint32 null mask
    rows = pq.read_table(run / "records.parquet").to_pylist()
    prev = genesis
    sizes = set()
    for rec in rows:
        nulls, parts = 0, []
        for j, (name, t, *code) in enumerate(columns):
            v = rec[name]
            if v is None:
                nulls |= 1 << j
                if which == "v7":  # a null column takes no bytes
                    continue
            if t == "string":
                k = 0 if v is None else vocabularies[name].index(v)
                parts.append(struct.pack("<" + _CODE[code[0]], k))
            else:
                parts.append(_scalar(v, t))  # natural width
        row = struct.pack("<I", nulls) + b"".join(parts)
        sizes.add(len(row))
        if which == "v7":
            prev = v7_link(prev, row)
        elif which in ("v6", "v5", "v4"):
            prev = hashlib.sha256(row[:64] + prev + row[64:]).digest()
        else:
            prev = hashlib.sha256(prev + row).digest()
        tag = {"v7": 4, "v6": 4, "v2": 32}.get(which, 8)
        assert prev[:tag] == rec["digest"], rec["record_id"]
    assert prev.hex() == lg["head"]
    # v7's rows vary with their nulls (Nanjing's: 59 and 61 bytes, one block each; rows of two
    # blocks: tests/test_ledger_v2.py); the others are 81 bytes
    assert max(sizes) < 81 if which == "v7" else sizes == {81}


def test_v1_record_digests_follow_the_documented_encoding(run_v1: Path) -> None:
    """docs/integrity.md (credsim-ledger-v1), re-implemented with struct and hashlib only."""
    m = json.loads((run_v1 / "manifest.json").read_text())
    basis = json.dumps(
        {"scheme_sha256": m["scheme"]["sha256"], "seed": m["seed"]},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    genesis = hashlib.sha256(b"credsim-ledger-v1\0" + basis.encode()).digest()
    assert genesis.hex() == m["ledger"]["genesis"]
    columns = [c.split(":", 1) for c in m["ledger"]["columns"]]
    rows = pq.read_table(run_v1 / "records.parquet").to_pylist()
    prev = genesis
    for rec in rows:
        nulls, parts = 0, []
        for j, (name, t) in enumerate(columns):
            v = rec[name]
            if v is None:
                nulls |= 1 << j
            if t == "string":
                parts.append(bytes(16) if v is None else hashlib.sha256(v.encode()).digest()[:16])
            else:
                parts.append(_scalar(v, t, _WORD))
        row = struct.pack("<Q", nulls) + b"".join(parts)
        assert len(row) == ledger.RECORD_LAYOUT.size == 232
        prev = hashlib.sha256(prev + row).digest()
        assert prev == rec["digest"], rec["record_id"]
    assert prev.hex() == m["ledger"]["head"]


@pytest.mark.parametrize("which", ["v7", "v4", "v3", "v2", "v1"])
def test_table_and_manifest_digests_follow_the_documented_encoding(
    run: Path, run_v4: Path, run_v3: Path, run_v2: Path, run_v1: Path, which: str
) -> None:
    """docs/integrity.md: the tables' content digests credsim-table-v2 (since ledger v5: BLAKE3,
    validity bits, 32-bit lengths) and -v1 (before: SHA-256, a validity byte a row, 64-bit
    lengths), re-implemented with struct, hashlib and blake3 only; the records' digest from
    the chain and the manifest digest as in every version."""
    run = {"v7": run, "v4": run_v4, "v3": run_v3, "v2": run_v2, "v1": run_v1}[which]
    m = json.loads((run / "manifest.json").read_text())
    sha = hashlib.sha256
    v2 = which == "v7"
    h_of = blake3.blake3 if v2 else sha
    tv = b"2" if v2 else b"1"
    columns = json.dumps(m["ledger"]["columns"], separators=(",", ":"))
    records = sha(
        b"credsim-table-v1\0records\0"
        + columns.encode()
        + m["ledger"]["records"].to_bytes(8, "little")
        + bytes.fromhex(m["ledger"]["head"])
    )
    assert records.hexdigest() == m["table_digests"]["records"]
    how = "blake3" if v2 else "sha256"  # each file's bytes
    for name in m["tables"]:
        data = (run / f"{name}.parquet").read_bytes()
        assert m["tables"][name][how] == h_of(data).hexdigest(), name
    for name in m["tables"]:
        if name == "records":
            continue
        table = pq.read_table(run / f"{name}.parquet")
        h = h_of(
            b"credsim-table-v"
            + tv
            + b"\0"
            + name.encode()
            + b"\0"
            + len(table.schema).to_bytes(4, "little")
        )
        for f in table.schema:
            values = table.column(f.name).to_pylist()
            t = str(f.type)
            if v2:  # bit i % 8 of byte i // 8, the last byte's other bits zero
                validity = bytes(
                    sum(1 << k for k, v in enumerate(values[i : i + 8]) if v is not None)
                    for i in range(0, len(values), 8)
                )
            else:
                validity = bytes(v is not None for v in values)
            data = b""
            if t == "string":
                width = "<i" if v2 else "<q"
                fixed = b"".join(struct.pack(width, len(v.encode()) if v else 0) for v in values)
                data = b"".join(v.encode() for v in values if v is not None)
            elif t == "fixed_size_binary[32]":
                fixed = b"".join(v or bytes(32) for v in values)
            else:
                fixed = b"".join(_scalar(v, t) for v in values)
            column = h_of(
                b"credsim-column-v"
                + tv
                + b"\0"
                + f.name.encode()
                + b"\0"
                + t.encode()
                + b"\0"
                + len(values).to_bytes(8, "little")
                + h_of(validity).digest()
                + h_of(fixed).digest()
                + h_of(data).digest()
            )
            h.update(column.digest())
        assert h.hexdigest() == m["table_digests"][name], name
    rest = {k: v for k, v in m.items() if k != "manifest_digest"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert sha(text.encode()).hexdigest() == m["manifest_digest"]


def test_docs_list_the_current_record_layout() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "integrity.md").read_text()
    v2, v1 = docs.split("## Specification (credsim-ledger-v1)")
    strings = {f.name: [] for f in RECORDS_CONTENT if f.type == pa.string()}
    layout = ledger.PackedLayout.of_schema(RECORDS_CONTENT, strings)
    for name, t, offset, width in layout.fields:
        assert f"| {offset} | {width} | `{name}` | {t} |" in v2, name
    assert f"**{layout.size} bytes**" in v2 and layout.size == 81
    assert '`"<IqiiiiHHHHddH?HHqii?i?"`' in v2 and struct.calcsize("<IqiiiiHHHHddH?HHqii?i?") == 81
    for name, t, offset, width in ledger.RECORD_LAYOUT.fields:
        assert f"| {offset} | {width} | `{name}` | {t} |" in v1, name
    assert f"**{ledger.RECORD_LAYOUT.size} bytes**" in v1
