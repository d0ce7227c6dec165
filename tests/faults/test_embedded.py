"""Faults on the embedded default (`whistle serve` with its own PostgreSQL, the MQTT endpoint, the PostgreSQL
log bus): the service killed mid-backfill, its database stopped for a minute, poison on every topic."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from tests.faults.conftest import RECOVERIES, publish_all, settled_as_reference, wait
from tests.faults.devices import DeviceStream
from tests.faults.service import PARTITIONS, Deployment, Outcome
from tests.faults.workload import LIVE_DETECTORS, Workload, live_fire

# a scenario takes 1-4 minutes on two shared cores (the first also runs the session's uninterrupted run)
pytestmark = pytest.mark.timeout(600)

FIRE_DEADLINE_S = 60.0  # generous on two shared cores; the measured times are in docs/FAULTS.md
CRITICAL_FIRST_STEP = timedelta(minutes=3)  # alerts.escalation.DEFAULT_POLICIES: critical, unless acknowledged
ON_TIME = timedelta(seconds=30)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def fire_after_recovery(dep: Deployment, name: str, n: int = 0) -> float:
    topic, payload, _ = live_fire(LIVE_DETECTORS[n])
    took = dep.fire_to_ticket(topic, payload, f"FZ-B{n + 1:04d}", timeout_s=FIRE_DEADLINE_S)
    RECOVERIES.append((name, took))
    return took


def escalations(ticket: dict[str, object]) -> list[dict[str, object]]:
    return [e for e in ticket["history"] if e["action"] == "escalated"]  # type: ignore[attr-defined,index]


def test_sigkill_of_whistle_serve_mid_backfill_loses_nothing_and_doubles_nothing(
    deployments: Callable[..., Deployment], work: Workload, reference: Outcome
) -> None:
    dep = deployments()
    dep.start()
    dep.post_registry(work)
    stream = publish_all(dep, work, "backfill")
    stream.wait_acked(work.first(0.3), 120)
    stream.paused.set()  # until the backfill's fire has its ticket, so the kill finds an escalation pending
    wait(lambda: any(t["kind"] == "smoke.fire" for t in dep.tickets()), 60, "ticket for the backfill's fire", dep)
    fire_ticket = [t for t in dep.tickets() if t["kind"] == "smoke.fire"]
    stream.paused.clear()
    stream.wait_acked(work.first(0.5), 120)
    dep.kill()  # the supervisor and every role at once, mid-backfill, messages in flight
    assert stream.acked < len(work.messages)
    dep.start()
    settled_as_reference(dep, stream, work, reference)
    assert stream.connections >= 2
    # the fire ticket made before the kill kept its escalation timer: due at creation + 3 min, as the policy says
    for before in fire_ticket:
        (after,) = [t for t in dep.tickets() if t["id"] == before["id"]]
        assert after["escalation_due_at"] == before["escalation_due_at"]
        assert when(after["escalation_due_at"]) - when(after["created_at"]) == CRITICAL_FIRST_STEP
    fire_after_recovery(dep, "SIGKILL of whistle serve (embedded)")


def test_postgresql_stopped_for_60_s_mid_stream(
    deployments: Callable[..., Deployment], work: Workload, reference: Outcome
) -> None:
    dep = deployments()
    dep.start()
    dep.post_registry(work)
    stream = publish_all(dep, work, "backfill")
    stream.wait_acked(work.first(0.3), 120)
    stream.paused.set()
    wait(lambda: any(t["kind"] == "smoke.fire" for t in dep.tickets()), 60, "ticket for the backfill's fire", dep)
    (ticket,) = [t for t in dep.tickets() if t["kind"] == "smoke.fire"]
    due = when(ticket["escalation_due_at"])
    # the database goes away 55 s before the ticket's first escalation falls due and comes back 5 s after it
    outage_at = due - timedelta(seconds=55)
    time.sleep(max(0.0, (outage_at - datetime.now(outage_at.tzinfo)).total_seconds()))
    dep.stop_postgres()
    stream.paused.clear()  # the devices go on publishing into the outage
    acked_at_stop = stream.acked
    time.sleep(60)
    acked_in_outage = stream.acked - acked_at_stop
    dep.start_postgres()
    back = datetime.now(due.tzinfo)
    # nothing is acknowledged while nothing can be stored (a few batches may have committed as it stopped)
    assert acked_in_outage <= 200, f"{acked_in_outage} messages acknowledged while the database was stopped"

    def escalated() -> bool:
        return bool(escalations(next(t for t in dep.tickets() if t["id"] == ticket["id"])))

    wait(lambda: _quietly(escalated), 120, "escalation of the fire ticket after the database came back", dep)
    (after,) = [t for t in dep.tickets() if t["id"] == ticket["id"]]
    (step,) = escalations(after)
    assert when(step["at"]) - back <= ON_TIME, (step["at"], back)  # type: ignore[arg-type]
    settled_as_reference(dep, stream, work, reference)
    (after,) = [t for t in dep.tickets() if t["id"] == ticket["id"]]
    assert len(escalations(after)) == 1  # the step fired once
    fire_after_recovery(dep, "PostgreSQL stopped for 60 s (embedded)")


def _quietly(cond: Callable[[], bool]) -> bool:
    try:
        return cond()
    except Exception:  # the API answering 5xx while its database comes back
        return False


def poison_messages(work: Workload) -> list[tuple[str, bytes]]:
    """On every device topic of the input (each type and channel): bytes that are not JSON, then JSON that is not
    a reading of that channel."""
    topics = sorted({"/".join(t.split("/")[:3]) + "/{id}/" + t.split("/")[4]: t for t, _ in work.messages}.values())
    out: list[tuple[str, bytes]] = []
    for topic in topics:
        out += [(topic, b"\xff\xfe\x00 not json"), (topic, b'{"ts": "yesterday", "seq": -1}')]
    return out


async def _poison_bus(url: str) -> list[str]:
    from whistle.bus import TOPIC_DETECTIONS, TOPIC_PRIORITY, TOPIC_READINGS
    from whistle.bus_pg import PgLogBus
    from whistle.store.db import Database

    topics = [TOPIC_PRIORITY, TOPIC_READINGS, TOPIC_DETECTIONS]
    async with Database(url, max_size=1) as db, PgLogBus(db, partitions=int(PARTITIONS)) as bus:
        for topic in topics:
            await bus.send_many(topic, [(b"RJ-B0001", b"\x00 poison: no record of this topic's kind")])
    return topics


def test_a_poison_record_on_each_topic_is_a_dead_letter_and_nothing_else_changes(
    deployments: Callable[..., Deployment], work: Workload, reference: Outcome
) -> None:
    import asyncio

    dep = deployments()
    dep.start()
    dep.post_registry(work)
    stream = publish_all(dep, work, "backfill")
    stream.wait_acked(work.first(0.4), 120)
    poison = poison_messages(work)
    DeviceStream(dep.device_url, poison, client_id="poisoner", deadline_s=60).start().join(60)
    bus_topics = asyncio.run(_poison_bus(dep.db_url()))  # a producer with a bug, on every topic of the bus
    got = settled_as_reference(dep, stream, work, reference)
    assert got.dead_letters == len(poison) + len(bus_topics)
    refused = dep.sql("SELECT topic, reason FROM dead_letters ORDER BY id")
    assert sorted(t for t, _ in refused) == sorted(t for t, _ in poison)
    assert all(reason for _, reason in refused)
    on_bus = dep.sql("SELECT topic FROM bus_dead_letters ORDER BY id")
    assert sorted(t for (t,) in on_bus) == sorted(bus_topics)
    assert "exited with" not in dep.log.read_text(), "a role crashed on poison"
    fire_after_recovery(dep, "poison on every topic (embedded)")
