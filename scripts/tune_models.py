"""TUNING TOOL, NOT OF RECORD: the household models run in-process over a behaviour source, scored.

    .venv/bin/python scripts/tune_models.py --source crest --seeds 101 102        # ~1 min a seed once cached
    .venv/bin/python scripts/tune_models.py --source simulator --seeds 7 11 --models elder ebike
    .venv/bin/python scripts/tune_models.py --source crest --seeds 101 --curve     # the lone-elder settings

The figures of record come from the front-door evaluation (`make eval`, evaluation/frontdoor/): the
service as its own process, everything over MQTT and HTTP. This harness is what the models were tuned
with: quick, in one process, and it takes short cuts the front door does not —

- the messages of a source are decoded with `collectors.codecs` and bound to its registry here, in the
  order they are published (`send_at` / the simulator's send time, which is also `received_at`), and fed
  to `rules.processor.Processor` (the bulk lane's rules) without a broker, a bus or snapshots;
- group rental: the water and power readings are copied into a real PostgreSQL (an embedded one, under
  `--pg-dir`), and `rules.household_job.HouseholdJob.run` judges every day of the span once, in order, as
  `POST /api/v1/jobs/household-days` asks it to; its detections are collected instead of put on a bus;
- alarms are made from detections here (`Lifecycle`): one open alarm per kind and subject, a raise within
  `reopen_h` of a clear reopens it (as alerts/lifecycle.py does);
- declared absences are given to the rules' topology directly; the fixed rule (< 10 L of water in 12 h)
  is `rules.baselines.fixed_water_rule` over the same readings, absences excluded (as the front door does).

Scoring is `evaluation.scoring` with the front door's windows (evaluation/frontdoor/score.py): lone elder
5 min early / 1 h grace, only incidents that start 12 h before the end; e-bike sessions of 15 min or
more; group rental a day either side, incidents that start 13 days before the end.

Decoded sources are cached under `--cache` (npz + json), so a second run of a seed skips generation and
decoding (CREST 200 x 21: about 40 s to generate and decode, the simulator 600 x 21 about 2 min).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.codecs import Limits, decode_message
from evaluation.scoring import AlarmRow, KindScore, score_kind
from rules.baselines import fixed_water_rule
from rules.catalog import BULK_RULES
from rules.config import RuleConfig
from rules.processor import PartitionState, Processor, Rule
from rules.topology import HouseholdInfo, Topology
from whistle.domain import Channel, Detection, DetectionAction, DeviceType, Reading

REPO = Path(__file__).resolve().parents[1]
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MINUTE_MS = 60_000
LOCAL_OFFSET_MS = 8 * HOUR_MS
ELDER = "household.lone_elder_inactive"
EBIKE = "ebike.indoor_charging"
RENTAL = "household.group_rental_suspected"
FLOW = "water.continuous_flow"
TYPES = {"water": 0, "power": 1, "ebike": 2}
TYPE_OF = {0: DeviceType.WATER, 1: DeviceType.POWER, 2: DeviceType.EBIKE}
FIELD = {0: "total_m3", 1: "total_kwh", 2: "power_w"}


def local_midnight_ms(d: date) -> int:
    return int((date(d.year, d.month, d.day) - date(1970, 1, 1)).days * DAY_MS - LOCAL_OFFSET_MS)


@dataclass
class Dataset:
    """A decoded source: its registry, truth, absences and every data reading in publish order."""

    source: str
    seed: int
    households: int
    days: int
    first_day: date
    registry: dict[str, Any]
    truth: list[dict[str, Any]]
    absences: dict[str, list[tuple[int, int]]]
    dev_ids: list[str]
    # per reading, in publish order: device index, type (TYPES), event time, send time, seq, value, power_w
    dev: np.ndarray[Any, Any]
    typ: np.ndarray[Any, Any]
    ts: np.ndarray[Any, Any]
    recv: np.ndarray[Any, Any]
    seq: np.ndarray[Any, Any]
    val: np.ndarray[Any, Any]
    pw: np.ndarray[Any, Any]
    place: dict[str, tuple[str | None, str | None, str | None]] = field(default_factory=dict)

    @property
    def span(self) -> tuple[int, int]:
        lo = local_midnight_ms(self.first_day)
        return lo, lo + self.days * DAY_MS

    @property
    def elders(self) -> list[str]:
        return sorted(h["id"] for h in self.registry["households"] if "lone_elder" in (h.get("tags") or ()))

    def topology(self) -> Topology:
        topo = Topology()
        for h in self.registry["households"]:
            topo.households[h["id"]] = HouseholdInfo(
                int(h.get("registered_occupants") or 1), frozenset(h.get("tags") or ())
            )
        for g in self.registry.get("grids", []):
            topo.grid_parent[g["id"]] = g.get("parent_id")
            topo.grid_street[g["id"]] = g.get("street_id") or ""
        topo.absences = {k: list(v) for k, v in self.absences.items()}
        return topo

    def readings(self, mask: np.ndarray[Any, Any], order: np.ndarray[Any, Any] | None = None) -> Iterator[Reading]:
        """The readings selected by `mask`, in publish order (or `order`, indices into the selection)."""
        idx = np.flatnonzero(mask)
        if order is not None:
            idx = idx[order]
        dev, typ, ts, recv, seq, val, pw = (
            a[idx].tolist() for a in (self.dev, self.typ, self.ts, self.recv, self.seq, self.val, self.pw)
        )
        ids, place = self.dev_ids, self.place
        for k in range(len(idx)):
            t = typ[k]
            values: dict[str, Any] = {FIELD[t]: val[k]}
            if t == 1 and pw[k] == pw[k]:
                values["power_w"] = pw[k]
            did = ids[dev[k]]
            hh, bb, gg = place.get(did, (None, None, None))
            yield Reading(did, TYPE_OF[t], Channel.DATA, ts[k], recv[k], values, seq[k], hh, bb, gg)


def _places(registry: Mapping[str, Any]) -> dict[str, tuple[str | None, str | None, str | None]]:
    building = {h["id"]: h.get("building_id") for h in registry["households"]}
    grid = {b["id"]: b.get("grid_id") for b in registry["buildings"]}
    out: dict[str, tuple[str | None, str | None, str | None]] = {}
    for d in registry["devices"]:
        hid = d.get("household_id")
        bid = d.get("building_id") or (building.get(hid) if hid else None)
        out[d["id"]] = (hid, bid, grid.get(bid) if bid else None)
    return out


class _Collect:
    """Decoded data readings of a source, appended in publish order."""

    def __init__(self, registry: Mapping[str, Any]) -> None:
        self.index = {d["id"]: i for i, d in enumerate(registry["devices"])}
        self.cols: dict[str, list[Any]] = {k: [] for k in ("dev", "typ", "ts", "recv", "seq", "val", "pw")}
        self.limits = Limits(horizon_ms=400 * DAY_MS)

    def add(self, topic: str, payload: bytes, send_ms: int) -> None:
        parts = topic.split("/")
        if len(parts) < 5 or parts[4] != "data" or parts[2] not in TYPES:
            return
        i = self.index.get(parts[3])
        if i is None:
            return
        t = TYPES[parts[2]]
        c = self.cols
        for x in decode_message(topic, payload, received_at=send_ms, limits=self.limits).accepted:
            v = x.values.get(FIELD[t])
            if not isinstance(v, int | float):
                continue
            c["dev"].append(i)
            c["typ"].append(t)
            c["ts"].append(x.ts)
            c["recv"].append(send_ms)
            c["seq"].append(x.seq if x.seq is not None else -1)
            c["val"].append(float(v))
            w = x.values.get("power_w") if t == 1 else None
            c["pw"].append(float(w) if isinstance(w, int | float) else float("nan"))

    def arrays(self) -> dict[str, np.ndarray[Any, Any]]:
        dtypes = {"dev": np.int32, "typ": np.int8, "ts": np.int64, "recv": np.int64, "seq": np.int64}
        return {k: np.asarray(v, dtype=dtypes.get(k, np.float64)) for k, v in self.cols.items()}


def _crest(seed: int, households: int, days: int, first_day: date, scale: float, work: Path) -> dict[str, Any]:
    out = work / f"crest-{seed}-{households}x{days}-s{scale:g}"
    if not (out / "summary.json").exists():
        cmd = [sys.executable, "-m", "evaluation.crest", "--households", str(households), "--days", str(days)]
        cmd += ["--seed", str(seed), "--first-day", first_day.isoformat(), "--incident-scale", f"{scale:g}"]
        subprocess.run([*cmd, "--out", str(out)], cwd=REPO, check=True, capture_output=True)  # noqa: S603
    registry = json.loads((out / "registry.json").read_text(encoding="utf-8"))
    truth = [json.loads(x) for x in (out / "truth.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    from whistle.timeutil import parse_rfc3339

    absences: dict[str, list[tuple[int, int]]] = {}
    for a in json.loads((out / "absences.json").read_text(encoding="utf-8")):
        absences.setdefault(a["household_id"], []).append((parse_rfc3339(a["start"]), parse_rfc3339(a["end"])))
    col = _Collect(registry)
    with (out / "messages.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            m = json.loads(line)
            col.add(m["topic"], json.dumps(m["payload"]).encode(), int(m["send_at"]))
    return {"registry": registry, "truth": truth, "absences": absences, **col.arrays()}


def _simulator(seed: int, households: int, days: int, first_day: date, params_file: Path | None) -> dict[str, Any]:
    from simulators.district import build_district
    from simulators.params import Params
    from simulators.stream import Simulation, TrafficOptions

    params = Params.from_overrides(json.loads(params_file.read_text())) if params_file else Params()
    d = build_district(households, seed=seed, params=params)
    start = local_midnight_ms(first_day)
    # As the front door publishes it: NB-IoT water and the utility's power feed, each a day in one batch.
    options = TrafficOptions(nbiot_share=1.0, power_batch_share=1.0, ebike_interval_s=60)
    sim = Simulation(d, start_ms=start, end_ms=start + days * DAY_MS, seed=seed, options=options)
    truth = [json.loads(x) for x in sim.truth_lines()]
    absences: dict[str, list[tuple[int, int]]] = {}
    for t in truth:
        if t["kind"] == "confounder.elder_away" and t.get("declared") and t.get("end"):
            absences.setdefault(t["subject_ids"][0], []).append((int(t["start"]), int(t["end"])))
    col = _Collect(d.registry)
    for m in sim.messages():
        col.add(m.topic, m.payload, m.send_ms)
    return {"registry": d.registry, "truth": truth, "absences": absences, **col.arrays()}


def load(
    source: str,
    seed: int,
    households: int,
    days: int,
    first_day: date,
    *,
    scale: float,
    params: Path | None,
    cache: Path,
) -> Dataset:
    """A source's dataset, from the cache when it was decoded before."""
    cache.mkdir(parents=True, exist_ok=True)
    tag = f"{source}-{seed}-{households}x{days}-{first_day.isoformat()}" + (f"-s{scale:g}" if source == "crest" else "")
    npz, meta = cache / f"{tag}.npz", cache / f"{tag}.json"
    if not npz.exists():
        got = (
            _crest(seed, households, days, first_day, scale, cache)
            if source == "crest"
            else _simulator(seed, households, days, first_day, params)
        )
        np.savez(npz, **{k: got[k] for k in ("dev", "typ", "ts", "recv", "seq", "val", "pw")})
        absences = {k: [list(x) for x in v] for k, v in got["absences"].items()}
        meta.write_text(json.dumps({"registry": got["registry"], "truth": got["truth"], "absences": absences}))
    arrays = np.load(npz)
    m = json.loads(meta.read_text())
    ds = Dataset(
        source,
        seed,
        households,
        days,
        first_day,
        m["registry"],
        m["truth"],
        {k: [(int(a), int(b)) for a, b in v] for k, v in m["absences"].items()},
        [d["id"] for d in m["registry"]["devices"]],
        *(arrays[k] for k in ("dev", "typ", "ts", "recv", "seq", "val", "pw")),
    )
    ds.place = _places(ds.registry)
    return ds


