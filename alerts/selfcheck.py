"""The service alarms about itself, to the operations center, like any other alarm (`system.*` kinds).

Every round (`every_s`) the alerts role looks at the processes' heartbeats (whistle.heartbeat), the
consumer groups' lag on the bus (whistle.pipeline) and the dead letters, and raises, or clears:

- `system.role_down` — a role (collector, rules) with no process heard from for `role_down_after_s`;
  cleared when one is back. (The alerts role cannot report its own death: `/api/v1/health` and the
  supervisor's log do.)
- `system.lag` — a consumer group more than `lag_records` behind for `lag_for_s` (rules or alerts not
  keeping up, or stopped while the others go on).
- `system.ingest_backlog` — the embedded MQTT endpoint has stopped reading the devices (its lanes hold
  their bound) for `backlog_for_s`: storing cannot keep up, or the database is away.
- `system.dead_letters` — more than `dead_letters_per_window` refused messages or bus records in the last
  `window_s`: a device, a gateway or an integration sending what nobody can read.
- `system.database_unreachable` — a process could not reach PostgreSQL for at least `outage_min_s`; it
  reports the outage (from, to) once it is back, and the alarm is raised and cleared with those times
  (while it lasts, nothing can be written anywhere, and `/health` says "degraded").
- `system.broker_unreachable` — a collector's subscription to WHISTLE_MQTT_URL down for `broker_down_s`.

Detections carry the time their condition began (or ended) as their event time, so a condition that goes
on raises one alarm, updated, not one per round, and two alerts processes watching raise it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alerts.service import AlertService
from whistle.bus import Bus
from whistle.domain import AlarmKind, Detection, DetectionAction, Severity, SubjectType
from whistle.heartbeat import Heartbeat, forget_older_than, heartbeats
from whistle.pipeline import pipeline_state
from whistle.timeutil import from_datetime, now_ms, to_datetime

log = logging.getLogger(__name__)

WATCHED_ROLES = ("collector", "rules")  # the alerts role watches the others; it cannot report itself


@dataclass(frozen=True, slots=True)
class SelfCheckParams:
    every_s: float = 10.0
    role_down_after_s: float = 30.0
    lag_records: int = 200_000
    lag_for_s: float = 120.0
    backlog_for_s: float = 60.0
    window_s: float = 300.0
    dead_letters_per_window: int = 500
    outage_min_s: float = 10.0
    broker_down_s: float = 30.0
    forget_after_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class Observation:
    """What one round saw (the pure part decides from this)."""

    now: int
    beats: Sequence[Heartbeat]
    lag: Mapping[str, int]  # consumer group -> records behind
    dead_letters: int  # in the window


@dataclass
class Condition:
    """A condition this monitor has seen go bad (since when), and whether it raised it."""

    since: int
    raised: bool = False


def _detection(
    kind: AlarmKind, subject: str, action: DetectionAction, ts: int, evidence: Mapping[str, Any]
) -> Detection:
    return Detection(
        kind=kind,
        severity=Severity.MAJOR if kind is not AlarmKind.SYSTEM_DEAD_LETTERS else Severity.MINOR,
        subject_type=SubjectType.SYSTEM,
        subject_id=subject,
        ts=ts,
        action=action,
        evidence=dict(evidence),
        source_id=f"selfcheck:{subject}:{ts}",
    )


@dataclass
class SelfCheck:
    """The pure core: feed it observations, get detections back (raise once, clear once)."""

    params: SelfCheckParams = field(default_factory=SelfCheckParams)
    open: dict[tuple[AlarmKind, str], Condition] = field(default_factory=dict)
    reported_outages: set[tuple[str, int]] = field(default_factory=set)

    def _bad(
        self, out: list[Detection], kind: AlarmKind, subject: str, now: int, hold_ms: float, ev: Mapping[str, Any]
    ) -> None:
        cond = self.open.setdefault((kind, subject), Condition(now))
        if not cond.raised and now - cond.since >= hold_ms:
            cond.raised = True
            out.append(_detection(kind, subject, DetectionAction.RAISE, cond.since, {**ev, "since": cond.since}))

    def _good(self, out: list[Detection], kind: AlarmKind, subject: str, now: int, ev: Mapping[str, Any]) -> None:
        cond = self.open.pop((kind, subject), None)
        if cond is not None and cond.raised:
            out.append(_detection(kind, subject, DetectionAction.CLEAR, now, {**ev, "since": cond.since, "until": now}))

    def observe(self, o: Observation) -> list[Detection]:
        p = self.params
        out: list[Detection] = []
        # roles: a role is watched once any of its processes was heard from
        for role in WATCHED_ROLES:
            mine = [b for b in o.beats if role in b.roles]
            if not mine:
                continue
            last = max(from_datetime(b.at) for b in mine)
            subject = f"role:{role}"
            if o.now - last > p.role_down_after_s * 1000:
                ev = {"role": role, "last_heard": to_datetime(last).isoformat(), "processes": len(mine)}
                cond = self.open.setdefault((AlarmKind.SYSTEM_ROLE_DOWN, subject), Condition(last))
                if not cond.raised:
                    cond.raised = True
                    out.append(
                        _detection(
                            AlarmKind.SYSTEM_ROLE_DOWN, subject, DetectionAction.RAISE, last, {**ev, "since": last}
                        )
                    )
            else:
                self._good(out, AlarmKind.SYSTEM_ROLE_DOWN, subject, o.now, {"role": role})
        for group, behind in o.lag.items():
            subject = f"lag:{group}"
            if behind > p.lag_records:
                self._bad(
                    out, AlarmKind.SYSTEM_LAG, subject, o.now, p.lag_for_s * 1000, {"group": group, "records": behind}
                )
            else:
                self._good(out, AlarmKind.SYSTEM_LAG, subject, o.now, {"group": group, "records": behind})
        full = [b for b in o.beats if (b.details.get("ingest") or {}).get("full")]
        if full:
            ev = {"processes": [b.instance for b in full]}
            self._bad(out, AlarmKind.SYSTEM_INGEST_BACKLOG, "ingest", o.now, p.backlog_for_s * 1000, ev)
        else:
            self._good(out, AlarmKind.SYSTEM_INGEST_BACKLOG, "ingest", o.now, {})
        if o.dead_letters > p.dead_letters_per_window:
            ev = {"dead_letters": o.dead_letters, "window_s": p.window_s}
            self._bad(out, AlarmKind.SYSTEM_DEAD_LETTERS, "dead_letters", o.now, 0, ev)
        else:
            self._good(out, AlarmKind.SYSTEM_DEAD_LETTERS, "dead_letters", o.now, {"dead_letters": o.dead_letters})
        disconnected = [b for b in o.beats if b.details.get("mqtt_connected") is False and "collector" in b.roles]
        if disconnected:
            ev = {"processes": [b.instance for b in disconnected]}
            self._bad(out, AlarmKind.SYSTEM_BROKER, "broker", o.now, p.broker_down_s * 1000, ev)
        else:
            self._good(out, AlarmKind.SYSTEM_BROKER, "broker", o.now, {})
        for b in o.beats:  # outages a process rode out, reported once it could write again
            for outage in b.details.get("db_outages") or ():
                since, until = int(outage["since"]), int(outage["until"])
                key = (b.instance, since)
                if key in self.reported_outages or until - since < p.outage_min_s * 1000:
                    continue
                self.reported_outages.add(key)
                ev = {"process": b.instance, "since": since, "until": until, "seconds": round((until - since) / 1000)}
                out.append(_detection(AlarmKind.SYSTEM_DATABASE, "database", DetectionAction.RAISE, since, ev))
                out.append(_detection(AlarmKind.SYSTEM_DATABASE, "database", DetectionAction.CLEAR, until, ev))
        return out


class SelfCheckWorker:
    """Runs `SelfCheck` against the database and the bus, and applies what it decides."""

    def __init__(
        self,
        service: AlertService,
        bus: Bus,
        *,
        params: SelfCheckParams | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.service = service
        self.bus = bus
        self.check = SelfCheck(params or SelfCheckParams())
        self.clock = clock
        self.raised = 0

    async def observe(self) -> Observation:
        db = self.service.db
        beats = await heartbeats(db)
        state = await pipeline_state(self.bus, db)
        async with db.connection() as conn:
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM dead_letters WHERE received_at > now() - make_interval(secs => %s))"
                " + (SELECT count(*) FROM bus_dead_letters WHERE received_at > now() - make_interval(secs => %s))",
                (self.check.params.window_s, self.check.params.window_s),
            )
            row = await cur.fetchone()
        return Observation(self.clock(), beats, {g.group: g.lag for g in state.groups}, int(row[0]) if row else 0)

    async def run_once(self) -> list[Detection]:
        found = self.check.observe(await self.observe())
        for d in found:
            await self.service.apply(d)
            if d.action is DetectionAction.RAISE:
                self.raised += 1
                log.warning("system alarm %s on %s: %s", d.kind.value, d.subject_id, dict(d.evidence))
        return found

    async def run(self, stop: asyncio.Event) -> None:
        p = self.check.params
        while not stop.is_set():
            try:
                await self.run_once()
                await forget_older_than(self.service.db, p.forget_after_s)
            except Exception as exc:  # the database away: the processes report that once it is back
                log.debug("self-check round failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), p.every_s)
