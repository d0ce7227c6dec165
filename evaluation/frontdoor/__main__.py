"""Command line of the front-door evaluation.

    python -m evaluation.frontdoor suite [--quick] --json-out docs/evaluation.json --doc docs/EVALUATION.md
    python -m evaluation.frontdoor run --source crest --seed 101 --households 60 --days 15 [--json-out F]
    python -m evaluation.frontdoor doc --json docs/evaluation.json --doc docs/EVALUATION.md

`suite` is the evaluation of record (`make eval`; `make eval-quick` for a smaller one); `run` is one
run of one source and seed; `doc` writes docs/EVALUATION.md again from a suite's JSON. Exit status:
0 done, 1 the evaluation failed (the message names what), 3 a public surface it needs is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date
from pathlib import Path
from typing import Any

from evaluation.frontdoor.errors import EvaluationError, SurfaceMissing
from evaluation.frontdoor.report import write_doc
from evaluation.frontdoor.run import RunOptions, run_once
from evaluation.frontdoor.sources import CrestSource, SimulatorSource, Source
from evaluation.frontdoor.suite import PLANS, QUICK, SuiteOptions, run_suite

EXIT_FAILED = 1
EXIT_SURFACE_MISSING = 3


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--broker",
        choices=["auto", "embedded", "mosquitto"],
        default="auto",
        help="auto: the service's own broker (WHISTLE_MQTT_LISTEN) when `whistle serve --help` offers it, "
        "else a private Mosquitto",
    )
    p.add_argument("--deadline", type=float, default=1800.0, help="seconds the service may take to drain, per wait")
    p.add_argument(
        "--without-household-job",
        action="store_true",
        help="do not call POST /api/v1/jobs/household-days: group rental is not judged and the run is marked "
        "partial (never of record)",
    )
    p.add_argument("--keep", action="store_true", help="keep each run's files (data, state, logs)")
    p.add_argument("--workroot", type=Path, default=None, help="where run directories go (default: the temp dir)")
    p.add_argument("--whistle", default=None, help="the whistle command (default: next to this interpreter)")
    p.add_argument("--json-out", type=Path, default=None)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m evaluation.frontdoor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="one run: one source, one seed, a fresh whistle serve")
    run.add_argument("--source", choices=["crest", "simulator"], required=True)
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--households", type=int, default=None)
    run.add_argument("--days", type=int, default=None)
    run.add_argument("--first-day", type=date.fromisoformat, default=date(2026, 11, 3))
    run.add_argument("--incident-scale", type=float, default=None, help="crest: multiplies the incident rates")
    run.add_argument("--sim-params", type=Path, default=None, help="simulator: --params overrides (JSON)")
    run.add_argument(
        "--lone-elder", default=None, help="JSON overrides of household.lone_elder_inactive, e.g. '{\"day_rank\": 1}'"
    )
    _common(run)

    suite = sub.add_parser("suite", help="the evaluation of record: both sources, tuning and held-out seeds")
    suite.add_argument("--quick", action="store_true", help="a smaller suite: one seed of each kind, no curve")
    suite.add_argument("--sources", nargs="+", choices=sorted(PLANS), default=sorted(PLANS))
    suite.add_argument("--no-curve", action="store_true", help="skip the lone-elder operating points")
    suite.add_argument("--doc", type=Path, default=None, help="write the report here (docs/EVALUATION.md)")
    _common(suite)

    doc = sub.add_parser("doc", help="write docs/EVALUATION.md again from a suite's JSON")
    doc.add_argument("--json", type=Path, required=True)
    doc.add_argument("--doc", type=Path, required=True)
    return ap


def _source(args: argparse.Namespace) -> Source:
    plan = PLANS[args.source]
    households = args.households or plan.households
    days = args.days or plan.days
    if args.source == "crest":
        scale = args.incident_scale if args.incident_scale is not None else plan.incident_scale
        return CrestSource(args.seed, households, days, args.first_day, scale)
    return SimulatorSource(args.seed, households, days, args.first_day, params=args.sim_params or plan.params)


def _write_json(path: Path | None, doc: Any) -> None:
    text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    if path is None:
        print(text, end="")
    else:
        path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(message)s"
    )
    logging.getLogger("evaluation.frontdoor").setLevel(logging.INFO)
    try:
        if args.command == "doc":
            report = json.loads(args.json.read_text(encoding="utf-8"))
            write_doc(report, args.doc)
            return 0
        if args.command == "run":
            opts = RunOptions(
                broker=args.broker,
                deadline_s=args.deadline,
                household_job=not args.without_household_job,
                keep=args.keep,
                workroot=args.workroot,
                whistle=args.whistle,
                rules=json.loads(args.lone_elder) if args.lone_elder else None,
                setting="command line" if args.lone_elder else "shipped defaults",
            )
            _write_json(args.json_out, run_once(_source(args), opts))
            return 0
        options = SuiteOptions(
            plans={k: (QUICK[k] if args.quick else PLANS[k]) for k in args.sources},
            curve=not (args.no_curve or args.quick),
            broker=args.broker,
            deadline_s=args.deadline,
            household_job=not args.without_household_job,
            keep=args.keep,
            workroot=args.workroot,
            whistle=args.whistle,
            command=" ".join(["python -m evaluation.frontdoor", *(argv if argv is not None else sys.argv[1:])]),
        )
        report = run_suite(options, on_progress=lambda msg: print(msg, file=sys.stderr, flush=True))
        _write_json(args.json_out, report)
        if args.doc is not None:
            write_doc(report, args.doc)
        return 0
    except SurfaceMissing as exc:
        print(f"evaluation failed: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", []):
            print(note, file=sys.stderr)
        return EXIT_SURFACE_MISSING
    except EvaluationError as exc:
        print(f"evaluation failed: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", []):
            print(note, file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
