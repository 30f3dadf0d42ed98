"""Check a sealed run folder on disk: ``credsim verify DIR``.

:func:`verify` re-derives every digest the writer sealed into a run (see
:mod:`credsim.store.ledger` and docs/integrity.md): the hash chain over the records, the content
digest and file SHA-256 of every table, and the manifest digest. It reports every discrepancy it
finds, in the order manifest, tables (in their canonical order), records; each problem names the
manifest field, table or record that fails. The records are streamed in batches, so memory does
not grow with the run.

This checks the *files*. It says nothing about whether the simulated system was honest: the
``intrusion`` scenario tampers inside the simulation, through the system's own write path, and a
run of it verifies as intact - the tampering is part of what was simulated and recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from credsim.errors import RunStoreError
from credsim.store import ledger
from credsim.store.parquet import file_digest
from credsim.store.schema import IMPORT_TABLES, REQUIRED_TABLES, SCHEMAS
from credsim.store.verify_chain import RecordChain, _short
from credsim.store.writer import MANIFEST


@dataclass
class VerifyReport:
    """What :func:`verify` found. ``ok`` when ``problems`` is empty."""

    run_dir: Path
    problems: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    records: int | None = None
    head: str | None = None
    manifest_digest: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """Plain-language result: 'intact' with the digests to record, or every problem."""
        if self.ok:
            lines = [
                f"intact: {self.run_dir}",
                f"  {len(self.tables)} tables ({', '.join(self.tables)}), "
                f"{self.records or 0:,} records: every digest re-derived and matching",
                f"  ledger head      {self.head}",
                f"  manifest digest  {self.manifest_digest}",
            ]
            return "\n".join(lines)
        n = len(self.problems)
        lines = [f"TAMPERED: {self.run_dir}: {n} problem{'s' if n != 1 else ''}"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def verify(run_dir: str | Path, expect: str | None = None) -> VerifyReport:
    """Re-derive every digest of the run in ``run_dir`` and report what does not match.

    ``expect``, if given, is a manifest digest or ledger head recorded elsewhere when the run
    was made (an anchor: without one, someone who rewrites the files *and* recomputes every
    digest cannot be caught). Raises :class:`~credsim.errors.RunStoreError` if the folder or
    its manifest cannot be read at all; everything else is reported in the returned report.
    """
    return _Verifier(Path(run_dir).expanduser().absolute(), expect).run()


def _read_manifest(run: Path) -> dict[str, Any]:
    if not run.exists():
        raise RunStoreError(f"no run folder at {run}")
    if not run.is_dir():
        raise RunStoreError(f"{run} is a file, not a run folder")
    path = run / MANIFEST
    if not path.is_file():
        raise RunStoreError(
            f"{run} has no {MANIFEST}: not a credsim run, or its manifest was deleted"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunStoreError(f"{path} cannot be read as JSON (corrupt?): {exc}") from exc
    if not isinstance(manifest, dict):
        raise RunStoreError(f"{path} does not hold a JSON object")
    return manifest


def _schema_notes(name: str, schema: pa.Schema) -> list[str]:
    """How a stored table's columns differ from the current schema (to explain a mismatch)."""
    expected = SCHEMAS.get(name) or IMPORT_TABLES.get(name)
    if expected is None:
        return []
    notes = []
    missing = [f.name for f in expected if f.name not in schema.names]
    extra = [c for c in schema.names if c not in expected.names]
    if missing:
        notes.append(f"missing column(s) {', '.join(missing)}")
    if extra:
        notes.append(f"unexpected column(s) {', '.join(extra)}")
    for f in expected:
        if f.name in schema.names and schema.field(f.name).type != f.type:
            notes.append(f"column '{f.name}' stored as {schema.field(f.name).type}, not {f.type}")
    return notes