# --- alarms from detections ---------------------------------------------------------------------------------


@dataclass
class AlarmRec:
    kind: str
    subject: str
    first_seen: int
    raises: int = 1
    reopened: int = 0
    cleared_at: int | None = None
    evidence: Mapping[str, object] = field(default_factory=dict)


class Lifecycle:
    """One open alarm per (kind, subject); a raise within `reopen_ms` of a clear reopens it (alerts/lifecycle.py)."""

    def __init__(self, reopen_ms: int) -> None:
        self.reopen_ms = reopen_ms
        self.open: dict[tuple[str, str], AlarmRec] = {}
        self.last: dict[tuple[str, str], AlarmRec] = {}
        self.alarms: list[AlarmRec] = []

    def apply(self, d: Detection) -> None:
        key = (d.kind.value, d.subject_id)
        if d.action is DetectionAction.CLEAR:
            a = self.open.pop(key, None)
            if a is not None:
                a.cleared_at = d.ts
            return
        a = self.open.get(key)
        if a is not None:
            a.raises += 1
            return
        prev = self.last.get(key)
        if prev is not None and prev.cleared_at is not None and d.ts - prev.cleared_at <= self.reopen_ms:
            prev.reopened += 1
            prev.cleared_at = None
            self.open[key] = prev
            return
        a = AlarmRec(d.kind.value, d.subject_id, d.ts, evidence=d.evidence)
        self.open[key] = self.last[key] = a
        self.alarms.append(a)


