"""`credsim compare`: properties derived from schemes, criteria as data, the five tables.

Each synthetic scheme differs from a privacy-preserving baseline by ONE property; the tests check
that exactly the verdicts depending on it flip.
"""

from __future__ import annotations

import copy
import csv
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from credsim.cli import main
from credsim.compare import TABLES, build, compare
from credsim.compare.criteria import (
    CriteriaError,
    default_path,
    evaluate_eu,
    evaluate_principle,
    load_criteria,
    privacy_index,
)
from credsim.compare.properties import PROPERTY_DOCS, Derived, derive
from credsim.errors import CredsimError
from credsim.schemes.loader import bundled_ids
from tiny import load, n, tiny_scheme

CRIT = load_criteria()
DOCS = Path(__file__).resolve().parents[1] / "docs" / "compare.md"


def flag(value: bool) -> dict[str, Any]:
    return {"value": value, "assumption": "test"}


def agency(who: str = "police") -> list[dict[str, Any]]:
    return [{"kind": "agency", "agency": who, "detection": n(1.0)}]


GOOD_GOVERNANCE = {
    "consent_required": flag(True),
    "opt_out": flag(True),
    "private_sector_data": flag(False),
    "indicators_published": flag(True),
    "weights_published": flag(True),
    "consequences_published": flag(True),
    "score_challenge": flag(True),
    "helpline": flag(True),
    "data_minimisation": flag(True),
}


def baseline() -> dict[str, Any]:
    """Voluntary, consented, transparent, reviewed, contestable, rewards only, no cameras."""
    s = tiny_scheme(
        enrolment={"mode": "voluntary", "rate": n(0.5)},
        governance=copy.deepcopy(GOOD_GOVERNANCE),
        review={"mode": "required", "catch_false": n(0.9)},
        appeals={
            "available": True,
            "file_false": n(0.5),
            "file_true": n(0.1),
            "overturn_false": n(0.8),
            "overturn_true": n(0.05),
            "days_to_decide": n(30),
        },
        measures={
            "bus": {
                "name": "Bus discount",
                "kind": "discount",
                "reward": True,
                "trigger": {"enrolled": True},
            },
        },
    )
    s["behaviours"]["jaywalking"]["channels"] = agency()
    s["behaviours"]["loan-default"] = {"rate": n(0), "channels": agency("bank")}
    s["items"]["loan-default"] = {"name": "Default", "behaviour": "loan-default", "points": n(-20)}
    return s


def derived(s: dict[str, Any]) -> Derived:
    return derive(load(s).scheme, CRIT)


def ethics(s: dict[str, Any]) -> dict[str, str]:
    d = derived(s)
    return {p.id: evaluate_principle(p, d).verdict for p in CRIT.ethics}


def index(s: dict[str, Any]) -> dict[str, float]:
    ix = privacy_index(CRIT.privacy_control, derived(s))
    return {c.component.id: c.points for c in ix.components} | {"total": ix.index}


def eu(s: dict[str, Any]) -> str:
    return evaluate_eu(CRIT.eu_ai_act, derived(s)).verdict


