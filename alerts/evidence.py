"""An alarm's evidence in plain Chinese for the worker at the door: what was seen, where, since when.

The rules explain themselves in `alarms.evidence` (JSON, for the record and the screens); a grid worker
reads sentences instead. `explain` turns the fields each rule writes (rules/*.py) into short lines and
leaves out what a worker cannot act on (internal scores, raw timestamps); a field it does not know is left
out rather than shown as JSON. Device ids become the registry's description of where they hang.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from whistle.domain import AlarmKind
from whistle.timeutil import CHINA_TZ

ELEVATOR_EVENTS: Mapping[str, str] = {
    "trapped": "轿厢内有人被困",
    "door_open_while_moving": "运行中开门",
    "overspeed": "超速",
    "stop_outside_door_zone": "停在非平层区",
    "top_overrun": "冲顶",
    "bottom_overrun": "蹲底",
    "power_loss": "停电",
    "fault": "故障",
    "recovered": "已恢复",
    "ebike_detected": "检测到电动自行车进入轿厢",
}
DEVICE_TYPES: Mapping[str, str] = {
    "smoke": "烟感",
    "elevator": "电梯",
    "ebike": "电动自行车充电监测",
    "water": "水表",
    "power": "电表",
}


def _clock(ms: object) -> str | None:
    if not isinstance(ms, int | float) or isinstance(ms, bool) or ms <= 0:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=CHINA_TZ).strftime("%m-%d %H:%M")


def _duration(ms: object) -> str | None:
    if not isinstance(ms, int | float) or isinstance(ms, bool) or ms < 0:
        return None
    minutes = round(ms / 60_000)
    if minutes < 60:
        return f"{max(minutes, 1)} 分钟"
    hours, rest = divmod(minutes, 60)
    return f"{hours} 小时" + (f" {rest} 分钟" if rest else "")


def _hours(h: object) -> str | None:
    if not isinstance(h, int | float) or isinstance(h, bool):
        return None
    return f"{h:.1f} 小时".replace(".0 小时", " 小时")


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _where(device_id: object, places: Mapping[str, str]) -> str:
    """A device by where it hangs (the registry's `location`), its id in brackets."""
    if not isinstance(device_id, str):
        return "设备"
    place = places.get(device_id)
    return f"{place}（{device_id}）" if place else device_id


def _smoke_fire(ev: Mapping[str, Any], places: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    detectors = [d for d in ev.get("detectors") or [] if isinstance(d, str)]
    trigger = ev.get("trigger") if isinstance(ev.get("trigger"), Mapping) else {}
    first = trigger.get("device_id") if trigger else None
    if detectors:
        out.append(f"烟感报警：{'、'.join(_where(d, places) for d in detectors)}")
    elif first:
        out.append(f"烟感报警：{_where(first, places)}")
    if ev.get("confirmed"):
        out.append(f"{len(detectors)} 个探测器先后报警，火情已确认")
    elif len(detectors) <= 1:
        out.append("目前只有 1 个探测器报警，尚未被第二个探测器确认")
    if started := _clock(ev.get("first_alarm_ts")):
        out.append(f"首次报警：{started}")
    if ev.get("self_cleared"):
        out.append("报警已在一分钟内自行消除（疑似油烟、水汽误报）")
    return out


def _elevator(kind: AlarmKind, ev: Mapping[str, Any], places: Mapping[str, str]) -> list[str]:
    event = ev.get("event")
    out = [f"电梯{ELEVATOR_EVENTS.get(str(event), '报告异常')}"] if event else []
    if kind is AlarmKind.ELEVATOR_TRAPPED:
        out = ["电梯困人：轿厢内有人被困，请立即联系维保并到场安抚"]
    if isinstance(ev.get("floor"), int):
        out.append(f"所在楼层：{ev['floor']} 层")
    if isinstance(ev.get("code"), int):
        out.append(f"故障码：{ev['code']}")
    if isinstance(ev.get("faults_in_window"), int) and ev.get("repeated"):
        out.append(f"{_hours(ev.get('window_h')) or '近期'}内已故障 {ev['faults_in_window']} 次")
    if when := _clock(ev.get("ts")):
        out.append(f"发生时间：{when}")
    return out


def _ebike(ev: Mapping[str, Any]) -> list[str]:
    out = ["监测到室内有电动自行车充电"]
    if ev.get("source") == "power":
        out.append(
            "依据：电路功率呈电动自行车充电特征" + (f"（峰值 {ev['peak_w']:.0f} 瓦）" if _num(ev.get("peak_w")) else "")
        )
    elif ev.get("source") == "device":
        out.append("依据：充电监测装置报告")
    if lasted := _duration(ev.get("duration_ms")):
        out.append(f"已持续 {lasted}")
    elif since := _clock(ev.get("since")):
        out.append(f"开始于 {since}")
    return out


def _lone_elder(ev: Mapping[str, Any]) -> list[str]:
    out = ["独居老人家中长时间没有用水用电的迹象，请尽快上门或电话确认平安"]
    if quiet := _hours(ev.get("quiet_hours")):
        line = f"已安静 {quiet}"
        if since := _clock(ev.get("quiet_since")):
            line += f"（自 {since} 起）"
        out.append(line)
    if usual := _hours(ev.get("threshold_hours")):
        out.append(f"按其平日作息，通常不超过 {usual}")
    if water := _clock(ev.get("last_water_draw")):
        out.append(f"最后一次用水：{water}")
    if power := _clock(ev.get("last_power_activity")):
        out.append(f"最后一次用电：{power}")
    litres = _num(ev.get("water_last_12h_litres"))
    if litres is not None:
        out.append(f"近 12 小时用水 {litres:.0f} 升")
    if ev.get("returned_from_declared_absence"):
        out.append("家属报备的外出期已结束")
    return out


def _water(ev: Mapping[str, Any]) -> list[str]:
    out = ["水表显示长时间持续用水未停（疑似忘关水龙头或漏水）"]
    if ev.get("lone_elder"):
        out.append("这是独居老人家庭，请尽快确认老人是否安好")
    line = f"已持续 {lasted}" if (lasted := _hours(ev.get("hours"))) else ""
    if since := _clock(ev.get("since")):
        line += f"（自 {since} 起）"
    if line:
        out.append(line.strip())
    litres, per_hour = _num(ev.get("litres")), _num(ev.get("litres_per_hour"))
    if litres is not None:
        out.append(f"累计约 {litres:.0f} 升" + (f"，每小时约 {per_hour:.0f} 升" if per_hour is not None else ""))
    if usual := _hours(ev.get("usual_longest_span_hours")):
        out.append(f"这户平日连续用水最长约 {usual}")
    return out


def _group_rental(ev: Mapping[str, Any]) -> list[str]:
    out = ["用水用电与登记人数不符，疑似群租，请核实居住人数"]
    reg = ev.get("registered_occupants")
    water, expected = _num(ev.get("water_m3_per_day")), _num(ev.get("water_m3_expected"))
    if water is not None and expected is not None and isinstance(reg, int):
        out.append(f"日均用水 {water:.2f} 吨，登记 {reg} 人应约 {expected:.2f} 吨")
    implied = _num(ev.get("implied_occupants"))
    if implied is not None:
        out.append(f"按用水推算约 {implied:.0f} 人居住")
    kwh, kwh_expected = _num(ev.get("kwh_per_day")), _num(ev.get("kwh_expected"))
    if kwh is not None and kwh_expected is not None:
        out.append(f"日均用电 {kwh:.1f} 度（应约 {kwh_expected:.1f} 度）")
    nights, span = ev.get("nights_active"), ev.get("window_days")
    if isinstance(nights, int) and isinstance(span, int) and nights:
        out.append(f"{span} 天中有 {nights} 个夜里凌晨仍有明显用水")
    return out


def _offline(kind: AlarmKind, ev: Mapping[str, Any]) -> list[str]:
    if kind is AlarmKind.DEVICE_MASS_OFFLINE:
        n, total = ev.get("devices_offline"), ev.get("devices_in_scope")
        scope = "网关" if ev.get("scope") == "gateway" else "楼栋"
        line = f"同一{scope}的设备同时离线"
        if isinstance(n, int) and isinstance(total, int):
            line += f"：{total} 台中 {n} 台"
        return [line, "疑似停电或网络中断，请检查配电和网关"]
    device = DEVICE_TYPES.get(str(ev.get("device_type")), "设备")
    out = [f"{device}长时间没有上报，可能断电、没电、信号差或被拆"]
    if last := _clock(ev.get("last_event_ts")):
        out.append(f"最后一次上报：{last}")
    return out


def _smoke_device(kind: AlarmKind, ev: Mapping[str, Any]) -> list[str]:
    if kind is AlarmKind.SMOKE_TAMPER:
        return ["烟感探测器被拆卸或遮挡"]
    if kind is AlarmKind.SMOKE_LOW_BATTERY:
        return ["烟感探测器电量低，请安排更换电池"]
    if ev.get("reason") == "repeated_nuisance":
        n = ev.get("self_cleared_alarms")
        return [f"近期反复误报{f' {n} 次' if isinstance(n, int) else ''}，多为油烟或水汽，建议移位或更换探测器"]
    return ["烟感探测器报告故障"]


def explain(kind: AlarmKind, evidence: Mapping[str, Any], places: Mapping[str, str] | None = None) -> list[str]:
    """Short Chinese sentences for what an alarm's evidence says; `places` maps device ids to where they hang."""
    where = places or {}
    if kind is AlarmKind.SMOKE_FIRE:
        return _smoke_fire(evidence, where)
    if kind in (AlarmKind.SMOKE_FAULT, AlarmKind.SMOKE_TAMPER, AlarmKind.SMOKE_LOW_BATTERY):
        return _smoke_device(kind, evidence)
    if kind in (AlarmKind.ELEVATOR_TRAPPED, AlarmKind.ELEVATOR_FAULT, AlarmKind.ELEVATOR_EBIKE):
        return _elevator(kind, evidence, where)
    if kind is AlarmKind.EBIKE_INDOOR_CHARGING:
        return _ebike(evidence)
    if kind is AlarmKind.LONE_ELDER_INACTIVE:
        return _lone_elder(evidence)
    if kind is AlarmKind.WATER_CONTINUOUS_FLOW:
        return _water(evidence)
    if kind is AlarmKind.GROUP_RENTAL_SUSPECTED:
        return _group_rental(evidence)
    if kind in (AlarmKind.DEVICE_OFFLINE, AlarmKind.DEVICE_MASS_OFFLINE):
        return _offline(kind, evidence)
    if kind is AlarmKind.SYSTEM_NOTIFICATION_CAP:
        return ["通知数量达到上限，部分通知未发出，请检查告警来源"]
    return []


def explain_all(alarms: Sequence[tuple[AlarmKind, Mapping[str, Any]]], places: Mapping[str, str]) -> list[str]:
    """The lines of every alarm of a ticket, without repeating a line."""
    out: list[str] = []
    for kind, evidence in alarms:
        for line in explain(kind, evidence, places):
            if line not in out:
                out.append(line)
    return out
