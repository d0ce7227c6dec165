"""Waiting until the service has taken and judged everything that was published.

With `GET /api/v1/pipeline` (consumer groups and their lag, readings stored, dead letters): the
collector has handled as many MQTT messages as were acknowledged by the broker (`/metrics`,
`whistle_collector_messages_total`), every group's lag is 0, and the stored count has not moved
for `stable_s`. Without it (a service that predates the endpoint) the same is read off `/metrics`:
the rule engine has evaluated at least as many readings as the collector stored, the alerts side
has applied at least as many detections as the rules emitted, and these counters and the newest
page of alarms have not moved for `stable_s`; the result says which method was used.

Everything is bounded by a deadline; on expiry the error names what did not drain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evaluation.frontdoor.client import PIPELINE, Api
from evaluation.frontdoor.errors import NoReadings, NotDrained, SurfaceMissing

POLL_S = 1.0
METHOD_PIPELINE = "GET /api/v1/pipeline"
METHOD_METRICS = "/metrics and the newest alarms"


@dataclass
class Progress:
    """One look at the service."""

    messages: int
    readings: int
    dead_letters: int
    rules_evaluated: int
    rules_detections: int
    alerts_applied: int
    lags: dict[str, int] | None  # None: no pipeline endpoint
    newest_alarms: tuple[Any, ...] = ()

    def signature(self) -> tuple[Any, ...]:
        return (self.readings, self.dead_letters, self.rules_evaluated, self.alerts_applied, self.newest_alarms)

    def waiting_for(self, published: int) -> list[str]:
        """What has not drained yet (empty: everything has, stability aside)."""
        out = []
        if self.messages < published:
            out.append(f"the collector handled {self.messages} of {published} published MQTT messages")
        if self.lags is not None:
            out += [f"consumer {k} lags by {v}" for k, v in sorted(self.lags.items()) if v]
        else:
            if self.rules_evaluated < self.readings:
                out.append(f"the rule engine evaluated {self.rules_evaluated} of {self.readings} stored readings")
            if self.alerts_applied < self.rules_detections:
                out.append(f"the alerts side applied {self.alerts_applied} of {self.rules_detections} detections")
        return out


@dataclass
class Settled:
    method: str
    seconds: float
    progress: Progress
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        p = self.progress
        return {
            "method": self.method,
            "seconds": round(self.seconds, 1),
            "messages_handled": p.messages,
            "readings_stored": p.readings,
            "dead_letters": p.dead_letters,
            "rules_evaluated": p.rules_evaluated,
            "detections": p.rules_detections,
            "detections_applied": p.alerts_applied,
            "lags": p.lags,
        }


def look(api: Api, *, use_pipeline: bool) -> Progress:
    """The service's counters now."""
    m = api.metrics()
    lags: dict[str, int] | None = None
    readings = int(m.get("whistle_collector_readings_total", 0))
    dead = int(m.get("whistle_dead_letters_total", 0))
    newest: tuple[Any, ...] = ()
    if use_pipeline:
        p = api.pipeline()
        lags = {f"{g.get('group')}:{g.get('topic')}": int(g.get("lag") or 0) for g in p.get("groups", [])}
        readings = int(p.get("readings", readings))
        dead = int(p.get("dead_letters", dead))
    else:
        page = api.alarms_page(limit=100)
        newest = tuple((a["id"], a["status"], a["count"], a["last_seen"]) for a in page)
    return Progress(
        messages=int(m.get("whistle_collector_messages_total", 0)),
        readings=readings,
        dead_letters=dead,
        rules_evaluated=int(m.get("whistle_rules_readings_total", 0)),
        rules_detections=int(m.get("whistle_rules_detections_total", 0)),
        alerts_applied=int(m.get("whistle_alerts_detections_applied_total", 0)),
        lags=lags,
        newest_alarms=newest,
    )


def has_pipeline(api: Api) -> bool:
    try:
        api.pipeline()
    except SurfaceMissing:
        return False
    return True


def wait_settled(
    api: Api,
    *,
    published: int,
    deadline_s: float,
    stable_s: float = 5.0,
    alive: Callable[[], None] | None = None,
    expect_readings: bool = True,
) -> Settled:
    """Until everything published was taken and judged (see the module's notes), or `NotDrained`."""
    use_pipeline = has_pipeline(api)
    method = METHOD_PIPELINE if use_pipeline else METHOD_METRICS
    began = time.monotonic()
    end = began + deadline_s
    last_sig: tuple[Any, ...] | None = None
    still_since = time.monotonic()
    p = look(api, use_pipeline=use_pipeline)
    while True:
        if alive is not None:
            alive()
        pending = p.waiting_for(published)
        sig = p.signature()
        if sig != last_sig:
            last_sig, still_since = sig, time.monotonic()
        if not pending and time.monotonic() - still_since >= stable_s:
            break
        if time.monotonic() > end:
            moving = "" if time.monotonic() - still_since >= stable_s else "; counters still moving"
            what = "; ".join(pending) or "nothing pending"
            raise NotDrained(f"the service did not drain within {deadline_s:.0f} s (by {method}): {what}{moving}")
        time.sleep(POLL_S)
        p = look(api, use_pipeline=use_pipeline)
    if expect_readings and published and not p.readings:
        raise NoReadings(
            f"{published} MQTT messages published and acknowledged, {p.messages} handled by the collector, "
            f"and no reading stored ({p.dead_letters} dead letters: see GET /api/v1/dead-letters)"
        )
    notes = [] if use_pipeline else [f"{PIPELINE} is not available: drained by {METHOD_METRICS} instead"]
    return Settled(method, time.monotonic() - began, p, notes)
