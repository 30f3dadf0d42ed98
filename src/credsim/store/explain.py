"""A plain-language credit report for one person or organisation of a run.

The report shows what a real credit file never shows: whether each record was true, and if
not, why (a camera matched the wrong face, a clerk typed the wrong ID, an informant lied, or a
relative's deduction spilled over), where each rule's points come from (a cited source or a
stated assumption), and which penalties were imposed because of someone else. Only the rows
of this entity are read: every query filters the Parquet files by ``entity_id`` in DuckDB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from credsim.errors import RunStoreError
from credsim.store.query import align, connect, fmt_int, fmt_num, fmt_points, rows
from credsim.store.reader import RunStore
from credsim.store.summary import grade_order, rule_name

_MAX_SCORE_ROWS = 30


def explain(run_dir: str | Path | RunStore, entity: str) -> str:
    """Return the credit report of ``entity``: an entity id (digits) or an 18-character code.

    Raises :class:`~credsim.errors.RunStoreError` naming ``entity`` if it is not in the run.
    """
    store = run_dir if isinstance(run_dir, RunStore) else RunStore(run_dir)
    con = connect(store)
    try:
        me = _resolve(con, store, str(entity))
        eid = me["entity_id"]
        recs = rows(con, "SELECT * FROM records WHERE entity_id = ? ORDER BY day, record_id", [eid])
        lists = rows(con, "SELECT * FROM lists WHERE entity_id = ? ORDER BY start_day, list", [eid])
        meas = rows(
            con, "SELECT * FROM measures WHERE entity_id = ? ORDER BY start_day, measure", [eid]
        )
        scores = rows(
            con, "SELECT day, score, grade FROM scores WHERE entity_id = ? ORDER BY day", [eid]
        )
        by_id = {r["record_id"]: r for r in recs}
        wanted = {r["cause_record"] for r in recs} | {x["trigger_record"] for x in lists}
        by_id |= {
            r["record_id"]: r for r in _by_ids(con, "records", "record_id", wanted - set(by_id))
        }
        others = {r["actor_id"] for r in recs} | {m["via_entity"] for m in meas}
        others |= {r["entity_id"] for r in by_id.values()} | {me["employer_id"]}
        people = {
            p["entity_id"]: p for p in _by_ids(con, "population", "entity_id", others - {eid})
        } | {eid: me}
        household = (
            []
            if me["household_id"] is None
            else [
                r["entity_id"]
                for r in rows(
                    con,
                    "SELECT entity_id FROM population WHERE household_id = ? ORDER BY entity_id",
                    [me["household_id"]],
                )
            ]
        )
        friends: set[int] = set()
        if store.has("friendships"):
            friends = {
                r["friend_id"]
                for r in rows(con, "SELECT friend_id FROM friendships WHERE entity_id = ?", [eid])
            }
        notes = _import_notes(con, store, eid)
    finally:
        con.close()
    ctx = _Context(store.manifest, me, people, by_id, friends, notes)
    out = _who(store, me, household, ctx) + _records(recs, ctx) + _scores(scores, store.manifest)
    out += _lists(lists, ctx) + _measures(meas, ctx) + _someone_else(recs, lists, meas, ctx)
    return "\n".join(out).rstrip() + "\n"


class _Context:
    """What the sentence builders need: rules, this entity, and everyone it refers to."""

    def __init__(
        self,
        manifest: dict,
        me: dict,
        people: dict[int, dict],
        records: dict[int, dict],
        friends: set[int],
        notes: dict[int, str | None] | None = None,
    ) -> None:
        self.manifest, self.me, self.people = manifest, me, people
        self.records, self.friends = records, friends
        self.notes = notes or {}  # record_id -> note of an imported event
        self.noun = "organisation" if me["kind"] == "organization" else "person"

    def name(self, eid: int | None) -> str:
        """``person 17 (code …, household member)``: another entity and its tie to this one."""
        if eid is None:
            return "an unknown entity"
        p = self.people.get(eid)
        if p is None:
            return f"entity {eid}"
        noun = "organisation" if p["kind"] == "organization" else "person"
        me, tie = self.me, ""
        if eid == me["entity_id"]:
            tie = "this entity"
        elif me["household_id"] is not None and p["household_id"] == me["household_id"]:
            tie = "household member"
        elif eid == me["employer_id"]:
            tie = "employer"
        elif p["employer_id"] == me["entity_id"]:
            tie = "employee"
        elif eid in self.friends:
            tie = "friend"
        return f"{noun} {eid} (code {p['code']}{', ' + tie if tie else ''})"

    def record(self, rid: int | None) -> str:
        r = self.records.get(rid) if rid is not None else None
        if r is None:
            return f"record #{rid}"
        item = rule_name(self.manifest, "items", r["item"])
        about = (
            "" if r["entity_id"] == self.me["entity_id"] else f", about {self.name(r['entity_id'])}"
        )
        return f"record #{rid} (day {r['day']}, {item}{about})"


def _by_ids(con: Any, table: str, column: str, ids: set) -> list[dict]:
    """Rows of ``table`` whose integer ``column`` is one of ``ids`` (nulls ignored)."""
    ids = {int(i) for i in ids if i is not None}
    if not ids:
        return []
    listed = ", ".join(map(str, sorted(ids)))
    return rows(con, f"SELECT * FROM {table} WHERE {column} IN ({listed})")


def _import_notes(con: Any, store: RunStore, eid: int) -> dict[int, str | None]:
    """record_id -> note of this entity's imported events (``events.parquet``, run --events)."""
    path = store.dir / "events.parquet"
    if not path.is_file():
        return {}
    literal = str(path).replace("'", "''")
    sql = f"SELECT record_id, note FROM read_parquet('{literal}') WHERE entity_id = ?"
    return {r["record_id"]: r["note"] for r in rows(con, sql, [eid])}


