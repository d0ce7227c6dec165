"""Command line: ``python -m evaluation.crest --households 200 --days 21 --seed 101 --first-day 2026-11-03 --out D``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time

from evaluation.crest.generate import run
from evaluation.crest.output import write
from evaluation.crest.params import DEFAULT


def main(argv: list[str] | None = None) -> int:
    """Generate a district's registry, messages, truth and absences from the CREST model."""
    ap = argparse.ArgumentParser(prog="python -m evaluation.crest", description=__doc__)
    ap.add_argument("--households", type=int, default=200)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument(
        "--first-day", type=dt.date.fromisoformat, default=dt.date(2026, 11, 3), help="local (UTC+8) date, YYYY-MM-DD"
    )
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument(
        "--incident-scale",
        type=float,
        default=1.0,
        help="multiplies the lone-elder inactivity rate (1 per 100 elder-days) and the continuous-flow rate",
    )
    args = ap.parse_args(argv)
    began = time.monotonic()
    result = run(args.households, args.days, args.seed, args.first_day, args.incident_scale, DEFAULT)
    summary = write(result, args.out)
    brief = {k: summary[k] for k in ("households", "messages", "readings", "incidents", "confounders")}
    print(json.dumps(brief, ensure_ascii=False), file=sys.stderr)
    print(f"generated in {time.monotonic() - began:.1f} s -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