def changed(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


BASE_ETHICS = {
    "harmony-friendliness": "upholds",
    "fairness-justice": "upholds",
    "inclusiveness-sharing": "unknown",
    "respect-privacy": "upholds",
    "security-controllability": "upholds",
    "shared-responsibility": "upholds",
    "open-collaboration": "unknown",
    "agile-governance": "upholds",
}


def test_baseline_upholds_what_it_can() -> None:
    assert ethics(baseline()) == BASE_ETHICS
    assert index(baseline())["total"] == 0.5  # agency data only
    assert eu(baseline()) == "no"


def with_governance(**facts: bool) -> dict[str, Any]:
    s = baseline()
    s["governance"].update({k: flag(v) for k, v in facts.items()})
    return s


def test_consent_flips_privacy() -> None:
    s = with_governance(consent_required=False)
    assert changed(BASE_ETHICS, ethics(s)) == {"respect-privacy": ("upholds", "violates")}
    assert changed(index(baseline()), index(s)) == {"no_consent": (0, 1), "total": (0.5, 1.5)}


def test_consent_left_out_is_unknown_not_a_guess() -> None:
    s = baseline()
    del s["governance"]["consent_required"]
    d = derived(s)
    assert d["consent_required"].value is None and "silent" in d["consent_required"].basis
    assert ethics(s)["respect-privacy"] == "unknown"
    assert index(s)["no_consent"] == 0.5


def test_opt_out_flips_privacy() -> None:
    s = with_governance(opt_out=False)
    assert changed(BASE_ETHICS, ethics(s)) == {"respect-privacy": ("upholds", "violates")}
    assert changed(index(baseline()), index(s)) == {"no_opt_out": (0, 1), "total": (0.5, 1.5)}


def test_mandatory_enrolment_means_no_opt_out_unless_stated() -> None:
    s = baseline()
    s["enrolment"] = {"mode": "mandatory"}
    del s["governance"]["opt_out"]
    assert derived(s)["opt_out"].value is False
    assert index(s)["enrolment"] == 2 and index(s)["no_opt_out"] == 1


def test_private_sector_data_flips_inputs_and_index_only() -> None:
    s = with_governance(private_sector_data=True)
    assert ethics(s) == BASE_ETHICS
    assert changed(index(baseline()), index(s)) == {"private_data": (0, 1), "total": (0.5, 1.5)}
    row = _row(build_for([s]), "inputs.csv")
    assert row["private_sector_data"] == "yes" and "source" not in row["private_sector_data_basis"]


def test_camera_channel_is_biometric_input() -> None:
    s = baseline()
    s["behaviours"]["jaywalking"]["channels"] = [
        {"kind": "camera", "agency": "police", "detection": n(1.0), "false_match_rate": n(0.01)}
    ]
    d = derived(s)
    assert d["input_biometric"].value and d["camera_channel"].value
    # no stated difference between groups: unknown whether the matching is fair
    assert changed(BASE_ETHICS, ethics(s)) == {
        "respect-privacy": ("upholds", "violates"),
        "fairness-justice": ("upholds", "unknown"),
    }
    assert changed(index(baseline()), index(s)) == {"camera": (0, 2), "total": (0.5, 2.5)}
    s["behaviours"]["jaywalking"]["channels"][0]["false_match_sex_factor"] = {
        "female": n(3),
        "male": n(1),
    }
    assert ethics(s)["fairness-justice"] == "violates"


def black_list(published: bool, count: int = 1, item: str = "jaywalking") -> dict[str, Any]:
    return {
        "name": "Offenders",
        "kind": "black",
        "inclusion": {"item": item, "count": n(count)},
        "duration_days": n(30),
        "published": published,
    }


def test_publishing_a_list_flips_shaming() -> None:
    quiet = baseline()
    quiet["lists"] = {"offenders": black_list(False)}
    loud = copy.deepcopy(quiet)
    loud["lists"]["offenders"]["published"] = True
    # an unpublished list that triggers no measure: its consequences are not stated
    d = derived(quiet)
    assert d["detrimental_treatment"].value is None and d["disproportionate"].value is None
    assert changed(BASE_ETHICS, ethics(quiet)) == {"fairness-justice": ("upholds", "unknown")}
    assert changed(ethics(quiet), ethics(loud)) == {
        "harmony-friendliness": ("upholds", "violates"),
        "respect-privacy": ("upholds", "violates"),
        # naming someone for one jaywalking record is disproportionate
        "fairness-justice": ("unknown", "violates"),
    }
    assert changed(index(quiet), index(loud)) == {"publication": (0, 1), "total": (0.5, 1.5)}
    assert (eu(quiet), eu(loud)) == ("unknown", "yes")


def test_indicator_secrecy_flips_controllability() -> None:
    s = with_governance(indicators_published=False)
    assert changed(BASE_ETHICS, ethics(s)) == {"security-controllability": ("upholds", "violates")}
    assert changed(index(baseline()), index(s)) == {
        "secret_indicators": (0, 1),
        "total": (0.5, 1.5),
    }


def test_appeals_flip_shared_responsibility() -> None:
    s = baseline()
    s["appeals"] = {"available": False}
    assert changed(BASE_ETHICS, ethics(s)) == {"shared-responsibility": ("upholds", "violates")}
    assert changed(index(baseline()), index(s)) == {"no_appeals": (0, 1), "total": (0.5, 1.5)}
    del s["appeals"]  # left out: the sources are silent
    assert derived(s)["appeals_available"].value is None
    assert ethics(s)["shared-responsibility"] == "unknown"
    assert index(s)["no_appeals"] == 0.5


def test_association_spillover_affects_relatives() -> None:
    s = baseline()
    s["association"] = {"household_share": n(0.5)}
    assert changed(BASE_ETHICS, ethics(s)) == {"harmony-friendliness": ("upholds", "violates")}
    assert changed(index(baseline()), index(s)) == {"relatives": (0, 1), "total": (0.5, 1.5)}


def sanction(kind: str, lst: str = "offenders", **extra: Any) -> dict[str, Any]:
    return {"name": kind, "kind": kind, "reward": False, "trigger": {"list": lst}, **extra}


def test_children_targets_flip_fairness_and_eu_clause_ii() -> None:
    own = baseline()
    own["lists"] = {"offenders": black_list(False, count=3, item="loan-default")}
    own["measures"]["loans"] = sanction("loan_terms")
    kids = copy.deepcopy(own)
    kids["measures"]["loans"]["targets"] = ["self", "children"]
    assert changed(ethics(own), ethics(kids)) == {
        "harmony-friendliness": ("unknown", "violates"),
        "fairness-justice": ("upholds", "violates"),
    }
    assert changed(index(own), index(kids)) == {"relatives": (0, 1), "total": (1.5, 2.5)}
    assert (eu(own), eu(kids)) == ("no", "yes")
    assert derived(kids)["disproportionate"].value and not derived(own)["disproportionate"].value


def test_low_score_penalty() -> None:
    graded = baseline()
    graded["score"]["grades"] = [
        {"grade": "bad", "min": n(100)},
        {"grade": "ok", "min": n(130)},
    ]
    punished = copy.deepcopy(graded)
    punished["measures"]["loans"] = {
        "name": "loans",
        "kind": "loan_terms",
        "reward": False,
        "trigger": {"grades": ["bad"]},
    }
    d = derived(punished)
    assert d["low_score_penalised"].value and not derived(graded)["low_score_penalised"].value
    assert changed(ethics(graded), ethics(punished)) == {
        "harmony-friendliness": ("upholds", "unknown"),
        "inclusiveness-sharing": ("unknown", "violates"),
    }
    assert changed(index(graded), index(punished)) == {
        "sanctions": (0, 1),
        "low_score": (0, 1),
        "total": (0.5, 2.5),
    }
    rows = _rows(build_for([punished]), "incentives.csv")
    assert rows[0]["low_score_penalised"] == "yes" and rows[0]["penalty_kinds"] == "loan_terms"


def test_unrelated_context_sanction_is_eu_clause_i() -> None:
    related = baseline()
    related["lists"] = {"offenders": black_list(False, count=3, item="loan-default")}
    related["measures"]["loans"] = sanction("loan_terms")
    unrelated = copy.deepcopy(related)
    unrelated["lists"]["offenders"]["inclusion"]["item"] = "speeding"  # traffic, 3 records
    unrelated["measures"]["loans"] = sanction("travel_ban_plane")
    d_rel, d_un = derived(related), derived(unrelated)
    assert d_rel["unrelated_context"].value is False and not d_rel["disproportionate"].value
    assert d_un["unrelated_context"].value is True and not d_un["disproportionate"].value
    assert "speeding (traffic)" in d_un["unrelated_context"].basis
    assert (eu(related), eu(unrelated)) == ("no", "yes")
    row = _row(build_for([unrelated]), "eu_ai_act.csv")
    assert (row["art_5_1_c"], row["unrelated_context"], row["disproportionate"]) == (
        "yes",
        "yes",
        "no",
    )


def test_single_minor_record_is_disproportionate_and_unknown_kind_is_unknown() -> None:
    s = baseline()
    s["lists"] = {"offenders": black_list(False, count=1, item="speeding")}
    s["measures"]["insurance"] = sanction("other")
    d = derived(s)
    assert d["unrelated_context"].value is None  # kind 'other' does not say where it bites
    assert d["disproportionate"].value is True  # one speeding record suffices
    s["lists"]["offenders"]["inclusion"]["count"] = n(2)
    assert derived(s)["disproportionate"].value is False
    assert eu(s) == "unknown"


def test_lawful_behaviour_penalised() -> None:
    s = baseline()
    s["behaviours"]["critical-post-online"] = {"rate": n(0), "channels": agency("cac")}
    s["items"]["critical-post-online"] = {
        "name": "Post",
        "behaviour": "critical-post-online",
        "points": n(-5),
    }
    d = derived(s)
    assert d["lawful_behaviour_penalised"].value and d["input_online_speech"].value
    assert ethics(s)["harmony-friendliness"] == "violates"


# --------------------------------------------------------------------------------------------
# The command and its files


def build_for(schemes: list[dict[str, Any]], tmp: Path | None = None) -> dict[str, bytes]:
    import tempfile

    folder = Path(tmp or tempfile.mkdtemp())
    paths = []
    for i, s in enumerate(schemes):
        s = copy.deepcopy(s)
        s["id"] = s.get("id", "tiny") if len(schemes) == 1 else f"{s['id']}-{i}"
        p = folder / f"{s['id']}.yaml"
        p.write_text(yaml.safe_dump(s, sort_keys=False), encoding="utf-8")
        paths.append(p)
    return build(paths)


def _rows(files: dict[str, bytes], name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(files[name].decode("utf-8"))))