# --- scoring ------------------------------------------------------------------------------------------------


def _truth_space(ds: Dataset, kind: str) -> list[dict[str, Any]]:
    """Truth subjects as the alarms name them: households for the household kinds, devices for the e-bike."""
    if kind == EBIKE:
        return ds.truth
    out = []
    for t in ds.truth:
        if t.get("subject_type") == "device":
            out.append({**t, "subject_ids": [ds.place.get(s, (s, None, None))[0] or s for s in t["subject_ids"]]})
        else:
            out.append(t)
    return out


def score(ds: Dataset, kind: str, rows: Sequence[AlarmRow]) -> KindScore:
    hi = ds.span[1]
    need = {ELDER: 12 * HOUR_MS, RENTAL: 13 * DAY_MS, EBIKE: 15 * MINUTE_MS, FLOW: 2 * HOUR_MS}[kind]
    early, grace = (DAY_MS, DAY_MS) if kind == RENTAL else (5 * MINUTE_MS, HOUR_MS)

    def eligible(i: Any) -> bool:
        if kind == EBIKE and i.end is not None and i.end - i.start < need:
            return False
        return bool(i.start <= hi - need)

    return score_kind(kind, _truth_space(ds, kind), rows, run_end=hi, early_ms=early, grace_ms=grace, eligible=eligible)


