"""Run the benchmarks, print a table per case and write the results as Markdown.

    python -m benchmarks                    # every case, full sizes; writes benchmarks/RESULTS.md
    python -m benchmarks --quick            # small sizes, a smoke run (about a minute or two)
    python -m benchmarks --only validation --only poll

A full run of every case writes ``benchmarks/RESULTS.md``; a quick run, or one limited with
``--only``, writes ``benchmarks/data/RESULTS-partial.md`` instead (``--output`` overrides both),
so a smoke run never replaces the published figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import CaseResult, Context, Table, machine

CASES = {
    "validation": "Validation throughput",
    "memory": "Validation memory",
    "poll": "Poll at scale",
    "postprocess": "Post-processing",
    "e2e": "End to end on the local stack",
    "coldstart": "Cold start",
    "staging": "Shard staging",
}
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
PARTIAL = HERE / "data" / "RESULTS-partial.md"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(CASES),
        metavar="CASE",
        help=f"run this case only (repeatable): {', '.join(CASES)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and few runs: a smoke run"
    )
    parser.add_argument(
        "--repeat", type=int, help="runs per measurement (each case has its own default)"
    )
    parser.add_argument("--output", type=Path, help="where to write the Markdown results")
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the generated files in benchmarks/data/"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ctx = Context(quick=args.quick, repeat=args.repeat, keep_data=args.keep_data)
    ctx.data_dir.mkdir(parents=True, exist_ok=True)
    selected = [key for key in CASES if not args.only or key in args.only]
    output = args.output or (PARTIAL if args.quick or args.only else RESULTS)
    started = time.monotonic()
    results: list[CaseResult] = []
    for key in selected:
        print(f"== {CASES[key]} ({key}){' [quick]' if args.quick else ''}", flush=True)
        case_started = time.monotonic()
        try:
            module = importlib.import_module(f"benchmarks.cases.{key}")
            result: CaseResult = module.run(ctx)
        except Exception as exc:  # one broken case must not hide the others' figures
            traceback.print_exc()
            result = CaseResult(
                key=key, title=CASES[key], description="", error=f"{type(exc).__name__}: {exc}"
            )
        result.seconds = time.monotonic() - case_started
        results.append(result)
        _print_case(result)
    total = time.monotonic() - started
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(results, quick=args.quick, total=total), encoding="utf-8")
    print(f"\n{len(results)} case(s) in {total:.0f} s; written to {output}")
    return 1 if any(result.error for result in results) else 0


def _print_case(result: CaseResult) -> None:
    if result.error:
        print(f"  FAILED: {result.error}")
        return
    for table in result.tables:
        print(table.text())
        print()
    for goal in result.goals:
        print(f"  [{_verdict(goal.met)}] {goal.text}: {goal.measured}")
    print(f"  ({result.seconds:.0f} s)", flush=True)


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "info"}[met]


def render(results: list[CaseResult], *, quick: bool, total: float) -> str:
    """The Markdown report: machine, goals at a glance, then each case in detail."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    kind = "quick (smoke) run: small sizes, figures not representative" if quick else "full run"
    lines = [
        "# Benchmarks",
        "",
        f"Written by `nox -s bench` (`python -m benchmarks`) on {now}: {kind}, "
        f"{len(results)} case(s) in {total / 60:.1f} min. Each case generates its own data under "
        "`benchmarks/data/` and deletes it afterwards. Times are medians of several runs; "
        "compared variants run interleaved, so the ratios hold on a noisy machine even when "
        "absolute figures drift.",
        "",
        "## Machine",
        "",
        Table(["", ""], [list(pair) for pair in machine()]).markdown(),
        "",
        "## Goals",
        "",
    ]
    goal_rows = [
        [result.title, goal.text, goal.measured, _verdict(goal.met)]
        for result in results
        for goal in result.goals
    ]
    goal_rows += [
        [result.title, "the case ran", result.error or "", "FAILED"]
        for result in results
        if result.error
    ]
    lines += [Table(["case", "goal", "measured", ""], goal_rows).markdown(), ""]
    for number, result in enumerate(results, start=1):
        lines += [f"## {number}. {result.title}", ""]
        if result.error:
            lines += [f"The case failed: `{result.error}`", ""]
            continue
        if result.description:
            lines += [result.description, ""]
        for table in result.tables:
            lines += [table.markdown(), ""]
        lines += [note + "\n" for note in result.notes]
        lines += [f"*({result.seconds:.0f} s)*", ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.exit(main())
