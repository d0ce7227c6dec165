"""`device.offline`: nothing received from a device for longer than its reporting allows.

Per device, every message moves its deadline to (partition clock at arrival + allowed
interval) and the rule keeps one timer pending; when the clock passes the deadline with
nothing new, the device is offline. The allowed interval is the device type's
(`intervals_s`: three missed 15-min meter readings, a missed daily smoke heartbeat, ...), or
`batch_interval_s` for a device seen delivering readings more than `batch_lag_s` behind the
clock — an NB-IoT meter that uploads a day's readings at once. An offline will
(`{"online": false}` on `status`) brings the deadline to `will_grace_s` from now, so a device
that reconnects at once raises nothing. The next message from an offline device clears it.

The partition clock follows event time, and the wall clock when the stream is quiet (see
`rules.processor`), so offline devices are found while nothing at all arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

from rules.processor import RuleContext
from whistle.domain import AlarmKind, Channel, Detection, DetectionAction, Reading, Severity, SubjectType


@dataclass(slots=True)
class OfflineState:
    due: int = 0
    pending: int = -1
    offline: bool = False
    batch: bool = False
    last_ts: int = 0
    grid_id: str | None = None
    household_id: str | None = None
    building_id: str | None = None
    device_type: str = ""
    allowed_ms: int = 0


def _det(device_id: str, st: OfflineState, ts: int, action: DetectionAction, ev: dict[str, object]) -> Detection:
    return Detection(
        kind=AlarmKind.DEVICE_OFFLINE,
        severity=Severity.WARNING,
        subject_type=SubjectType.DEVICE,
        subject_id=device_id,
        ts=ts,
        action=action,
        evidence=ev,
        household_id=st.household_id,
        building_id=st.building_id,
        grid_id=st.grid_id,
        source_id=f"{device_id}:{ts}",
    )


def offline_seen(r: Reading, st: OfflineState, ctx: RuleContext) -> list[Detection] | None:
    """A message arrived: move the deadline, clear an offline alarm."""
    p = ctx.params.offline
    if not p.enabled:
        return None
    clock = ctx.clock
    if clock - r.ts > p.batch_lag_s * 1000:
        st.batch = True
    st.last_ts = max(st.last_ts, r.ts)
    if st.device_type == "":
        st.device_type = r.device_type.value
        st.grid_id, st.household_id, st.building_id = r.grid_id, r.household_id, r.building_id
    allowed = int(p.batch_interval_s * 1000) if st.batch else p.interval_ms(r.device_type)
    st.allowed_ms = allowed
    will = r.channel is Channel.STATUS and r.values.get("online") is False
    st.due = clock + (int(p.will_grace_s * 1000) if will else allowed)
    if st.pending < 0 or st.pending > st.due:
        st.pending = st.due
        ctx.set_timer(st.due)
    if st.offline and not will:
        st.offline = False
        return [_det(r.device_id, st, r.ts, DetectionAction.CLEAR, {"back_at": r.ts})]
    return None


def offline_timer(device_id: str, st: OfflineState, ctx: RuleContext) -> list[Detection] | None:
    """The deadline passed: raise, or re-arm for the later deadline a newer message set."""
    if ctx.due != st.pending:
        return None  # superseded by an earlier re-arm
    st.pending = -1
    if st.due > ctx.clock:
        st.pending = st.due
        ctx.set_timer(st.due)
        return None
    if st.offline:
        return None
    st.offline = True
    return [
        _det(
            device_id,
            st,
            st.due,
            DetectionAction.RAISE,
            {
                "last_event_ts": st.last_ts,
                "allowed_s": st.allowed_ms // 1000,
                "batch_uploader": st.batch,
                "device_type": st.device_type,
            },
        )
    ]