def set_aside(ds: Dataset, kind: str, rows: Sequence[AlarmRow]) -> int:
    """Alarms on real incidents that began too late in the span to be judged (a group rental crowded for less
    than 13 days): the scoring counts them as false; the harness reports them apart as well."""
    hi = ds.span[1]
    need = {ELDER: 12 * HOUR_MS, RENTAL: 13 * DAY_MS, EBIKE: 15 * MINUTE_MS, FLOW: 2 * HOUR_MS}[kind]
    early, grace = (DAY_MS, DAY_MS) if kind == RENTAL else (5 * MINUTE_MS, HOUR_MS)
    late = [
        t
        for t in _truth_space(ds, kind)
        if t["kind"] == kind and not t.get("confounder") and int(t["start"]) > hi - need
    ]
    n = 0
    for r in rows:
        if any(
            r.subject_id in t["subject_ids"] and int(t["start"]) - early <= r.first_seen <= (t["end"] or hi) + grace
            for t in late
        ):
            n += 1
    return n


def summary(s: KindScore) -> dict[str, Any]:
    d = s.as_dict()
    d["delays_h"] = [round(x / HOUR_MS, 2) for x in s.delays_ms]
    return d


# --- the models ---------------------------------------------------------------------------------------------


def _config(overrides: Mapping[str, Mapping[str, Any]]) -> RuleConfig:
    return RuleConfig({"rules": {k: dict(v) for k, v in overrides.items()}})


def _run_rules(
    ds: Dataset, rules: Sequence[Rule], readings: Iterable[Reading], overrides: Mapping[str, Mapping[str, Any]]
) -> list[Detection]:
    proc = Processor(rules, config=_config(overrides), topology=ds.topology())
    part = PartitionState()
    out: list[Detection] = []
    for r in readings:
        proc.process(part, r, out)
    return out


