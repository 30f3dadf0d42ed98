"""Crash safety: a run folder is complete or marked incomplete; a killed run resumes from its
last checkpoint and ends with the tables of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from credsim import api
from credsim.api import resume, run
from credsim.cli import main as cli_main
from credsim.engine import checkpoint
from credsim.errors import CredsimError, RunStoreError
from credsim.store import RunStore
from credsim.store.runfolder import RunFolder

TABLES = ("population", "records", "scores", "lists", "measures")

KEPT = [".records.parquet.partial", ".segments", "checkpoint.npz", "manifest.json"]
"""What an interrupted run that checkpointed leaves: the records file (its first bytes a whole
Parquet file of the records stored by the last checkpoint), the score snapshots saved for
resuming, the checkpoint and the manifest saying it is incomplete."""


def _same_tables(a: Path, b: Path) -> None:
    for name in TABLES:
        ta, tb = pq.read_table(a / f"{name}.parquet"), pq.read_table(b / f"{name}.parquet")
        assert ta.equals(tb), name
    ma = json.loads((a / "manifest.json").read_text())
    mb = json.loads((b / "manifest.json").read_text())
    assert ma["ledger"]["head"] == mb["ledger"]["head"]
    assert ma["table_digests"] == mb["table_digests"]


def test_checkpointing_does_not_change_the_run(tmp_path: Path) -> None:
    res = run("nanjing", 2000, 90, 3, tmp_path / "ckpt", checkpoint_every=10)
    plain = run("nanjing", 2000, 90, 3, tmp_path / "plain", checkpoint_every=0)
    _same_tables(res.path, plain.path)
    m = RunStore(res.path).manifest
    assert m["complete"] is True and m["checkpoint_every"] == 10
    assert not (res.path / "checkpoint.npz").exists()
    assert res.tables["records"].num_rows > 500


def test_default_checkpoints_come_every_30_days_once_a_minute_has_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved: list[int] = []
    real = RunFolder.checkpoint

    def spy(self: RunFolder, save: object, day: int) -> None:
        saved.append(day)
        real(self, save, day)

    monkeypatch.setattr(RunFolder, "checkpoint", spy)
    quick = run("nanjing", 2000, 95, 3, tmp_path / "quick")  # takes far less than a minute
    assert saved == []
    m = RunStore(quick.path).manifest
    # expected to take less than a minute: no checkpoint (and no segments) at all
    assert (m["checkpoint_every"], m["checkpoint_seconds"]) == (0, api.CHECKPOINT_SECONDS)
    monkeypatch.setattr(api, "CHECKPOINT_SECONDS", 0.0)  # as if every day took a minute
    slow = run("nanjing", 2000, 95, 3, tmp_path / "slow")
    assert saved == [30, 60, 90]
    assert RunStore(slow.path).manifest["checkpoint_every"] == 30
    explicit = run("nanjing", 2000, 95, 3, tmp_path / "explicit", checkpoint_every=40)
    assert saved == [30, 60, 90, 40, 80]  # an explicit K is kept, whatever the run time
    assert RunStore(explicit.path).manifest["checkpoint_seconds"] == 0
    _same_tables(quick.path, slow.path)
    _same_tables(quick.path, explicit.path)


def _child(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "credsim.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_killed_run_resumes_to_identical_tables(tmp_path: Path) -> None:
    args = [
        "run",
        "nanjing",
        "--population",
        "40000",
        "--days",
        "300",
        "--seed",
        "9",
        "--checkpoint-every",
        "10",
        "--quiet",
    ]
    killed = tmp_path / "killed"
    proc = _child([*args, "--out", str(killed)])
    deadline = time.monotonic() + 120
    day = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            day = json.loads((killed / "manifest.json").read_text()).get("checkpoint_day")
        except (OSError, ValueError):
            day = None
        if day is not None and day >= 30:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)  # mid-tick, no clean-up of any kind
    proc.wait()
    m = json.loads((killed / "manifest.json").read_text())
    assert m["complete"] is False and m["checkpoint_day"] >= 30
    with pytest.raises(RunStoreError):
        RunStore(killed)  # an incomplete folder is never read as a run

    assert cli_main(["run", "--resume", str(killed), "--quiet"]) == 0
    whole = tmp_path / "whole"
    assert cli_main([*args[:-1], "--out", str(whole), "--quiet"]) == 0
    _same_tables(killed, whole)
    final = RunStore(killed).manifest
    assert final["resumed_from"] == [m["checkpoint_day"]]


def test_full_disk_keeps_the_last_checkpoint_and_resume_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = checkpoint.np.savez
    calls = {"n": 0}

    def fill_up(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(checkpoint.np, "savez", fill_up)
    with pytest.raises(CredsimError, match="No space left on device.*checkpoint of day 20 is kept"):
        run("nanjing", 3000, 100, 5, out, checkpoint_every=10)
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] is False and m["checkpoint_day"] == 20
    # besides the checkpoint, the records file as far as it kept it and .segments with the
    # score snapshots it lists (saved once; a resume deletes any it does not list)
    assert sorted(p.name for p in out.iterdir()) == KEPT
    assert (out / ".segments" / "scores-000000.arrow").is_file()
    z, meta = checkpoint.load(out / "checkpoint.npz")
    assert meta["day"] == 20
    monkeypatch.setattr(checkpoint.np, "savez", real)

    resume(out)
    run("nanjing", 3000, 100, 5, tmp_path / "whole", checkpoint_every=0)
    _same_tables(out, tmp_path / "whole")


def test_resume_refuses_what_it_cannot_continue(tmp_path: Path) -> None:
    with pytest.raises(RunStoreError, match="no run to resume"):
        resume(tmp_path)
    done = run("nanjing", 500, 10, 1, tmp_path / "done").path
    with pytest.raises(RunStoreError, match="complete; there is nothing to resume"):
        resume(done)
    assert cli_main(["run", "nanjing", "--resume", str(done)]) == 2


def test_resume_refuses_a_changed_scheme(tmp_path: Path) -> None:
    from credsim.schemes.loader import resolve

    scheme = tmp_path / "s.yaml"
    scheme.write_text(resolve("nanjing").read_text())
    out = tmp_path / "run"
    manifest = {
        "complete": False,
        "run": {
            "scheme": {"path": str(scheme), "sha256": "0" * 64},
            "population": 100,
            "days": 5,
            "seed": 1,
        },
    }
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CredsimError, match="scheme file changed"):
        resume(out)


@pytest.mark.parametrize(
    "errno_, text", [(28, "No space left on device"), (13, "Permission denied")]
)
def test_failed_final_write_leaves_an_incomplete_folder_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, errno_: int, text: str
) -> None:
    import pyarrow.parquet as pq_mod

    real = pq_mod.write_table

    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno_, text)

    out = tmp_path / "run"
    monkeypatch.setattr(pq_mod, "write_table", fail)
    assert (
        cli_main(
            [
                "run",
                "nanjing",
                "--population",
                "500",
                "--days",
                "40",
                "--seed",
                "2",
                "--checkpoint-every",
                "10",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 2
    )
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] is False and m["checkpoint_day"] == 30
    # the checkpoint, the records file as far as it kept it (then complete), and the score
    # snapshots it lists in .segments (saved once)
    assert sorted(p.name for p in out.iterdir()) == KEPT
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    monkeypatch.setattr(pq_mod, "write_table", real)
    assert cli_main(["run", "--resume", str(out), "--quiet"]) == 0
    assert RunStore(out).manifest["resumed_from"] == [30]


def test_a_table_that_cannot_be_written_during_the_run_stops_it_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The population and the score snapshots are written while the days run (on a thread of
    their own); a failure there stops the run with a clear error, leaves no partial file, and
    the run resumes from its last checkpoint to the uninterrupted run's tables."""
    from credsim.store import parts

    real = parts.TableFile.add
    seen: list[int] = []

    def full_at_the_third_snapshot(self: parts.TableFile, part) -> None:  # noqa: ANN001
        if self.name == "scores":
            seen.append(part.num_rows)
            if len(seen) == 3:
                raise OSError(28, "No space left on device")
        real(self, part)

    out = tmp_path / "run"
    monkeypatch.setattr(parts.TableFile, "add", full_at_the_third_snapshot)
    full = r"No space left on device.*checkpoint of day \d+ is kept"
    with pytest.raises(CredsimError, match=full):
        run("nanjing", 3000, 100, 5, out, checkpoint_every=10)
    # snapshots are taken on days 0, 30, 60, 90: the third (day 60) failed, and the checkpoint
    # of day 60, which waits for it to be saved, was not taken: the one of day 50 is kept
    assert len(seen) == 3
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] is False and m["checkpoint_day"] == 50
    assert sorted(p.name for p in out.iterdir()) == KEPT
    monkeypatch.setattr(parts.TableFile, "add", real)
    resume(out)
    run("nanjing", 3000, 100, 5, tmp_path / "whole", checkpoint_every=0)
    _same_tables(out, tmp_path / "whole")