class _Verifier:
    def __init__(self, run: Path, expect: str | None) -> None:
        self.run_dir = run
        self.expect = expect.strip().lower() if expect else None
        self.m = _read_manifest(run)
        self.report = VerifyReport(run)
        self.manifest_problems: dict[str, str] = {}  # field path -> detail
        self.table_problems: list[str] = []  # tables in order; a table's records within it
        self.altered: set[str] = set()  # top-level manifest fields whose field digest differs

    # -- manifest -------------------------------------------------------------------------

    def _section(self, key: str) -> dict[str, Any]:
        value = self.m.get(key)
        return value if isinstance(value, dict) else {}

    def check_manifest(self) -> None:
        m = self.m
        recomputed = ledger.manifest_digest(m)
        self.report.manifest_digest = recomputed
        stored = m.get("manifest_digest")
        if stored is None:
            self.manifest_problems["manifest_digest"] = (
                "manifest: no 'manifest_digest': the run was not sealed (written by a credsim "
                "before integrity checks) or the field was removed"
            )
            return
        fields = m.get("field_digests")
        if isinstance(fields, dict):
            now = ledger.field_digests(m)
            for key in sorted(set(now) | set(fields)):
                if key not in fields:
                    self.manifest_problems[key] = f"manifest: field '{key}' added"
                    self.altered.add(key)
                elif key not in now:
                    self.manifest_problems[key] = f"manifest: field '{key}' removed"
                    self.altered.add(key)
                elif fields[key] != now[key]:
                    self.altered.add(key)
        if stored != recomputed and not self.altered:
            self.manifest_problems["manifest_digest"] = (
                "manifest: field 'manifest_digest' altered, or a field altered and "
                f"'field_digests' recomputed (manifest digest mismatch: recorded "
                f"{_short(str(stored))}, the content gives {_short(recomputed)})"
            )
        elif stored == recomputed:
            self.altered.clear()  # the field digests are covered by the manifest digest

    def blame(self, path: str, manifest_detail: str, table_problem: str) -> None:
        """A manifest field disagrees with the files: blame the side that was altered."""
        if path.split(".")[0] in self.altered:
            self.manifest_problems[path] = (
                f"manifest: field '{path}' altered ({manifest_detail}; manifest digest mismatch)"
            )
        else:
            self.table_problems.append(table_problem)

    # -- tables ---------------------------------------------------------------------------

    def check_tables(self) -> None:
        listed = self._section("tables")
        if "tables" not in self.m:
            self.manifest_problems.setdefault("tables", "manifest: no 'tables' section")
        known = [*SCHEMAS, *IMPORT_TABLES]
        for name in sorted(n for n in listed if n not in known):
            self.blame(
                f"tables.{name}",
                f"lists {name!r}, which is not a credsim table",
                f"manifest: lists {name!r}, which is not a credsim table",
            )
        for name in known:
            path = self.run_dir / f"{name}.parquet"
            if not path.is_file():
                if name in listed or name in REQUIRED_TABLES:
                    self.table_problems.append(f"table {name}: {path.name} is missing (deleted)")
                continue
            if name not in listed:
                self.blame(
                    f"tables.{name}",
                    f"the manifest does not list {path.name}",
                    f"table {name}: {path.name} is not in the manifest (added)",
                )
            self.report.tables.append(name)
            meta = listed.get(name)
            self.check_table(name, meta if isinstance(meta, dict) else {})

    def check_table(self, name: str, meta: dict[str, Any]) -> None:
        path = self.run_dir / f"{name}.parquet"
        how = ledger.file_digest_name(self.encoding)  # blake3 since v5, sha256 before
        file_sha = file_digest(path, how)
        if meta and file_sha != meta.get(how):
            self.blame(
                f"tables.{name}.{how}",
                f"the file's {how} is {_short(file_sha)}",
                f"table {name}: file {path.name} altered ({how} differs from the manifest)",
            )
        chain = None
        try:
            schema = pq.read_schema(path)
            if name == "records":
                chain = RecordChain(self, schema)
                pf = pq.ParquetFile(path, read_dictionary=chain.strings_in(schema))
                hasher = None
            else:
                pf = pq.ParquetFile(path)
                version = ledger.table_version(self.encoding)
                hasher = ledger.TableHasher(name, schema, version)  # the content as stored
            for batch in pf.iter_batches(batch_size=ledger.BATCH_ROWS):
                if chain is not None:
                    chain.update(batch)
                else:
                    hasher.update(batch)  # type: ignore[union-attr]
        except (OSError, pa.ArrowException) as exc:
            self.table_problems.append(
                f"table {name}: {path.name} cannot be read, truncated or corrupt ({exc})"
            )
            return
        except RunStoreError as exc:
            self.table_problems.append(f"table {name}: {exc}")
            return
        if chain is not None:
            notes = chain.finish()
            rows, digest = chain.pos, chain.content_digest()
        else:
            notes = _schema_notes(name, schema)
            rows, digest = hasher.rows, hasher.hexdigest()  # type: ignore[union-attr]
        recorded = self._section("table_digests").get(name)
        if "manifest_digest" in self.m and digest != recorded:
            self.blame(
                f"table_digests.{name}",
                f"the table's content gives {_short(digest)}",
                f"table {name}: content digest mismatch (rows changed, added or removed"
                + "".join(f"; {n}" for n in notes)
                + ")",
            )
        if meta and rows != meta.get("rows"):
            self.blame(
                f"tables.{name}.rows",
                f"says {meta.get('rows')}; {path.name} holds {rows} rows",
                f"table {name}: {path.name} holds {rows} rows, the manifest says "
                f"{meta.get('rows')}",
            )
        counts = self._section("counts")
        if name in counts and counts[name] != rows:
            self.blame(
                f"counts.{name}",
                f"says {counts[name]}; {path.name} holds {rows} rows",
                f"table {name}: {path.name} holds {rows} rows, the manifest's counts say "
                f"{counts[name]}",
            )

    # -- the whole --------------------------------------------------------------------------

    def run(self) -> VerifyReport:
        self.check_manifest()
        self.check_ledger_header()
        self.check_tables()
        if self.expect and self.expect not in {self.report.manifest_digest, self.report.head}:
            self.manifest_problems["expect"] = (
                f"manifest: neither the manifest digest ({_short(self.report.manifest_digest)}) "
                f"nor the ledger head matches the expected {_short(self.expect)}: this is not "
                "the run that was recorded"
            )
        for key in sorted(self.altered):
            if not any(p == key or p.startswith(key + ".") for p in self.manifest_problems):
                self.manifest_problems[key] = (
                    f"manifest: field '{key}' altered (manifest digest mismatch)"
                )
        self.report.problems = list(self.manifest_problems.values()) + self.table_problems
        return self.report

    def check_ledger_header(self) -> None:
        """The ledger's encoding and genesis; fixes the chain's starting point."""
        lg = self._section("ledger")
        self.encoding = lg.get("encoding")
        v2 = self.encoding in ledger.PACKED  # (since v2: columns and vocabularies)
        self.genesis = self._derived_genesis()
        if "manifest_digest" not in self.m and not lg:
            return
        if not lg:
            self.manifest_problems.setdefault("ledger", "manifest: no 'ledger' section")
            return
        if self.encoding not in ledger.ENCODINGS:
            self.manifest_problems["ledger.encoding"] = (
                f"manifest: ledger encoding {self.encoding!r} is not one of "
                f"{', '.join(repr(e) for e in ledger.ENCODINGS)}"
            )
        claimed = lg.get("genesis")
        bound = "the seed and scheme sha256" + (
            " (with the ledger's columns and vocabularies)" if v2 else ""
        )
        if claimed != self.genesis.hex():
            culprits = [k for k in ("seed", "scheme") if k in self.altered]
            vocab = self._vocabulary_problem() if v2 and "ledger" in self.altered else None
            if culprits:
                for k in culprits:
                    path = "scheme.sha256" if k == "scheme" else k
                    self.manifest_problems[path] = (
                        f"manifest: field '{path}' altered (the ledger's genesis no longer "
                        "derives from it; manifest digest mismatch)"
                    )
            elif vocab is not None:
                self.manifest_problems["ledger.vocabularies"] = (
                    f"manifest: field 'ledger.vocabularies' altered ({vocab}; the ledger's "
                    "genesis no longer derives from it; manifest digest mismatch)"
                )
            elif "ledger" in self.altered and v2:
                self.manifest_problems["ledger.genesis"] = (
                    "manifest: field 'ledger.genesis', 'ledger.columns' or 'ledger.vocabularies' "
                    "altered (the genesis does not derive from the columns, vocabularies, seed "
                    "and scheme sha256; manifest digest mismatch)"
                )
            elif "ledger" in self.altered:
                self.manifest_problems["ledger.genesis"] = (
                    "manifest: field 'ledger.genesis' altered (it does not derive from the "
                    "seed and scheme sha256; manifest digest mismatch)"
                )
            else:
                fields = "'seed', 'scheme.sha256'" + (
                    ", 'ledger.columns', 'ledger.vocabularies'" if v2 else ""
                )
                self.manifest_problems["ledger.genesis"] = (
                    f"manifest: the ledger genesis does not derive from {bound}: field "
                    f"{fields} or 'ledger.genesis' altered (and the manifest's digests "
                    "recomputed to match)"
                )
            try:  # check the chain from the recorded start, so records are judged on their own
                self.genesis = bytes.fromhex(str(claimed))
                if len(self.genesis) != 32:
                    raise ValueError
            except ValueError:
                self.genesis = self._derived_genesis()
        elif v2 and not self.altered:
            vocab = self._vocabulary_problem()
            if vocab is not None:
                self.manifest_problems["ledger.vocabularies"] = (
                    f"manifest: field 'ledger.vocabularies' or 'labels' altered ({vocab}; and "
                    "the manifest's digests recomputed to match)"
                )

    def _derived_genesis(self) -> bytes:
        """The genesis the manifest's fields give (v1 when the ledger names no encoding)."""
        lg = self._section("ledger")
        encoding = lg.get("encoding")
        if encoding in ledger.PACKED:
            return ledger.genesis(self.m, encoding, lg.get("columns"), lg.get("vocabularies"))
        return ledger.genesis(self.m, ledger.ENCODING_V1)

    def _vocabulary_problem(self) -> str | None:
        """How ``ledger.vocabularies`` departs from what sealing gives for the run's
        ``labels`` (each vocabulary: the labels, then the other values sorted), or None."""
        lg = self._section("ledger")
        vocabs = lg.get("vocabularies")
        if not isinstance(vocabs, dict):
            return "not a mapping of columns to their values"
        columns = lg.get("columns")
        if isinstance(columns, list):
            strings = [str(c).split(":")[0] for c in columns if ":string" in str(c)]
            missing = [c for c in strings if c not in vocabs]
            extra = sorted(c for c in vocabs if c not in strings)
            if missing:
                return f"no vocabulary for {', '.join(repr(c) for c in missing)}"
            if extra:
                return f"a vocabulary for {', '.join(repr(c) for c in extra)}, no string column"
        labels = self.m.get("labels")
        trusted = "labels" not in self.altered  # else only the vocabularies' form is checked
        for name in sorted(vocabs):
            given = labels.get(name) if isinstance(labels, dict) else None
            given = given if isinstance(given, list) else None
            why = ledger.check_vocabulary(vocabs[name], given, order=trusted)
            if why is not None:
                return f"{name!r}: {why}"
        return None