def _imported(r: dict, ctx: _Context) -> str:
    """``imported event (row 3 of cases.csv): NOTE`` for a record imported with --events."""
    file = Path(str((ctx.manifest.get("events") or {}).get("file") or "the events file")).name
    note = ctx.notes.get(r["record_id"])
    return f"imported event (row {r.get('import_row')} of {file})" + (f": {note}" if note else "")


def _resolve(con: Any, store: RunStore, entity: str) -> dict:
    text = entity.strip()
    if text.isdigit() and len(text) < 18:
        found = (
            rows(con, "SELECT * FROM population WHERE entity_id = ?", [int(text)])
            if int(text) < 2**31
            else []
        )
    elif len(text) == 18:
        found = rows(
            con, "SELECT * FROM population WHERE code = ? OR upper(code) = ?", [text, text.upper()]
        )
    else:
        raise RunStoreError(
            f"{entity!r} is neither an entity id (digits) nor an 18-character "
            "identity number or unified social credit code"
        )
    if not found:
        raise RunStoreError(f"entity {entity!r} is not in the run at {store.dir}")
    return found[0]


def _who(store: RunStore, me: dict, household: list[int], ctx: _Context) -> list[str]:
    title = f"Credit report: {ctx.noun} {me['entity_id']} (synthetic, not a real {ctx.noun})"
    scheme = store.manifest.get("scheme") or {}
    facts = [["Code", me["code"]], ["District", me["district"]]]
    if me["kind"] == "person":
        born = f" (born {me['birth_date']})" if me["birth_date"] else ""
        facts += [
            ["Group", str(me["group"])],
            ["Sex, age", f"{me['sex']}, {me['age']}{born}"],
            ["Income decile", str(me["income_decile"])],
        ]
        mates = [str(h) for h in household if h != me["entity_id"]]
        facts.append(
            ["Household", f"{me['household_id']} (other members: {', '.join(mates) or 'none'})"]
        )
        facts.append(
            ["Employer", ctx.name(me["employer_id"]) if me["employer_id"] is not None else "none"]
        )
    facts += [
        ["Enrolled", "yes" if me["enrolled"] else "no"],
        ["Scheme", str(scheme.get("name") or scheme.get("id") or "?")],
        ["Run", str(store.dir)],
    ]
    return [title, "=" * len(title), *align(facts), ""]


def _provenance(ctx: _Context, item: str) -> str:
    rule = ((ctx.manifest.get("rules") or {}).get("items") or {}).get(item)
    if not isinstance(rule, dict):
        return "not described in the run's manifest"
    pts = f"{fmt_points(rule['points'])} points; " if rule.get("points") is not None else ""
    if rule.get("source"):
        src = (ctx.manifest.get("sources") or {}).get(rule["source"]) or {}
        title = f" - {src['title']}" if isinstance(src, dict) and src.get("title") else ""
        return f"{pts}source: {rule['source']}{title}"
    if rule.get("assumption"):
        return f"{pts}ASSUMPTION (no source): {rule['assumption']}"
    return f"{pts}no source or assumption recorded"


