"""What a process reports about itself: Prometheus samples for /metrics and the details of /health."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from collectors.codecs import Reason
from whistle.metrics import Sample

if TYPE_CHECKING:
    from app.runtime import Runtime


def collect_metrics(rt: Runtime) -> list[Sample]:
    """The process's counters since it started, for GET /metrics."""
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
    if rt.rules is not None:
        out["rules"] = {"evaluated": rt.rules.evaluated, "detections": rt.rules.detections}
    if rt.alerts_worker is not None:
        out["alerts"] = {"applied": rt.alerts_worker.applied}
    return out
