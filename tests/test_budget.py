"""Memory budget and numeric bounds: a run that cannot fit is refused before allocating; no
counter or id can overflow its dtype at national scale over ten years."""

from __future__ import annotations

import re

import numpy as np
import pytest

from credsim.engine import budget, kernels
from credsim.engine.lists import ListBook
from credsim.engine.records import COLUMNS, RecordBuffer
from credsim.errors import CredsimError
from credsim.schemes.compile import compile_scheme
from credsim.schemes.loader import load_scheme

NATION = 1_410_000_000  # persons (facts.md: China has about 1.41 billion people)
YEARS = 10


@pytest.fixture(scope="module")
def suzhou():  # noqa: ANN201
    return compile_scheme(load_scheme("suzhou").scheme)


def test_refusal_names_what_would_fit(suzhou, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("CREDSIM_MEMORY_LIMIT", "2GiB")
    with pytest.raises(CredsimError) as info:
        budget.check(suzhou, 13_000_000, 365)
    msg = str(info.value)
    assert "would need about" in msg and "usable here" in msg
    fit = int(re.search(r"At most about ([0-9,]+) persons", msg).group(1).replace(",", ""))
    assert 100_000 < fit < 13_000_000
    budget.check(suzhou, fit, 365)  # what it says fits, fits
    with pytest.raises(CredsimError):
        budget.check(suzhou, int(fit * 1.05) + 1, 365)


def test_estimate_grows_with_persons_and_days(suzhou) -> None:  # noqa: ANN001
    one = budget.estimate(suzhou, 365)
    ten = budget.estimate(suzhou, 3650)
    assert one.total(2_000_000) > one.total(1_000_000) > one.bytes_fixed
    assert ten.bytes_per_person > one.bytes_per_person
    # records per person-year: sum of mean rate x detection (Suzhou's file, by hand)
    assert one.records_per_person == pytest.approx(
        0.011 * 1
        + 0.2 * 0.5
        + 1 * 0.6
        + 1 * 0.6
        + 0.3 * 0.3
        + 2 * 0.01
        + 0.002 * 0.5
        + 0.1 * 0.9
        + 0.02 * 0.9
        + 0.003 * 1
    )


@pytest.mark.parametrize(
    "text,expected",
    [("2GiB", 2 * 2**30), ("512M", 512 * 2**20), ("1.5G", 1.5 * 2**30), ("1000", 1000)],
)
def test_memory_limit_parsing(text: str, expected: float) -> None:
    assert budget.parse_size(text) == expected


def test_bad_memory_limit_is_a_clear_error() -> None:
    with pytest.raises(CredsimError, match="CREDSIM_MEMORY_LIMIT"):
        budget.parse_size("lots")


def test_id_dtypes_hold_a_nation_over_ten_years() -> None:
    entities = NATION * 1.02  # plus 20 organisations per 1000 persons
    assert np.iinfo(COLUMNS["entity"][0]).max > entities
    records = NATION * 30 * YEARS  # 30 records per person-year is far above any bundled scheme
    assert np.iinfo(COLUMNS["cause"][0]).max > records
    ids = RecordBuffer(16).append(entity=np.zeros(3, np.int32))
    assert ids.dtype == np.int64
    assert np.iinfo(COLUMNS["day"][0]).max > 365 * 100


def test_list_episode_ids_are_64_bit(suzhou) -> None:  # noqa: ANN001
    book = ListBook(compile_scheme(load_scheme("nanjing").scheme), 4)
    assert book.ep_of.dtype == np.int64 and book.eps.col("record").dtype == np.int64


def test_score_kernel_stays_in_bounds_with_extreme_points() -> None:
    n = 3
    entity = np.array([0, 0, 1, 2], np.int32)
    item = np.zeros(4, np.int32)
    points = np.array([1e15, -1e15, -1e15, 1e-9])
    applied = np.zeros(4)
    score = np.full(n, 150.0)
    kernels.apply_points(
        np.arange(4, dtype=np.int64),
        1,
        entity,
        item,
        points,
        applied,
        score,
        np.ones(n, bool),
        100.0,
        200.0,
        np.full(1, -1, np.int32),
        np.full(1, np.inf),
        np.zeros((0, n)),
        np.full(n, -1, np.int64),
        np.zeros(n, np.int32),
        True,
    )
    assert score.tolist() == [100.0, 100.0, 150.0 + 1e-9]
    assert applied[:3].tolist() == [50.0, -100.0, -50.0]


def test_source_counter_saturates_at_zero_and_counts_many_sources() -> None:
    counts = np.zeros((1, 2), np.int16)
    rows = np.zeros(1000, np.int32)
    targets = np.zeros(1000, np.int32)
    crossed = kernels.count_sources(rows, targets, 1, counts)
    assert counts[0, 0] == 1000 and crossed.sum() == 1  # only the first source opens it
    crossed = kernels.count_sources(rows[:1], targets[:1], -1, counts[:, 1:].copy())
    assert not crossed.any()  # no source to remove: stays at zero, nothing closes


def test_cli_refuses_before_allocating_or_writing(
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],  # noqa: ANN001
) -> None:
    import credsim._runner as runner
    from credsim.cli import main

    def must_not_run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the population was generated before the memory check")

    monkeypatch.setattr(runner, "generate_population", must_not_run)
    monkeypatch.setenv("CREDSIM_MEMORY_LIMIT", "1GiB")
    out = tmp_path / "run"
    assert (
        main(["run", "benchmarks/reference.yaml", "--population", "13000000", "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err
    assert "would need about" in err and "--population" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