def _why_untrue(r: dict, ctx: _Context) -> str:
    """Why a record is not about this entity's own behaviour, as one sentence."""
    kind, actor = r["error"] or r["basis"], r["actor_id"]
    if kind == "misidentification":
        return (
            f"misidentification - the behaviour was by {ctx.name(actor)}; this {ctx.noun} "
            "was matched to it by mistake"
        )
    if kind == "data_entry":
        return (
            f"data-entry error - typed against the wrong entity; the behaviour was by "
            f"{ctx.name(actor)}"
        )
    if kind == "false_report":
        return "false report - an informant reported a behaviour that never took place"
    if kind == "association":
        return f"someone else's deduction - it spilled over from {ctx.record(r['cause_record'])}"
    if kind == "escalation":
        cause = ctx.record(r["cause_record"])
        return f"escalation counted on untrue records (triggered by {cause})"
    return f"no true behaviour of this {ctx.noun} lies behind it ({kind})"


def _outcome(r: dict) -> str:
    review = {
        "accepted": f"accepted in review on day {r['review_day']}"
        if r["review_day"] is not None
        else "accepted without review",
        "rejected_in_review": f"rejected in review on day {r['review_day']} - did not count",
        "overturned_on_appeal": "accepted, later overturned on appeal",
        "pending": "still waiting for review at the end - not counted",
    }.get(r["status"], r["status"])
    if not r["appealed"]:
        appeal = "no objection filed"
    elif r["appeal_day"] is None:
        appeal = "objection filed, not decided by the end"
    elif r["status"] == "overturned_on_appeal":
        appeal = f"objection upheld on day {r['appeal_day']}, points reversed"
    else:
        appeal = f"objection rejected on day {r['appeal_day']}"
    return f"{review}; appeal: {appeal}"


def _records(recs: list[dict], ctx: _Context) -> list[str]:
    out = [f"Records ({fmt_int(len(recs))})"]
    if not recs:
        return out + ["  None: nothing was ever recorded about this " + ctx.noun + ".", ""]
    for r in recs:
        item = rule_name(ctx.manifest, "items", r["item"])
        out.append(
            f"  Day {r['day']}: {item} - points {fmt_points(r['points'])}, "
            f"applied {fmt_points(r['applied'])}  [record #{r['record_id']}]"
        )
        via = r["channel"] + (f" ({r['source_agency']})" if r["source_agency"] else "")
        if r["behaviour_day"] is not None:
            via += f"; behaviour on day {r['behaviour_day']}"
        truth = (
            "yes, a real behaviour of this " + ctx.noun
            if r["truthful"]
            else "NO - " + _why_untrue(r, ctx)
        )
        if r["truthful"] and r["cause_record"] is not None:
            truth += f" (follows from {ctx.record(r['cause_record'])})"
        if r["basis"] == "import":
            out.append(f"      imported: {_imported(r, ctx)}")
            truth = "taken as true (a hand-written case-study event, not simulated)"
        escalation = ((ctx.manifest.get("rules") or {}).get("items") or {}).get(r["item"]) or {}
        if r["channel"] == "escalation" and escalation.get("produced_by"):
            out.append(f"      fired by: {escalation['produced_by']}")
        out += [
            f"      rule:     {_provenance(ctx, r['item'])}",
            f"      came via: {via}",
            f"      outcome:  {_outcome(r)}",
            f"      true?     {truth}",
        ]
    return out + [""]


def _scores(scores: list[dict], manifest: dict) -> list[str]:
    if not scores:
        return ["Score: none recorded for this entity.", ""]
    keep = [
        s
        for i, s in enumerate(scores)
        if i == 0 or (s["score"], s["grade"]) != (scores[i - 1]["score"], scores[i - 1]["grade"])
    ]
    body = [[str(s["day"]), fmt_num(s["score"], 2), s["grade"] or ""] for s in keep]
    half = _MAX_SCORE_ROWS // 2
    if len(body) > 2 * half:
        body = body[:half] + [["…", f"{len(body) - 2 * half} changes omitted", ""]] + body[-half:]
    grades = grade_order(manifest)
    lowest, last = min(s["score"] for s in scores), scores[-1]
    out = [
        f"Score over time (rows where it changed): {fmt_num(last['score'], 2)} on day "
        f"{last['day']}, lowest {fmt_num(lowest, 2)}"
        + (f"; grades, best first: {', '.join(grades)}" if grades else "")
    ]
    out += align(body, header=["day", "score", "grade"], right=[True, True, False], indent="  ")
    return out + [""]