def elder_mask(ds: Dataset) -> np.ndarray[Any, Any]:
    elders = set(ds.elders)
    ok = np.array([ds.place.get(d, (None,))[0] in elders for d in ds.dev_ids], dtype=bool)
    mask: np.ndarray[Any, Any] = ok[ds.dev] & (ds.typ < 2)
    return mask


def interleaved_order(ds: Dataset, mask: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The selection in event-time order: as if every reading arrived when it was taken."""
    return np.argsort(ds.ts[mask], kind="stable")


def run_elder(
    ds: Dataset, overrides: Mapping[str, Any], *, reopen_h: float = 6.0, interleaved: bool = False
) -> dict[str, Any]:
    mask = elder_mask(ds)
    rules = [r for r in BULK_RULES if r.name == ELDER]
    order = interleaved_order(ds, mask) if interleaved else None
    dets = _run_rules(ds, rules, ds.readings(mask, order), {ELDER: overrides})
    life = Lifecycle(int(reopen_h * HOUR_MS))
    raises = clears = 0
    for d in dets:
        if d.kind.value == ELDER:
            raises += d.action is DetectionAction.RAISE
            clears += d.action is DetectionAction.CLEAR
            life.apply(d)
    rows = [AlarmRow(ELDER, a.subject, a.first_seen) for a in life.alarms]
    s = score(ds, ELDER, rows)
    elder_days = len(ds.elders) * ds.days
    per_subject: dict[str, int] = {}
    for a in life.alarms:
        per_subject[a.subject] = per_subject.get(a.subject, 0) + 1
    false = [a for a in life.alarms if not _matches(ds, ELDER, a)]
    return {
        **summary(s),
        "elder_days": elder_days,
        "false_alerts": s.alarms - s.true_alarms,
        "per_100": round(100 * (s.alarms - s.true_alarms) / elder_days, 2),
        "detections": {"raise": raises, "clear": clears},
        "most_alarms_one_household": max(per_subject.values(), default=0),
        "false_bases": _count(str(a.evidence.get("basis")) for a in false),
        "_false": false,
        "_alarms": life.alarms,
    }


def _matches(ds: Dataset, kind: str, a: AlarmRec) -> bool:
    return score(ds, kind, [AlarmRow(kind, a.subject, a.first_seen)]).true_alarms == 1


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def run_fixed_rule(ds: Dataset) -> dict[str, Any]:
    """The fixed rule (< 10 L in 12 h) over the elders' water, declared absences excluded."""
    mask = elder_mask(ds) & (ds.typ == 0)
    per: dict[str, list[tuple[int, float]]] = {}
    prev: dict[str, tuple[int, float]] = {}
    idx = np.flatnonzero(mask)
    order = np.lexsort((ds.ts[idx], ds.dev[idx]))
    for k in idx[order].tolist():
        did = ds.dev_ids[ds.dev[k]]
        hid = ds.place[did][0] or did
        ts, v = int(ds.ts[k]), float(ds.val[k])
        p = prev.get(did)
        prev[did] = (ts, v)
        if p is None or ts <= p[0]:
            continue
        per.setdefault(hid, []).append((ts, max(v - p[1], 0.0) * 1000.0))
    rows = []
    for hid, intervals in per.items():
        windows = ds.absences.get(hid, [])
        for t in fixed_water_rule(intervals):
            if not any(lo <= t <= hi for lo, hi in windows):
                rows.append(AlarmRow(ELDER, hid, t))
    s = score(ds, ELDER, rows)
    days = len(ds.elders) * ds.days
    return {**summary(s), "elder_days": days, "per_100": round(100 * (s.alarms - s.true_alarms) / days, 2)}


def run_ebike(ds: Dataset, overrides: Mapping[str, Any], *, reopen_h: float = 6.0) -> dict[str, Any]:
    mask = ds.typ == 2
    rules = [r for r in BULK_RULES if r.name == EBIKE]
    dets = _run_rules(ds, rules, ds.readings(mask), {EBIKE: overrides})
    life = Lifecycle(int(reopen_h * HOUR_MS))
    for d in dets:
        if d.kind.value == EBIKE:
            life.apply(d)
    rows = [AlarmRow(EBIKE, a.subject, a.first_seen) for a in life.alarms]
    s = score(ds, EBIKE, rows)
    false = [a for a in life.alarms if not _matches(ds, EBIKE, a)]
    holds = [float(str(a.evidence.get("held_min") or 0)) for a in life.alarms]
    return {
        **summary(s),
        "held_min_median": round(statistics.median(holds), 1) if holds else None,
        "false_sources": _count(str(a.evidence.get("source")) for a in false),
        "_false": false,
        "_alarms": life.alarms,
    }


async def _group_rental(ds: Dataset, overrides: Mapping[str, Any], pg_dir: Path, reopen_h: float) -> list[Detection]:
    from whistle.registry import import_registry, parse_registry
    from whistle.store.db import Database
    from whistle.store.embedded import EmbeddedPostgres
    from whistle.store.writers import copy_readings

    pg = EmbeddedPostgres(pg_dir, database="tune")
    url = pg.start()
    db = Database(url, max_size=4)
    marker = pg_dir.parent / f"{pg_dir.name}.holds"
    tag = f"{ds.source}-{ds.seed}-{ds.households}x{ds.days}-{ds.first_day}-{len(ds.ts)}"
    try:
        await db.start()
        if marker.exists() and marker.read_text() == tag:  # the readings are stored already: judge again
            async with db.connection() as conn:
                await conn.execute("TRUNCATE household_days, household_job_days, alarms, tickets CASCADE")
            return await _judge_all(db, ds, overrides)
        marker.unlink(missing_ok=True)
        async with db.connection() as conn:
            await conn.execute(
                "TRUNCATE readings, household_days, household_job_days, reading_days, household_job_requests,"
                " alarms, tickets CASCADE"
            )
        await import_registry(db, parse_registry(ds.registry))
        mask = ds.typ < 2
        batch: list[Reading] = []
        for r in ds.readings(mask):
            batch.append(r)
            if len(batch) >= 20_000:
                async with db.connection() as conn:
                    await copy_readings(conn, batch)
                batch = []
        if batch:
            async with db.connection() as conn:
                await copy_readings(conn, batch)
        days = [ds.first_day + timedelta(days=k) for k in range(ds.days)]
        async with db.connection() as conn:
            await conn.execute(
                "INSERT INTO reading_days (day, last_received) SELECT d, now() FROM unnest(%s::date[]) d"
                " ON CONFLICT DO NOTHING",
                (days,),
            )
        marker.write_text(tag)
        return await _judge_all(db, ds, overrides)
    finally:
        await db.stop()
        pg.stop()


async def _judge_all(db: Any, ds: Dataset, overrides: Mapping[str, Any]) -> list[Detection]:
    """One run of the household job over every day of the span, in order (what the front door asks for)."""
    from rules.group_rental import GroupRentalParams
    from rules.household_job import HouseholdJob
    from whistle.serde import decode_detection

    got: list[Detection] = []

    class _Bus:
        async def send_many(self, topic: str, items: Sequence[tuple[bytes, bytes]]) -> None:
            got.extend(decode_detection(v) for _, v in items)

    params = GroupRentalParams.model_validate(dict(overrides))
    job = HouseholdJob(db, _Bus(), params)  # type: ignore[arg-type]
    await job.run([ds.first_day + timedelta(days=k) for k in range(ds.days)], force=True)
    return got


def run_group_rental(
    ds: Dataset, overrides: Mapping[str, Any], *, pg_dir: Path, reopen_h: float = 6.0
) -> dict[str, Any]:
    dets = asyncio.run(_group_rental(ds, overrides, pg_dir, reopen_h))
    life = Lifecycle(int(reopen_h * HOUR_MS))
    for d in sorted(dets, key=lambda x: (x.ts, x.action is DetectionAction.RAISE)):
        life.apply(d)
    rows = [AlarmRow(RENTAL, a.subject, a.first_seen) for a in life.alarms]
    s = score(ds, RENTAL, rows)
    aside = set_aside(ds, RENTAL, rows)
    false = [a for a in life.alarms if not _matches(ds, RENTAL, a)]
    found = {a.subject for a in life.alarms}
    missed = [
        t["subject_ids"][0]
        for t in ds.truth
        if t["kind"] == RENTAL
        and not t.get("confounder")
        and t["start"] <= ds.span[1] - 13 * DAY_MS
        and t["subject_ids"][0] not in found
    ]
    kept = s.alarms - aside
    return {
        **summary(s),
        "on_rentals_too_recent_to_judge": aside,
        "precision_without_them": round(s.true_alarms / kept, 3) if kept else None,
        "_false": false,
        "_alarms": life.alarms,
        "missed": missed,
    }


# --- the report ---------------------------------------------------------------------------------------------


def pooled(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    inc = sum(r["incidents"] for r in results)
    det = sum(r["detected"] for r in results)
    alarms = sum(r["alarms"] for r in results)
    true = sum(r["true_alarms"] for r in results)
    delays = sorted(x for r in results for x in r["delays_h"])
    out: dict[str, Any] = {
        "incidents": inc,
        "detected": det,
        "recall": round(det / inc, 3) if inc else None,
        "alarms": alarms,
        "precision": round(true / alarms, 3) if alarms else None,
        "median_delay_h": round(statistics.median(delays), 2) if delays else None,
        "p90_delay_h": round(delays[min(len(delays) - 1, int(0.9 * len(delays)))], 2) if delays else None,
    }
    if all("elder_days" in r for r in results):
        days = sum(r["elder_days"] for r in results)
        out["per_100"] = round(100 * (alarms - true) / days, 2)
    return out


def describe(a: AlarmRec) -> str:
    from datetime import datetime, timezone

    t = datetime.fromtimestamp(a.first_seen / 1000, timezone(timedelta(hours=8))).strftime("%m-%d %H:%M")
    ev = {k: v for k, v in a.evidence.items() if k not in ("summary",)}
    return f"{a.subject} {t} reopened={a.reopened} {json.dumps(ev, ensure_ascii=False, default=str)[:400]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", choices=("crest", "simulator"), required=True)
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--households", type=int, default=None, help="default: crest 200, simulator 600")
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--first-day", type=date.fromisoformat, default=date(2026, 11, 3))
    ap.add_argument("--incident-scale", type=float, default=5.0, help="crest (the front door's plan: 5)")
    ap.add_argument("--params", type=Path, default=REPO / "scripts" / "eval_params.json", help="simulator")
    ap.add_argument("--models", nargs="+", default=["elder", "ebike", "rental"])
    ap.add_argument("--elder", type=json.loads, default={}, help="household.lone_elder_inactive overrides (JSON)")
    ap.add_argument("--ebike", type=json.loads, default={}, help="ebike.indoor_charging overrides (JSON)")
    ap.add_argument("--rental", type=json.loads, default={}, help="household.group_rental_suspected overrides")
    ap.add_argument("--curve", action="store_true", help="the lone-elder settings of CURVE as well")
    ap.add_argument("--interleaved", action="store_true", help="lone elder: readings in event-time order")
    ap.add_argument("--reopen-h", type=float, default=6.0)
    ap.add_argument("--show-false", type=int, default=0, help="print up to N false alarms per model")
    tmp = Path(tempfile.gettempdir())
    ap.add_argument("--cache", type=Path, default=tmp / "whistle-tune-data", help="decoded sources")
    ap.add_argument("--pg-dir", type=Path, default=tmp / "whistle-tune-pg", help="the embedded PostgreSQL's data")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()
    households = args.households or (200 if args.source == "crest" else 600)
    t0 = time.monotonic()
    report: dict[str, Any] = {
        "tool": "scripts/tune_models.py (tuning harness, not of record)",
        "source": args.source,
        "seeds": args.seeds,
        "households": households,
        "days": args.days,
        "first_day": args.first_day.isoformat(),
        "per_seed": {},
    }
    settings: list[tuple[str, Mapping[str, Any]]] = [("shipped" if not args.elder else "chosen", args.elder)]
    if args.curve:
        settings += list(CURVE)
    per: dict[str, dict[str, Any]] = {}
    for seed in args.seeds:
        t = time.monotonic()
        ds = load(
            args.source,
            seed,
            households,
            args.days,
            args.first_day,
            scale=args.incident_scale,
            params=args.params,
            cache=args.cache,
        )
        out: dict[str, Any] = {"load_s": round(time.monotonic() - t, 1), "readings": len(ds.ts)}
        if "elder" in args.models:
            out["fixed_rule"] = run_fixed_rule(ds)
            for name, over in settings:
                t = time.monotonic()
                out[f"elder:{name}"] = run_elder(ds, over, reopen_h=args.reopen_h, interleaved=args.interleaved)
                out[f"elder:{name}"]["seconds"] = round(time.monotonic() - t, 1)
        if "ebike" in args.models:
            t = time.monotonic()
            out["ebike"] = run_ebike(ds, args.ebike, reopen_h=args.reopen_h)
            out["ebike"]["seconds"] = round(time.monotonic() - t, 1)
        if "rental" in args.models:
            t = time.monotonic()
            out["rental"] = run_group_rental(ds, args.rental, pg_dir=args.pg_dir, reopen_h=args.reopen_h)
            out["rental"]["seconds"] = round(time.monotonic() - t, 1)
        per[str(seed)] = out
        for key, res in out.items():
            if not isinstance(res, dict):
                continue
            brief = {k: v for k, v in res.items() if not k.startswith("_") and k != "delays_h"}
            print(f"seed {seed} {key}: {json.dumps(brief, default=str)}")
            for a in (res.get("_false") or [])[: args.show_false]:
                print("   false:", describe(a))
    pools: dict[str, Any] = {}
    keys: list[str] = []
    for o in per.values():
        keys += [k for k, v in o.items() if isinstance(v, dict) and k not in keys]
    for key in keys:
        pools[key] = pooled([o[key] for o in per.values() if key in o])
        print(f"pooled {key}: {json.dumps(pools[key])}")
    report["pooled"] = pools
    if args.curve:
        report["curve_table"] = curve_table(pools)
        print(report["curve_table"])
    report["per_seed"] = {
        s: {
            k: ({kk: vv for kk, vv in v.items() if not kk.startswith("_")} if isinstance(v, dict) else v)
            for k, v in o.items()
        }
        for s, o in per.items()
    }
    report["seconds"] = round(time.monotonic() - t0, 1)
    print(f"({report['seconds']} s)")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=1, default=str) + "\n")


