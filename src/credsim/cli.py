"""Command line: parses arguments, calls the API, prints. Errors exit non-zero with a message."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from credsim import __version__
from credsim.errors import CredsimError


def _cmd_models(args: argparse.Namespace) -> int:
    from credsim.schemes.loader import bundled_ids, load_scheme

    for sid in bundled_ids():
        print(f"{sid:20s} {load_scheme(sid).scheme.name}")
    return 0


def _cmd_scenarios(args: argparse.Namespace) -> int:
    from credsim.schemes.loader import load_scenario, scenario_ids

    for sid in scenario_ids():
        print(f"{sid:22s} {load_scenario(sid)[0].name}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from credsim.schemes.show import render_scheme

    print(render_scheme(args.scheme))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from credsim.schemes.loader import load_scheme

    loaded = load_scheme(args.file)
    s = loaded.scheme
    print(
        f"{loaded.path}: valid scheme '{s.id}' ({s.name}): {len(s.behaviours)} behaviours, "
        f"{len(s.items)} items, {len(s.lists)} lists, {len(s.measures)} measures"
    )
    return 0


def _execution(args: argparse.Namespace) -> Any:
    from credsim.engine.shards import Execution

    return Execution(
        workers=args.workers,
        shards=args.shards,
        backend=args.backend,
        address=args.address,
        block_size=args.block_size,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from credsim.api import resume, run
    from credsim.store.summary import summarize

    if args.resume is not None:
        given = [
            f for f in ("scheme", "population", "out", "events", "scenario") if getattr(args, f)
        ]
        if given:
            raise CredsimError(
                f"--resume continues a run with its own settings; drop {', '.join(given)}"
            )
        result = resume(args.resume, progress=not args.quiet, execution=_execution(args))
    else:
        if args.scheme is None:
            raise CredsimError("run needs a SCHEME (a bundled id or a file), or --resume DIR")
        out = args.out or _default_out(args.scheme, args.seed)
        result = run(
            args.scheme,
            args.population,
            args.days,
            args.seed,
            out,
            progress=not args.quiet,
            events=args.events,
            checkpoint_every=args.checkpoint_every,
            scenarios=args.scenario,
            execution=_execution(args),
        )
    assert result.path is not None
    if not args.quiet:
        print(summarize(result.path))
    else:
        print(result.path)
    ev = result.manifest.get("events")
    if ev:
        print(
            f"events: {ev['rows_read']:,} rows read, {ev['accepted']:,} accepted, "
            f"{ev['quarantined']:,} quarantined (see {result.path / 'quarantine.parquet'})",
            file=sys.stderr if args.quiet else sys.stdout,
        )
    return 0


def _default_out(scheme: str, seed: int) -> Path:
    base = Path("runs") / f"{Path(scheme).stem}-seed{seed}"
    p, i = base, 1
    while p.exists():
        i += 1
        p = base.with_name(f"{base.name}-{i}")
    return p


def _cmd_sweep(args: argparse.Namespace) -> int:
    from credsim.sweep import sweep

    out = args.out or _default_out(f"sweep-{Path(args.scheme).stem}", args.seed_base)
    path = sweep(
        args.scheme,
        args.sets,
        args.seeds,
        out,
        population=args.population,
        days=args.days,
        scenarios=args.scenario,
        seed_base=args.seed_base,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(f"sweep written to {path} (metrics.parquet, summary.csv, runs/)")
    print(f"compare two cells: credsim diff {path}::CELL {path}::CELL")
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from credsim.sweep import diff, format_diff

    table = diff(args.a, args.b)
    print(format_diff(table, only_changed=not args.all))
    if args.csv:
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, args.csv)
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from credsim.store.summary import summarize

    print(summarize(args.dir))
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from credsim.store.query import format_table, query

    print(format_table(query(args.dir, args.sql), max_rows=args.max_rows))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from credsim.store.explain import explain

    print(explain(args.dir, args.entity))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from credsim.store.verify import verify

    report = verify(args.dir, expect=args.expect)
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from credsim.report import write_report

    print(write_report(args.dir))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from credsim.audit import summary, write_audit

    path, result = write_audit(args.dir)
    print(summary(result))
    print(f"\nwritten: {path}")
    return 0


def _execution_args(sp: argparse.ArgumentParser) -> None:
    from credsim.engine.shards import BACKENDS, BLOCK_SIZE

    g = sp.add_argument_group("parallel execution (the result is the same whatever is chosen)")
    g.add_argument(
        "--workers", type=int, default=None, metavar="N", help="workers (default: all local cores)"
    )
    g.add_argument(
        "--shards", type=int, default=None, metavar="S", help="shards of blocks (default: workers)"
    )
    g.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="local threads, or Ray actors (pip install 'credsim[ray]')",
    )
    g.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="Ray cluster to join (e.g. ray://head:10001 or auto); default: a local Ray runtime",
    )
    g.add_argument(
        "--block-size",
        type=int,
        default=BLOCK_SIZE,
        metavar="P",
        help=f"persons per block (default {BLOCK_SIZE}); unlike the rest, part of the random "
        "structure: another block size gives another (equally valid) draw",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="credsim",
        description="Simulate social credit schemes over synthetic populations "
        "(it never scores real people).",
    )
    p.add_argument("--version", action="version", version=f"credsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sp = sub.add_parser("models", help="list the bundled schemes")
    sp.set_defaults(func=_cmd_models)
    sp = sub.add_parser("scenarios", help="list the bundled scenarios (overlays for any scheme)")
    sp.set_defaults(func=_cmd_scenarios)
    sp = sub.add_parser("show", help="print a scheme with the provenance of every number")
    sp.add_argument("scheme", help="bundled scheme id or path to a scheme file")
    sp.set_defaults(func=_cmd_show)
    sp = sub.add_parser("validate", help="check a scheme file; non-zero exit if malformed")
    sp.add_argument("file")
    sp.set_defaults(func=_cmd_validate)

    sp = sub.add_parser("run", help="run a scheme and write a run folder")
    sp.add_argument("scheme", nargs="?", help="bundled scheme id or path to a scheme file")
    sp.add_argument(
        "--population",
        type=int,
        default=None,
        help="number of persons (default: the jurisdiction's real size)",
    )
    sp.add_argument("--days", type=int, default=365, help="simulated days (default 365)")
    sp.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sp.add_argument("--out", default=None, help="run folder to create (default runs/SCHEME-seedS)")
    sp.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    sp.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="K",
        help="save the engine state every K simulated days (0: never; default: every 30 days "
        "once a minute of run time has passed since the last checkpoint, none in a run "
        "expected to take less than a minute)",
    )
    sp.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="lay a scenario over the scheme (bundled id or file; repeatable, applied in order; "
        "see `credsim scenarios`)",
    )
    sp.add_argument(
        "--resume",
        metavar="DIR",
        default=None,
        help="continue an interrupted run in DIR from its last checkpoint",
    )
    sp.add_argument(
        "--events",
        metavar="FILE",
        default=None,
        help="CSV or Parquet file of case-study events to inject (columns entity, day, "
        "behaviour, optional note); invalid rows go to quarantine.parquet",
    )
    _execution_args(sp)
    sp.set_defaults(func=_cmd_run)

    sp = sub.add_parser("summary", help="summarise a run folder")
    sp.add_argument("dir")
    sp.set_defaults(func=_cmd_summary)
    sp = sub.add_parser("query", help="run SQL (DuckDB) over a run's tables")
    sp.add_argument("dir")
    sp.add_argument("sql", help='e.g. "select status, count(*) from records group by 1"')
    sp.add_argument("--max-rows", type=int, default=50)
    sp.set_defaults(func=_cmd_query)
    sp = sub.add_parser("explain", help="a plain-language credit report on one entity")
    sp.add_argument("dir")
    sp.add_argument("entity", help="entity_id or 18-character identity code")
    sp.set_defaults(func=_cmd_explain)
    sp = sub.add_parser(
        "verify", help="check a run folder's files against its digests (exit 1 if tampered)"
    )
    sp.add_argument("dir")
    sp.add_argument(
        "--expect",
        metavar="DIGEST",
        default=None,
        help="manifest digest or ledger head recorded elsewhere when the run was made",
    )
    sp.set_defaults(func=_cmd_verify)
    sp = sub.add_parser(
        "audit", help="fairness and error audit of a run folder; writes DIR/audit.json"
    )
    sp.add_argument("dir")
    sp.set_defaults(func=_cmd_audit)
    sp = sub.add_parser(
        "sweep", help="run a grid of settings over K seeds in parallel; means with 95%% intervals"
    )
    sp.add_argument("scheme", help="bundled scheme id or path to a scheme file")
    sp.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a grid axis: a scheme field (dotted) and its values, e.g. review=none,required",
    )
    sp.add_argument("--seeds", type=int, default=5, help="seeds per cell (default 5)")
    sp.add_argument("--seed-base", type=int, default=0, help="first seed (default 0)")
    sp.add_argument("--population", type=int, default=None)
    sp.add_argument("--days", type=int, default=365)
    sp.add_argument("--scenario", action="append", default=[], metavar="NAME")
    sp.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    sp.add_argument("--out", default=None, help="sweep folder (default runs/sweep-SCHEME)")
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=_cmd_sweep)
    sp = sub.add_parser(
        "diff", help="compare two runs, or two sweep cells (SWEEP::CELL), metric by metric"
    )
    sp.add_argument("a", help="run folder or SWEEP_DIR::CELL")
    sp.add_argument("b", help="run folder or SWEEP_DIR::CELL")
    sp.add_argument("--all", action="store_true", help="also list metrics that did not change")
    sp.add_argument("--csv", default=None, metavar="FILE", help="write every row to a CSV file")
    sp.set_defaults(func=_cmd_diff)
    sp = sub.add_parser(
        "report", help="write DIR/report.html: a self-contained page with plots (opens offline)"
    )
    sp.add_argument("dir")
    sp.set_defaults(func=_cmd_report)
    sp = sub.add_parser(
        "calibrate",
        help="compare a run with the published figures the scheme cites (exit 1 if any is off)",
    )
    sp.add_argument("scheme", help="bundled scheme id or path to a scheme file")
    sp.add_argument(
        "--population",
        type=int,
        default=None,
        help="number of persons (default: the real size, at most 200,000; counts are scaled)",
    )
    sp.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sp.add_argument(
        "--days",
        type=int,
        default=None,
        help="simulated days (default 365, or more if a figure needs it)",
    )
    sp.set_defaults(func=_cmd_calibrate)
    sp = sub.add_parser(
        "compare",
        help="compare schemes (inputs, incentives, privacy-control index, AI ethics, EU AI Act) "
        "into CSV and Markdown files",
    )
    sp.add_argument(
        "schemes", nargs="*", metavar="SCHEME", help="bundled ids or files (default: all bundled)"
    )
    sp.add_argument("--out", required=True, help="folder to create (refused if not empty)")
    sp.add_argument(
        "--criteria", default=None, help="criteria file (default: the bundled criteria.yaml)"
    )
    sp.set_defaults(func=_cmd_compare)
    return p


def _cmd_compare(args: argparse.Namespace) -> int:
    from credsim.compare import TABLES, compare

    out = compare(args.schemes, args.out, criteria=args.criteria)
    print(f"{out}: {', '.join(f'{t}.csv, {t}.md' for t in TABLES)}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from credsim.calibrate import calibrate, render

    report = calibrate(args.scheme, args.population, args.seed, args.days)
    print(render(report))
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CredsimError as exc:
        print(f"credsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("credsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