def _lists(lists: list[dict], ctx: _Context) -> list[str]:
    out = ["Lists"]
    if not lists:
        return out + ["  Never on any list.", ""]
    for x in lists:
        until = (
            f" to day {x['end_day']} ({x['end_reason'] or 'ended'})"
            if x["end_day"] is not None
            else ", still listed at the end of the run"
        )
        out.append(
            f"  {rule_name(ctx.manifest, 'lists', x['list'])}, {x['kind']}list: "
            f"from day {x['start_day']}{until}"
        )
        out.append(f"      rule:      {x['rule']}")
        trig = ctx.records.get(x["trigger_record"])
        if x["trigger_record"] is None:
            out.append("      trigger:   a score or grade, not a single record")
        else:
            verdict = (
                ""
                if trig is None
                else " - truthful"
                if trig["truthful"]
                else " - NOT truthful: " + _why_untrue(trig, ctx)
            )
            out.append(f"      trigger:   {ctx.record(x['trigger_record'])}{verdict}")
        out.append(
            "      published: " + ("yes - named and shamed in public" if x["published"] else "no")
        )
    return out + [""]


def _cause(m: dict, ctx: _Context) -> str:
    """``person 0 (…) was listed on X``: who did what to bring a measure about."""
    trig = str(m["trigger"])
    what = (
        f"listed on {rule_name(ctx.manifest, 'lists', trig[5:])}"
        if trig.startswith("list:")
        else f"graded {trig[6:].replace(',', ' or ')}"
        if trig.startswith("grade:")
        else "enrolled in the scheme"
        if trig == "enrolled"
        else f"subject to {trig}"
    )
    who = ctx.name(m["via_entity"]) if m["cause"] == "association" else f"this {ctx.noun}"
    return f"{who} was {what}"


def _measures(meas: list[dict], ctx: _Context) -> list[str]:
    out = ["Measures (penalties and rewards)"]
    if not meas:
        return out + ["  None.", ""]
    for m in meas:
        until = (
            f" to day {m['end_day']}" if m["end_day"] is not None else ", still in force at the end"
        )
        out.append(
            f"  {rule_name(ctx.manifest, 'measures', m['measure'])}, "
            f"{'reward' if m['reward'] else 'sanction'} ({m['kind']}): "
            f"from day {m['start_day']}{until}"
        )
        who = "someone else - " if m["cause"] == "association" else ""
        out.append(f"      because:   {who}{_cause(m, ctx)}")
    return out + [""]


def _someone_else(
    recs: list[dict], lists: list[dict], meas: list[dict], ctx: _Context
) -> list[str]:
    out = ["Caused by someone else"]
    bad = [r for r in recs if not r["truthful"]]
    for r in bad:
        out.append(
            f"  - record #{r['record_id']} (day {r['day']}, {r['status'].replace('_', ' ')},"
            f" applied {fmt_points(r['applied'])}): {_why_untrue(r, ctx)}"
        )
    for x in lists:
        trig = ctx.records.get(x["trigger_record"])
        if trig is not None and not trig["truthful"]:
            out.append(
                f"  - listed on {rule_name(ctx.manifest, 'lists', x['list'])} from day "
                f"{x['start_day']} because of an untrue record (#{x['trigger_record']})"
            )
    for m in meas:
        if m["cause"] == "association":
            out.append(
                f"  - {rule_name(ctx.manifest, 'measures', m['measure'])} from day "
                f"{m['start_day']}: because {_cause(m, ctx)}"
            )
    if len(out) == 1:
        return out + [f"  Nothing: everything above follows from this {ctx.noun}'s own behaviour."]
    lost = sum(r["applied"] for r in bad if r["applied"])
    out.append(
        f"  Net score change from records that were not about this {ctx.noun}'s own "
        f"behaviour: {fmt_points(lost)} points."
    )
    return out