# The lone-elder settings whose trade-off is measured with --curve, either side of the shipped point (the
# `--elder` overrides, by default none); the front door's curve (evaluation/frontdoor/suite.py) is among them.
CURVE: tuple[tuple[str, Mapping[str, Any]], ...] = (
    ("quieter nights: night rank 1", {"night_rank": 1}),
    ("quieter: day rank 1, night rank 1", {"day_rank": 1, "night_rank": 1}),
    ("front door's quieter: day rank 1, morning +1.5 h", {"day_rank": 1, "morning_slack_h": 1.5}),
    (
        "front door's quietest: margin 1.5, slack 3 h, day rank 1, morning +2 h",
        {"margin": 1.5, "slack_h": 3.0, "day_rank": 1, "morning_slack_h": 2.0},
    ),
    ("faster nights: night rank 5, morning +0.5 h", {"night_rank": 5, "morning_slack_h": 0.5}),
    (
        "front door's faster: margin 1.0, slack 1 h, morning +0.5 h",
        {"margin": 1.0, "slack_h": 1.0, "morning_slack_h": 0.5},
    ),
    (
        "fastest: margin 1.0, slack 1 h, night rank 5, morning +0.5 h, cap 10 h",
        {"margin": 1.0, "slack_h": 1.0, "night_rank": 5, "morning_slack_h": 0.5, "fixed_quiet_h": 10.0},
    ),
)


def curve_table(pools: Mapping[str, Mapping[str, Any]]) -> str:
    """The lone-elder points of a run as a Markdown table, next to the fixed rule."""
    lines = [
        "| setting | recall | median delay h | p90 delay h | false alerts per 100 elder-days |",
        "|---|---|---|---|---|",
    ]
    rows = [("fixed rule: < 10 L in 12 h", pools["fixed_rule"])] if "fixed_rule" in pools else []
    rows += [(k.split(":", 1)[1], v) for k, v in pools.items() if k.startswith("elder:")]
    for name, v in rows:
        lines.append(f"| {name} | {v['recall']} | {v['median_delay_h']} | {v['p90_delay_h']} | {v.get('per_100')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
