"""What a process reports about itself: Prometheus samples for /metrics and the details of /health."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from collectors.codecs import Reason
from whistle.metrics import Sample, from_document

if TYPE_CHECKING:
    from app.runtime import Runtime


def collect_metrics(rt: Runtime) -> list[Sample]:
    """GET /metrics: this process's counters since it started; under `whistle serve`, every process's,
    each labelled `process` (the others' as of their last heartbeat, a few seconds old)."""
    name = rt.settings.process_name
    if name is None:
        return own_samples(rt)
    out = [Sample(s.name, s.help, s.type, s.value, {**s.labels, "process": name}) for s in own_samples(rt)]
    for beat in rt.siblings:
        other = str(beat.details.get("process") or beat.instance)
        if other != name:
            out += from_document(beat.details.get("samples"), process=other)
    return out


def own_samples(rt: Runtime) -> list[Sample]:
    """This process's counters since it started."""
    out: list[Sample] = []
    if rt.collector is not None:
        s = rt.collector.stats
        out += [
            Sample("whistle_collector_messages_total", "MQTT messages handled", "counter", s.messages),
            Sample("whistle_collector_readings_total", "readings accepted and stored", "counter", s.readings),
            Sample(
                "whistle_collector_write_failures_total", "failed batch writes (retried)", "counter", s.write_failures
            ),
            Sample(
                "whistle_collector_duplicates_total", "readings received again and stored once", "counter", s.duplicates
            ),
            Sample(
                "whistle_collector_mqtt_connected",
                "1 while every lane is connected to the broker",
                "gauge",
                1 if rt.collector.connected else 0,
            ),
        ]
        out += [
            Sample(
                "whistle_dead_letters_total",
                "input refused, by reason",
                "counter",
                s.dead_letters.get(r.value, 0),
                {"reason": r.value},
            )
            for r in Reason
        ]
    if rt.rules is not None:
        out += [
            Sample(
                "whistle_rules_readings_total", "readings evaluated by the rule engine", "counter", rt.rules.evaluated
            ),
            Sample("whistle_rules_detections_total", "detections emitted", "counter", rt.rules.detections),
        ]
    if rt.alerts_worker is not None:
        out.append(
            Sample(
                "whistle_alerts_detections_applied_total",
                "detections applied to alarms",
                "counter",
                rt.alerts_worker.applied,
            )
        )
    return out


def deployment_details(rt: Runtime) -> dict[str, Any]:
    """Under `whistle serve`: its other processes as their heartbeats last said (for /health)."""
    if rt.settings.process_name is None:
        return {}
    return {
        "processes": [
            {
                "process": b.details.get("process") or b.instance,
                "roles": list(b.roles),
                "pid": b.pid,
                "started_at": b.started_at.isoformat(),
                "seen_at": b.at.isoformat(),
            }
            for b in rt.siblings
        ]
    }


def health_details(rt: Runtime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rt.collector is not None:
        s = rt.collector.stats
        out["collector"] = {
            "mqtt_connected": rt.collector.connected,
            "messages": s.messages,
            "readings": s.readings,
            "dead_letters": sum(s.dead_letters.values()),
        }
    if rt.ingest is not None:
        q = rt.ingest
        out["ingest"] = {
            "connections": len(q.connections),
            "queued_bytes": q.priority.bytes + q.bulk.bytes,
            "full": q.full,
            "wills": q.stats.wills,
            "refused_connections": q.stats.refused_connections,
            "refused_publishes": q.stats.refused_publishes,
        }
    if rt.rules is not None:
        lanes = rt.rules.lanes.values()
        out["rules"] = {
            "evaluated": rt.rules.evaluated,
            "detections": rt.rules.detections,
            "poison": sum(lane.stats.poison for lane in lanes),
            "outages": sum(lane.stats.outages for lane in lanes),
        }
    if rt.alerts_worker is not None:
        out["alerts"] = {
            "applied": rt.alerts_worker.applied,
            "poison": rt.alerts_worker.poison,
            "outages": rt.alerts_worker.outages,
        }
    return out