def _row(files: dict[str, bytes], name: str) -> dict[str, str]:
    (row,) = _rows(files, name)
    return row


@pytest.fixture(scope="module")
def bundled_files() -> dict[str, bytes]:
    return build()


def test_every_bundled_scheme_has_a_row_in_each_file(bundled_files: dict[str, bytes]) -> None:
    ids = set(bundled_ids())
    assert sorted(bundled_files) == sorted(f"{t}.{e}" for t in TABLES for e in ("csv", "md"))
    for t in TABLES:
        rows = _rows(bundled_files, f"{t}.csv")
        assert {r["scheme"] for r in rows} == ids, t
        md = bundled_files[f"{t}.md"].decode()
        assert all(f"| {sid} |" in md for sid in ids), t
    ethics_rows = _rows(bundled_files, "ethics.csv")
    assert len(ethics_rows) == len(ids) * 8
    assert {r["verdict"] for r in ethics_rows} <= {"upholds", "violates", "unknown"}
    for r in ethics_rows:
        assert r["reason"], r
    ranks = [int(r["rank"]) for r in _rows(bundled_files, "privacy_control.csv")]
    assert ranks == list(range(1, len(ids) + 1))


def test_eight_principles_of_2019() -> None:
    assert [p.name for p in CRIT.ethics] == [
        "Harmony and friendliness",
        "Fairness and justice",
        "Inclusiveness and sharing",
        "Respect for privacy",
        "Security and controllability",
        "Shared responsibility",
        "Open collaboration",
        "Agile governance",
    ]


