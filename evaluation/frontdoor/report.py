"""docs/EVALUATION.md from a suite's JSON. What follows `DOC_MARKER` in the existing file is kept."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

DOC_MARKER = "<!-- end of the generated report: what follows is kept when it is written again -->"
TITLES = {"simulator": "the project's simulator", "crest": "CREST (evaluation.crest)"}


def fmt(x: Any, nd: int = 2) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _pr(s: Mapping[str, Any]) -> str:
    return f"{fmt(s['precision'])} / {fmt(s['recall'])}"


def _delay(s: Mapping[str, Any]) -> str:
    return f"{fmt(s['median_delay_h'])} / {fmt(s['p90_delay_h'])}"


def _columns(report: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(heading, pooled figures, verdict) per source and role."""
    cols = []
    for name, src in report["sources"].items():
        for role, key in (("tuning", "tuning"), ("held-out", "held_out")):
            part = src[key]
            seeds = ", ".join(str(s) for s in part["pooled"]["seeds"])
            cols.append((f"{name} {role} ({seeds})", part["pooled"], part["verdict"]))
    return cols


def results_table(report: Mapping[str, Any]) -> str:
    cols = _columns(report)

    def row(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(cell(p) for _, p, _ in cols) + " |"

    def gr(p: Mapping[str, Any], which: str) -> str:
        judged = p["group_rental"]["judged"] or which == "power_only"  # the screen is ours, computed from usage
        return _pr(p["group_rental"][which]) if judged else "not judged"

    lines = [
        "| measure | " + " | ".join(h for h, _, _ in cols) + " |",
        "|---|" + "---|" * len(cols),
        row("setting", lambda p: "—"),
        row(
            "lone elder: incidents found / incidents",
            lambda p: f"{p['lone_elder']['model']['detected']} / {p['lone_elder']['model']['incidents']}",
        ),
        row("lone elder, model: median / p90 delay h", lambda p: _delay(p["lone_elder"]["model"])),
        row("lone elder, < 10 L in 12 h: median / p90 delay h", lambda p: _delay(p["lone_elder"]["fixed_rule"])),
        row(
            "lone elder, model: false alerts per 100 elder-days",
            lambda p: fmt(p["lone_elder"]["model_false_alerts_per_100_elder_days"]),
        ),
        row(
            "lone elder, < 10 L in 12 h: false alerts per 100 elder-days",
            lambda p: fmt(p["lone_elder"]["fixed_rule_false_alerts_per_100_elder_days"]),
        ),
        row(
            "lone elder, < 10 L in 12 h: found / incidents",
            lambda p: f"{p['lone_elder']['fixed_rule']['detected']} / {p['lone_elder']['fixed_rule']['incidents']}",
        ),
        row(
            "lone-elder tickets (most for one household)",
            lambda p: f"{p['lone_elder']['tickets']} ({p['lone_elder']['most_tickets_for_one_household']})",
        ),
        row("elders, elder-days", lambda p: f"{p['lone_elder']['households']}, {p['lone_elder']['elder_days']}"),
        row("group rental, model: precision / recall", lambda p: gr(p, "model")),
        row("group rental, electricity only: precision / recall", lambda p: gr(p, "power_only")),
        row("group rentals", lambda p: str(p["group_rental"]["model"]["incidents"])),
        row("e-bike: precision / recall", lambda p: _pr(p["ebike"])),
        row("e-bike: median / p90 delay h", lambda p: _delay(p["ebike"])),
        row("e-bike: charges, alarms", lambda p: f"{p['ebike']['incidents']}, {p['ebike']['alarms']}"),
        row("continuous flow: precision / recall", lambda p: _pr(p["continuous_flow"])),
        row(
            "continuous flow: incidents, alarms",
            lambda p: f"{p['continuous_flow']['incidents']}, {p['continuous_flow']['alarms']}",
        ),
        row("device.offline: precision / recall", lambda p: _pr(p["device_offline"])),
        row(
            "device.offline: incidents, alarms",
            lambda p: f"{p['device_offline']['incidents']}, {p['device_offline']['alarms']}",
        ),
    ]
    settings = []
    for src in report["sources"].values():
        settings += [src["tuning"]["setting"], src["held_out"]["setting"]]
    lines[2] = "| setting | " + " | ".join(settings) + " |"
    return "\n".join(lines)


def targets_table(report: Mapping[str, Any]) -> str:
    cols = _columns(report)
    checks: tuple[tuple[str, Callable[[Mapping[str, Any], Mapping[str, Any]], str]], ...] = (
        ("group rental precision ≥ 0.9", lambda p, v: _ge(p["group_rental"]["model"]["precision"], 0.9, p)),
        ("group rental recall ≥ 0.85", lambda p, v: _ge(p["group_rental"]["model"]["recall"], 0.85, p)),
        ("lone elder: every incident found", lambda p, v: fmt(v["every_incident_found"])),
        ("lone elder: median delay ≤ 4 h", lambda p, v: fmt(v["median_delay_within_4_h"])),
        (
            "lone elder: ≤ 1 false alert per 100 elder-days",
            lambda p, v: fmt(v["at_most_1_false_alert_per_100_elder_days"]),
        ),
        (
            "lone elder: no more false alerts than the fixed rule",
            lambda p, v: fmt(v["no_more_false_alerts_than_fixed_rule"]),
        ),
        (
            "lone elder: beats the fixed rule on delay and false alerts",
            lambda p, v: fmt(v["beats_fixed_rule_on_delay_and_false_alerts"]),
        ),
        ("e-bike precision ≥ 0.95", lambda p, v: _ge(p["ebike"]["precision"], 0.95, None)),
    )
    lines = ["| target | " + " | ".join(h for h, _, _ in cols) + " |", "|---|" + "---|" * len(cols)]
    for label, check in checks:
        lines.append(f"| {label} | " + " | ".join(check(p, v) for _, p, v in cols) + " |")
    return "\n".join(lines)


def _ge(x: float | None, bar: float, pooled: Mapping[str, Any] | None) -> str:
    if pooled is not None and not pooled["group_rental"]["judged"]:
        return "not judged"
    return "—" if x is None else ("yes" if x >= bar else "no") + f" ({x:.2f})"


def curve_section(name: str, src: Mapping[str, Any]) -> str:
    chosen = src["chosen"]
    if not src["curve"]:
        return f"**{TITLES.get(name, name)}**: chosen point: {chosen['setting']} — {chosen['why']}.\n"
    lines = [
        f"**{TITLES.get(name, name)}**, tuning seeds {', '.join(str(s) for s in src['plan']['tuning_seeds'])}:",
        "",
        "| setting | overrides | found | median h | p90 h | false alerts per 100 elder-days | all targets "
        "| beats the rule |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fixed = src["curve"][0]["pooled"]["lone_elder"]
    for p in src["curve"]:
        le = p["pooled"]["lone_elder"]
        mark = " **(chosen)**" if p["setting"] == chosen["setting"] else ""
        lines.append(
            f"| {p['setting']}{mark} | `{json.dumps(p['overrides'])}` "
            f"| {le['model']['detected']}/{le['model']['incidents']} "
            f"| {fmt(le['model']['median_delay_h'])} | {fmt(le['model']['p90_delay_h'])} "
            f"| {fmt(le['model_false_alerts_per_100_elder_days'])} | {fmt(p['verdict']['all_targets'])} "
            f"| {fmt(p['verdict']['beats_fixed_rule_on_delay_and_false_alerts'])} |"
        )
    lines.append(
        f"| fixed rule: < 10 L in 12 h | — | {fixed['fixed_rule']['detected']}/{fixed['fixed_rule']['incidents']} "
        f"| {fmt(fixed['fixed_rule']['median_delay_h'])} | {fmt(fixed['fixed_rule']['p90_delay_h'])} "
        f"| {fmt(fixed['fixed_rule_false_alerts_per_100_elder_days'])} | — | — |"
    )
    lines += ["", f"Chosen: **{chosen['setting']}** — {chosen['why']}. The held-out seeds ran with it.", ""]
    return "\n".join(lines)


def runs_table(report: Mapping[str, Any]) -> str:
    lines = [
        "| source | seed | role | setting | messages | readings stored | dead letters | drained by | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, src in report["sources"].items():
        runs: Sequence[Mapping[str, Any]] = [*src["tuning"]["runs"], *src["curve_runs"], *src["held_out"]["runs"]]
        for r in runs:
            d = r["run"]["drained"]
            lines.append(
                f"| {name} | {r['seed']} | {r.get('role', '')} | {r['setting']} "
                f"| {r['run']['published']['messages']:,} "
                f"| {d['readings_stored']:,} | {d['dead_letters']} | {d['method'].split(' (')[0]} "
                f"| {r['run']['seconds']['total']:.0f} |"
            )
    return "\n".join(lines)


def write_doc(report: Mapping[str, Any], path: Path) -> None:
    """Write the generated report, keeping what follows the marker in the existing file."""
    partial = ""
    if report.get("partial"):
        partial = (
            "\n> **Partial run, not of record:** `POST /api/v1/jobs/household-days` was not called "
            "(`--without-household-job`), so group rental was not judged.\n"
        )
    plans = []
    for name, src in report["sources"].items():
        p = src["plan"]
        gen = src["tuning"]["runs"][0]["run"]["generator"]["command"] if src["tuning"]["runs"] else ""
        extra = f", incident scale {p['incident_scale']}" if "incident_scale" in p else ""
        extra += f", simulator overrides `{p['simulator_params']}`" if "simulator_params" in p else ""
        plans.append(
            f"- **{TITLES.get(name, name)}**: {p['households']} households × {p['days']} days from {p['first_day']}"
            f"{extra}; tuning seeds {', '.join(map(str, p['tuning_seeds']))}, held-out seeds "
            f"{', '.join(map(str, p['held_out_seeds']))}. Generated by `{gen}` (seed varied)."
        )
    notes = "\n".join(f"- {n}" for n in report.get("notes", [])) or "- (none)"
    curves = "\n".join(curve_section(name, src) for name, src in report["sources"].items())
    text = f"""# Evaluation through the front door

The figures of record for the household models (issue 14). Every run starts `whistle serve` as its
own process with its own state (a temporary `WHISTLE_STATE_DIR`, so its own embedded PostgreSQL),
posts the registry to `POST /api/v1/registry` while it runs and the declared absences to
`POST /api/v1/households/{{id}}/absences`, publishes the devices' traffic over MQTT at QoS 1, waits
until the service has taken and judged everything, runs the daily household job over the span
(`POST /api/v1/jobs/household-days`), and reads every alarm and ticket back over REST. The fixed
rules are computed on the same data, read back through `GET /api/v1/devices/{{id}}/usage`. The
evaluator (`evaluation/frontdoor/`) imports nothing from the product (an import contract in
pyproject.toml). Written by `python -m evaluation.frontdoor`; reproduce with

```sh
{report.get("command") or "make eval"}
```
{partial}
Started {report.get("started")}; the whole evaluation took {report.get("seconds", 0) / 60:.0f} min.

{chr(10).join(plans)}

Surfaces and how the service was waited for:

{notes}

## Results

Tuning seeds ran with the shipped rule settings; held-out seeds with the operating point chosen on the
tuning seeds (below). Seeds are pooled: incidents, alarms and delays summed, medians over the pooled
delays. Delays are event time, from an incident's start to the alarm's first detection (`first_seen`).
An alarm that matches no incident counts against precision; for the lone elder, every such alarm is a
false alert (per 100 elder-days). The fixed rule is suppressed inside declared absences, as the model is.

{results_table(report)}

## Against the targets

{targets_table(report)}

## Lone elder: the trade-off and the point chosen

{curves}
## Runs

{runs_table(report)}

The full figures (every run, every kind, alarms by cause, tickets by kind) are in the JSON written next
to this file (`docs/evaluation.json` for `make eval`).
"""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    tail = old[old.index(DOC_MARKER) :] if DOC_MARKER in old else DOC_MARKER + "\n"
    path.write_text(text + "\n" + tail, encoding="utf-8")
