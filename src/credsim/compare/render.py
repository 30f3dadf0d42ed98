"""The comparison tables as CSV and Markdown, and writing them atomically into a folder.

Output is deterministic: the same schemes and criteria give byte-identical files (no dates).
The folder is written like a run folder: into a hidden temporary sibling, fsynced, renamed at
the end; an existing non-empty folder is refused, never overwritten.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from credsim._fsio import fsync_file, publish_dir, refuse_non_empty, staging_dir
from credsim.compare.criteria import (
    Criteria,
    Index,
    evaluate_eu,
    evaluate_principle,
    privacy_index,
)
from credsim.compare.properties import Derived, derive
from credsim.errors import CredsimError
from credsim.schemes.loader import LoadedScheme

TABLES = ["inputs", "incentives", "privacy_control", "ethics", "eu_ai_act"]
CHANNELS = ["camera", "agency", "informant", "app"]


class OutputExistsError(CredsimError):
    """The output folder exists and is not empty: a comparison never overwrites."""


@dataclass(frozen=True)
class Compared:
    loaded: LoadedScheme
    derived: Derived

    @property
    def id(self) -> str:
        return self.loaded.scheme.id


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    intro: str
    header: list[str]
    rows: list[list[str]]
    details: list[str]  # extra Markdown after the table
    md_skip: tuple[str, ...] = ()  # columns left out of the Markdown table (shown in details)

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.header)
        w.writerows(self.rows)
        return buf.getvalue()

    def markdown(self, provenance: str) -> str:
        lines = [f"# {self.title}", "", self.intro.strip(), "", provenance, ""]
        keep = [i for i, h in enumerate(self.header) if h not in self.md_skip]
        lines += md_table(
            [self.header[i] for i in keep], [[row[i] for i in keep] for row in self.rows]
        )
        if self.details:
            lines += ["", *self.details]
        return "\n".join(lines).rstrip() + "\n"


def md_cell(v: str) -> str:
    return v.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ") or " "


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(md_cell(h) for h in header) + " |"]
    out.append("|" + "|".join(" --- " for _ in header) + "|")
    out += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return out


def num(x: float) -> str:
    return f"{x:g}"


def counted(c: Counter[str]) -> str:
    return "; ".join(f"{k} ({n})" if n > 1 else k for k, n in sorted(c.items()))


# --------------------------------------------------------------------------------------------
# The five tables


def inputs_table(cs: list[Compared], crit: Criteria) -> Table:
    cats = crit.input_categories
    header = [
        "scheme",
        "name",
        *(c.id for c in cats),
        *CHANNELS,
        "private_sector_data",
        "items",
        "observed_behaviours",
        "detail",
        "private_sector_data_basis",
    ]
    rows = []
    for c in cs:
        d, s = c.derived, c.loaded.scheme
        detail = "; ".join(f"{k}: {', '.join(v)}" for k, v in d.inputs.items() if v)
        rows.append(
            [
                c.id,
                s.name,
                *(d[f"input_{k.id}"].shown for k in cats),
                *(d[f"{k}_channel"].shown for k in CHANNELS),
                d["private_sector_data"].shown,
                str(len(s.items)),
                str(sum(1 for b in s.behaviours.values() if b.channels)),
                detail,
                d["private_sector_data"].basis,
            ]
        )
    defs = ["## Input categories", ""]
    defs += [
        f"- **{k.label}** (`{k.id}`): "
        + (
            f"behaviour categories {', '.join(k.behaviour_categories)}"
            if k.behaviour_categories
            else ""
        )
        + (" " if k.behaviour_categories and k.channels else "")
        + (f"channels {', '.join(k.channels)}" if k.channels else "")
        + f". {k.why}"
        for k in cats
    ]
    return Table(
        "inputs",
        "Inputs (RQ1)",
        "What each scheme collects (src-001, RQ1): input categories of the behaviours it "
        "observes, the channels that observe them, whether private-sector data are used "
        "(`unknown`: the scheme's sources are silent) and the number of items.",
        header,
        rows,
        defs,
        md_skip=("name", "private_sector_data_basis"),
    )


def incentives_table(cs: list[Compared], crit: Criteria) -> Table:
    header = [
        "scheme",
        "name",
        "rewards",
        "reward_kinds",
        "penalties",
        "penalty_kinds",
        "low_score_penalised",
        "relatives_targeted",
        "items_gaining_points",
        "items_losing_points",
        "red_lists",
        "black_lists",
        "published_black_lists",
        "low_score_basis",
    ]
    rows = []
    details = ["## Measures", ""]
    for c in cs:
        d, s = c.derived, c.loaded.scheme
        rows.append(
            [
                c.id,
                s.name,
                str(sum(d.reward_kinds.values())),
                counted(d.reward_kinds),
                str(sum(d.penalty_kinds.values())),
                counted(d.penalty_kinds),
                d["low_score_penalised"].shown,
                d["relatives_targeted"].shown,
                str(sum(1 for it in s.items.values() if it.points.value > 0)),
                str(sum(1 for it in s.items.values() if it.points.value < 0)),
                str(sum(1 for lst in s.lists.values() if lst.kind == "red")),
                str(sum(1 for lst in s.lists.values() if lst.kind == "black")),
                str(sum(1 for lst in s.lists.values() if lst.kind == "black" and lst.published)),
                d["low_score_penalised"].basis,
            ]
        )
        details.append(f"**{c.id}**" + ("" if s.measures else ": no measures"))
        details.append("")
        for k, m in s.measures.items():
            t = m.trigger
            trig = (
                f"list {t.on_list}"
                if t.on_list
                else (f"grades {', '.join(t.grades)}" if t.grades else "enrolment")
            )
            what = "reward" if m.reward else "penalty"
            details.append(
                f"- {what} `{k}` ({m.kind}): {m.name}; trigger: {trig}; "
                f"targets: {', '.join(m.targets)}"
            )
        details.append("")
    return Table(
        "incentives",
        "Rewards and penalties (RQ2)",
        "Rewards and penalties by kind (src-001, RQ2), whether a low score itself is penalised "
        "(a sanction triggered by a grade or by a list entered through a score threshold or "
        "grade), and whether sanctions reach relatives.",
        header,
        rows,
        details,
    )


def privacy_table(cs: list[Compared], crit: Criteria) -> tuple[Table, list[tuple[Compared, Index]]]:
    pc = crit.privacy_control
    scored = [(c, privacy_index(pc, c.derived)) for c in cs]
    scored.sort(key=lambda x: (x[1].index, x[1].high, x[0].id))
    comps = pc.components
    header = [
        "rank",
        "scheme",
        "name",
        "index",
        "index_low",
        "index_high",
        "index_max",
        "unknown",
        *(k.id for k in comps),
        "components",
    ]
    rows = []
    for rank, (c, ix) in enumerate(scored, 1):
        rows.append(
            [
                str(rank),
                c.id,
                c.loaded.scheme.name,
                num(ix.index),
                num(ix.low),
                num(ix.high),
                num(ix.maximum),
                " ".join(ix.unknown),
                *(num(sc.points) for sc in ix.components),
                "; ".join(
                    f"{sc.component.id}: {sc.component.prop}={sc.fact.shown} -> {num(sc.points)}"
                    for sc in ix.components
                ),
            ]
        )
    details = ["## Components", "", pc.description.strip(), ""]
    details += md_table(
        ["component", "group", "property", "points when", "points", "why", "source"],
        [
            [
                f"{k.id} ({k.label})",
                k.group,
                k.prop,
                "yes" if k.is_ else "no",
                num(k.points),
                k.why,
                k.source,
            ]
            for k in comps
        ],
    )
    details += ["", "## What decided each component", ""]
    for c, ix in scored:
        details.append(f"**{c.id}** (index {num(ix.index)}, range {num(ix.low)}-{num(ix.high)})")
        details.append("")
        details += [
            f"- {sc.component.id}: {sc.component.prop}={sc.fact.shown} -> {num(sc.points)} "
            f"({sc.fact.basis})"
            for sc in ix.components
        ]
        details.append("")
    table = Table(
        "privacy_control",
        "From maximum privacy to maximum control (RQ3)",
        "Schemes ordered by the privacy-control index (src-001, RQ3): 0 is maximum privacy, "
        "`index_max` maximum control. A component scores its points when its property has the "
        "value given, nothing otherwise, and half when the property is unknown; `index_low` and "
        "`index_high` are the range the unknowns leave open. Ties are ordered by `index_high`, "
        "then by scheme id.",
        header,
        rows,
        details,
        md_skip=("components",),
    )
    return table, scored


def ethics_table(cs: list[Compared], crit: Criteria) -> Table:
    header = ["scheme", "principle", "principle_name", "verdict", "reason", "properties", "basis"]
    rows = []
    matrix: list[list[str]] = []
    for c in cs:
        line = [c.id]
        for p in crit.ethics:
            v = evaluate_principle(p, c.derived)
            rows.append([c.id, p.id, p.name, v.verdict, v.reason, v.properties, v.basis])
            line.append(v.verdict)
        matrix.append(line)
    details = ["## Verdicts at a glance", ""]
    details += md_table(["scheme", *(p.name for p in crit.ethics)], matrix)
    details += ["", "## The principles and their criteria", ""]
    for p in crit.ethics:
        details.append(f"**{p.name}** ({p.chinese}, `{p.id}`; {p.source}): {p.principle}")
        details.append("")
        details += [
            f"- violates if {x.prop} is {'yes' if x.is_ else 'no'}: {x.why}"
            for x in p.violates_if_any
        ]
        details += [
            f"- upholds only if {x.prop} is {'yes' if x.is_ else 'no'}: {x.why}"
            for x in p.upholds_if_all
        ]
        if not p.upholds_if_all:
            details.append("- no scheme property can show this principle upheld")
        details.append("")
    return Table(
        "ethics",
        "China's AI governance principles (2019)",
        "Each scheme against each of the eight principles of 17 June 2019 (facts §18): "
        "`violates` when a violating condition holds, `upholds` when none can hold and every "
        "upholding condition holds, `unknown` otherwise (the scheme does not say enough).",
        header,
        rows,
        details,
        md_skip=("principle_name", "basis"),
    )


def eu_table(cs: list[Compared], crit: Criteria) -> Table:
    eu = crit.eu_ai_act
    scope = [x.prop for x in eu.scope_if_all]
    pro = [x.prop for x in eu.prohibited_if_any]
    header = ["scheme", "name", "art_5_1_c", *scope, *pro, "reason", "properties", "basis"]
    rows = []
    for c in cs:
        v = evaluate_eu(eu, c.derived)
        rows.append(
            [
                c.id,
                c.loaded.scheme.name,
                v.verdict,
                *(c.derived[p].shown for p in scope),
                *(c.derived[p].shown for p in pro),
                v.reason,
                v.properties,
                v.basis,
            ]
        )
    details = ["## The test", "", eu.summary.strip(), "", f"Source: {eu.source}.", ""]
    details += [f"- scope: {x.prop} must be yes: {x.why}" for x in eu.scope_if_all]
    details += [f"- {x.clause}: {x.prop} is yes: {x.why}" for x in eu.prohibited_if_any]
    details += [
        "",
        "Rewards withheld from people with a low score are not counted as detrimental "
        "treatment; see docs/compare.md.",
    ]
    return Table(
        "eu_ai_act",
        f"EU AI Act {eu.article}",
        f"Would the scheme fall under {eu.article} (`yes`, `no`, `unknown`)? It must be a "
        "social score leading to detrimental treatment, and that treatment must be (i) in a "
        "context unrelated to where the data came from or (ii) unjustified or disproportionate "
        "to the behaviour.",
        header,
        rows,
        details,
        md_skip=("name", "basis"),
    )


def build_tables(schemes: list[LoadedScheme], crit: Criteria) -> list[Table]:
    cs = [Compared(ls, derive(ls.scheme, crit)) for ls in schemes]
    priv, _ = privacy_table(cs, crit)
    return [
        inputs_table(cs, crit),
        incentives_table(cs, crit),
        priv,
        ethics_table(cs, crit),
        eu_table(cs, crit),
    ]


def render_files(tables: list[Table], provenance: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for t in tables:
        files[f"{t.name}.csv"] = t.csv().encode("utf-8")
        files[f"{t.name}.md"] = t.markdown(provenance).encode("utf-8")
    return files


# --------------------------------------------------------------------------------------------
# Writing


def write_folder(out_dir: str | Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` as the folder ``out_dir``: all of them appear at once, or none."""
    out = Path(out_dir).expanduser().absolute()
    refuse_non_empty(out, OutputExistsError, "a comparison")
    tmp = staging_dir(out)
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
            fsync_file(tmp / name)
        publish_dir(tmp, out, OutputExistsError, "a comparison")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
