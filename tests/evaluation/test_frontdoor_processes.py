"""Reading a service's log for the moment its collector can receive (before that, the broker keeps nothing)."""

from __future__ import annotations

from evaluation.frontdoor.processes import mqtt_subscriptions

STAMP = "2026-12-01 22:29:56,063 INFO    "
# As `whistle serve` over Kafka logs them (tests/faults, 2026-12-01): the rules' consumers subscribe to their
# topics before the collector subscribes over MQTT.
KAFKA_CONSUMERS = "".join(
    f"{STAMP}aiokafka.consumer.subscription_state: Updating subscribed topics to: frozenset({{'{t}'}})\n"
    for t in ("whistle.priority", "whistle.readings", "whistle.detections")
)
PRIORITY_LANE = (
    f"{STAMP}collectors.mqtt: subscribed to ['whistle/v1/smoke/+/event', 'whistle/v1/elevator/+/event'] "
    "as whistle-collector-priority\n"
)
BULK_LANE = f"{STAMP}collectors.mqtt: subscribed to ['whistle/v1/#'] as whistle-collector\n"


def test_kafka_consumers_subscribing_are_not_the_collector_subscribing() -> None:
    assert mqtt_subscriptions(KAFKA_CONSUMERS) == 0  # a bare count of "subscribed to" says 3
    assert mqtt_subscriptions(KAFKA_CONSUMERS + PRIORITY_LANE) == 1
    assert mqtt_subscriptions(KAFKA_CONSUMERS + PRIORITY_LANE + BULK_LANE) == 2
