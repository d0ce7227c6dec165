"""`device.offline`: nothing received from a device for longer than its reporting allows.

A live device is judged by when its readings arrive, in event time: each is stamped with its
collector's clock at arrival (the latest event time that collector has delivered to the partition,
`ctx.source_clock`), and the device is offline when no stamp falls within `allowed` (plus the
lateness) after one of them (`intervals_s`: three missed 15-min meter readings, a missed daily smoke
heartbeat, ...) — a reading delivered late is a gap as a missing one is — decided once the
watermark has passed that time (`rules.processor`: every
collector feeding the partition has reached it, less the lateness), so readings that come out of
order — through two collectors of a shared subscription, one behind the other — raise what they
would in order. Its readings beyond the watermark wait, in order, in `ahead`; a return that is
already known when the gap is judged clears the alarm at once, at the time the device came back.

A reading no newer than one of the device already seen that arrives later than the lateness — one
delivered again after a collector restarted between storing and acknowledging it — is no sign of life.

A meter or an e-bike sensor heard so far only on `status` or `event` (a meter's heartbeat just after
midnight, its day uploaded at 04:30) is allowed `batch_interval_s` until its first data reading shows which
kind of reporter it is (elevators and smoke detectors keep their intervals: they are connected, or report no
data).

A device seen uploading a `{"batch": [...]}` message, or delivering readings more than `batch_lag_s`
behind its collector's clock — an NB-IoT meter that uploads a day's readings at once, a sensor that
buffers an hour — is judged by arrival instead: offline when nothing
arrives for `batch_interval_s` after the last upload. An offline will (`{"online": false}` on
`status`) sets a deadline `will_grace_s` from now, so a device that reconnects at once raises
nothing. The next message from an offline device clears it.

The clock follows event time, and the wall clock when the stream is quiet (see `rules.processor`),
so offline devices are found while nothing at all arrives.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from rules.processor import RuleContext
from whistle.domain import (
    AlarmKind,
    Channel,
    Detection,
    DetectionAction,
    DeviceType,
    Reading,
    Severity,
    SubjectType,
)

# Types whose data may come as uploads hours apart (NB-IoT water meters, a utility's daily power feed, a sensor
# that buffers an hour: DOMAIN.md); elevators are connected, smoke detectors report no data.
UPLOADERS = frozenset({DeviceType.WATER, DeviceType.POWER, DeviceType.EBIKE})
_AHEAD_MAX = 2048  # readings of one device held beyond the watermark (hours of skew at one a minute)


@dataclass(slots=True)
class OfflineState:
    due: int = 0  # a batch uploader's deadline, by arrival
    pending: int = -1  # the timer set for this device (-1: none)
    offline: bool = False
    batch: bool = False
    last_ts: int = 0
    grid_id: str | None = None
    household_id: str | None = None
    building_id: str | None = None
    device_type: str = ""
    allowed_ms: int = 0
    cover: int = -1  # a live device: the latest arrival stamp up to which none is missing
    ahead: list[int] = field(default_factory=list)  # its arrival stamps after `cover`, in order
    will_due: int = -1  # an offline will's deadline (-1: none)
    will_ts: int = 0
    data_seen: bool = False  # a reading on `data` came: the type's data cadence applies (below)


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


def _arm(st: OfflineState, ctx: RuleContext, due: int) -> None:
    if st.pending < 0 or st.pending > due:
        st.pending = due
        ctx.set_timer(due)


def _raise(device_id: str, st: OfflineState, ts: int, last: int) -> Detection:
    st.offline = True
    return _det(
        device_id,
        st,
        ts,
        DetectionAction.RAISE,
        {
            "last_event_ts": last,
            "allowed_s": st.allowed_ms // 1000,
            "batch_uploader": st.batch,
            "device_type": st.device_type,
        },
    )


def _back(device_id: str, st: OfflineState, ts: int) -> Detection:
    st.offline = False
    return _det(device_id, st, ts, DetectionAction.CLEAR, {"back_at": ts})


def offline_seen(r: Reading, st: OfflineState, ctx: RuleContext) -> list[Detection] | None:
    """A message arrived: note it, clear an offline alarm."""
    p = ctx.params.offline
    if not p.enabled:
        return None
    clock = ctx.source_clock  # the time of the collector it came through: another one may be far ahead
    will = r.channel is Channel.STATUS and r.values.get("online") is False
    if not will and r.ts <= st.last_ts and clock - r.ts > ctx.lateness:
        # Not newer than a reading of the device already seen, and late by more than the lateness: a reading
        # delivered again (a collector restarted between storing and acknowledging it) or a straggler. Its
        # first arrival was judged; taken for one now it would be a sign of life hours after the fact.
        return None
    if r.batched or clock - r.ts > p.batch_lag_s * 1000:
        st.batch = True
    st.last_ts = max(st.last_ts, r.ts)
    if st.device_type == "":
        st.device_type = r.device_type.value
        st.grid_id, st.household_id, st.building_id = r.grid_id, r.household_id, r.building_id
    if r.channel is Channel.DATA:
        st.data_seen = True
    # A meter or sensor is judged by its data cadence once it has shown one: heard only by its heartbeat so
    # far, it may upload its day (or its hour) at once, hours after the heartbeat.
    unknown = not st.data_seen and r.device_type in UPLOADERS
    allowed = int(p.batch_interval_s * 1000) if st.batch or unknown else p.interval_ms(r.device_type)
    st.allowed_ms = allowed
    if will:
        st.will_due, st.will_ts = clock + int(p.will_grace_s * 1000), r.ts
        _arm(st, ctx, st.will_due)
        return None
    if st.will_due >= 0 and r.ts >= st.will_ts:
        st.will_due = -1  # back within the grace
    if st.batch:
        st.due = max(st.due, clock + allowed)  # never earlier than a later upload set it
        _arm(st, ctx, st.due)
        return [_back(r.device_id, st, r.ts)] if st.offline else None
    t = clock  # when it arrived, in its collector's event time: a reading delivered late is a gap too
    if st.cover < 0 and t > ctx.known():
        # Its first reading, through a collector ahead of another that may still bring older ones: where the
        # device starts is known once the watermark reaches it (older readings arriving meanwhile start it).
        _insert_ahead(st, t)
        _arm(st, ctx, st.ahead[0])
        return None
    if st.offline:
        if t <= st.cover:
            return None  # an old reading come late through a slower collector: not a return
        st.cover = t
        st.ahead = [a for a in st.ahead if a > t]
        _arm(st, ctx, st.cover + allowed)
        return [_back(r.device_id, st, r.ts)]
    if st.cover < 0:
        st.cover = t
        while st.ahead and st.ahead[0] <= st.cover + allowed + ctx.lateness:
            st.cover = st.ahead.pop(0)
    elif t <= st.cover + allowed + ctx.lateness:  # no gap before it: the device is in up to it
        if t > st.cover:
            st.cover = t
            while st.ahead and st.ahead[0] <= st.cover + allowed + ctx.lateness:
                st.cover = st.ahead.pop(0)
    else:  # after a gap, or ahead of readings still on their way through a slower collector
        _insert_ahead(st, t)
    _arm(st, ctx, st.cover + allowed)
    return None


def _insert_ahead(st: OfflineState, t: int) -> None:
    i = bisect.bisect_left(st.ahead, t)
    if i == len(st.ahead) or st.ahead[i] != t:
        st.ahead.insert(i, t)
        if len(st.ahead) > _AHEAD_MAX:
            st.cover = st.ahead.pop(0)  # bounded: the oldest taken as in (a gap before it goes unjudged)


def offline_timer(device_id: str, st: OfflineState, ctx: RuleContext) -> list[Detection] | None:
    """A deadline passed the watermark: judge the device's readings up to it; re-arm for what is next."""
    if ctx.due != st.pending:
        return None  # superseded by an earlier re-arm
    st.pending = -1
    known = ctx.watermark  # every reading of the device up to here is in
    out: list[Detection] = []
    if st.will_due >= 0:
        if st.will_due <= known:
            due, st.will_due = st.will_due, -1
            if not st.offline:
                out.append(_raise(device_id, st, due, st.last_ts))
        else:
            _arm(st, ctx, st.will_due)
    if st.batch:
        if st.due > known:
            _arm(st, ctx, st.due)
        elif not st.offline:
            out.append(_raise(device_id, st, st.due, st.last_ts))
        return out or None
    allowed = st.allowed_ms
    if st.cover < 0 and st.ahead:
        if st.ahead[0] > known:
            _arm(st, ctx, st.ahead[0])
            return out or None
        st.cover = st.ahead.pop(0)  # nothing older came: the device starts at its first reading
    for _ in range(len(st.ahead) + 2):
        if st.cover < 0:
            break
        limit = st.cover + allowed
        # a stamp up to the lateness past the deadline counts (a device trailing the others by minutes is
        # not offline); once the watermark passes `limit`, every stamp up to `limit + lateness` is in
        while st.ahead and st.ahead[0] <= limit + ctx.lateness:
            st.cover = st.ahead.pop(0)
            limit = st.cover + allowed
        if limit > known:
            if not st.offline:
                _arm(st, ctx, limit)
            break
        if not st.offline:  # nothing arrived in (cover, limit + lateness]: it was offline from `limit`
            out.append(_raise(device_id, st, limit, st.cover))
        if not st.ahead:
            break  # the next reading clears it
        st.cover = st.ahead.pop(0)
        out.append(_back(device_id, st, st.cover))
    return out or None