def test_ordering_is_deterministic_and_ties_go_by_id(tmp_path: Path) -> None:
    a, b = baseline(), baseline()
    a["id"], b["id"] = "zeta", "alpha"
    files = build_for([a, b], tmp_path)
    order = [r["scheme"] for r in _rows(files, "privacy_control.csv")]
    assert order == ["alpha-1", "zeta-0"]
    (tmp_path / "again").mkdir()
    assert build_for([a, b], tmp_path / "again") == files  # byte-identical, wherever the files
    loud = copy.deepcopy(a)
    loud["enrolment"] = {"mode": "mandatory"}
    files = build_for([loud, b], tmp_path)
    assert [r["scheme"] for r in _rows(files, "privacy_control.csv")] == ["alpha-1", "zeta-0"]
    files = build_for([b, loud], tmp_path)
    assert [r["scheme"] for r in _rows(files, "privacy_control.csv")] == ["alpha-0", "zeta-1"]


def test_compare_command_writes_ten_files_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    assert main(["compare", "nanjing", "suzhou", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{t}.{e}" for t in TABLES for e in ("csv", "md"))
    assert str(out) in capsys.readouterr().out
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["compare", "suzhou", "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["cmp"]  # no temporary folder left
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", "suzhou", "--out", str(empty)]) == 0
    assert len(list(empty.iterdir())) == 10


def test_a_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(CredsimError):
        compare(["no-such-scheme"], tmp_path / "cmp")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CredsimError, match="two schemes with id 'suzhou'"):
        compare(["suzhou", "suzhou"], tmp_path / "cmp")


# --------------------------------------------------------------------------------------------
# The criteria file


def broken(tmp_path: Path, edit: Any) -> Path:
    data = yaml.safe_load(default_path().read_text(encoding="utf-8"))
    edit(data)
    p = tmp_path / "criteria.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return p


def test_bundled_criteria_load() -> None:
    assert len(CRIT.ethics) == 8 and CRIT.privacy_control.components


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["ethics"][0]["violates_if_any"][0].update(property="shaming"),
            "unknown property 'shaming'",
        ),
        (lambda d: d["contexts"].pop("loan_terms"), "measure kind 'loan_terms' has no context"),
        (lambda d: d["minor"].update(behaviours=["dancing"]), "'dancing' is not a catalogue"),
        (lambda d: d["eu_ai_act"].update(verdict="yes"), "unknown key"),
        (
            lambda d: d["privacy_control"]["components"][0].update(points=-1),
            "greater than 0",
        ),
        (
            lambda d: d["input_categories"].pop(),
            "behaviour category 'other' is in no input category",
        ),
        (lambda d: d["ethics"][1].update(id=d["ethics"][0]["id"]), "duplicate id"),
    ],
)
def test_malformed_criteria_are_a_clear_error(tmp_path: Path, edit: Any, message: str) -> None:
    p = broken(tmp_path, edit)
    with pytest.raises(CriteriaError, match=message) as exc:
        load_criteria(p)
    assert str(exc.value).startswith(f"{p}:")
    assert main(["compare", "suzhou", "--criteria", str(p), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_criteria_yaml_syntax_error(tmp_path: Path) -> None:
    p = tmp_path / "criteria.yaml"
    p.write_text("version: 1\nethics: [\n", encoding="utf-8")
    with pytest.raises(CriteriaError, match="not valid YAML"):
        load_criteria(p)


def test_docs_describe_every_criterion() -> None:
    text = DOCS.read_text(encoding="utf-8")
    names = [
        *PROPERTY_DOCS,
        *(p.id for p in CRIT.ethics),
        *(c.id for c in CRIT.privacy_control.components),
        *(c.id for c in CRIT.input_categories),
        *CRIT.contexts,
    ]
    missing = [x for x in names if f"`{x}`" not in text]
    assert not missing


def test_organisations_only_are_outside_art_5_1_c() -> None:
    s = baseline()
    s["lists"] = {"offenders": black_list(True, count=1, item="jaywalking")}
    s["measures"]["loans"] = sanction("travel_ban_plane")
    assert eu(s) == "yes"
    s["behaviours"]["jaywalking"]["actor"] = "organization"
    s["enrolment"]["organizations"] = True
    s["population"]["organizations_per_1000"] = n(10)
    for b in ("speeding", "blood-donation", "loan-default"):
        s["behaviours"][b]["actor"] = "organization"
    d = derived(s)
    assert d["evaluates_persons"].value is False
    assert eu(s) == "no"


def test_escalation_counts_records_behind_a_list() -> None:
    s = baseline()
    s["items"]["downgrade"] = {"name": "Downgrade", "points": n(0)}
    s["escalations"] = [
        {"item": "jaywalking", "count": n(6), "window_days": n(365), "produces": "downgrade"}
    ]
    s["lists"] = {"offenders": black_list(False, item="downgrade")}
    s["measures"]["naming"] = sanction("public_naming")
    d = derived(s)
    assert d["disproportionate"].value is False  # six records, not one
    assert d["unrelated_context"].value is False  # naming is in the behaviour's context
    s["escalations"][0]["count"] = n(1)
    assert "one record" in derived(s)["disproportionate"].basis
