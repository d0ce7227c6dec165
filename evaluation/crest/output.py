"""Write a run's files: registry.json, messages.jsonl, truth.jsonl, absences.json, summary.json.

Messages follow CONTRACT.md section 1. Water and power meters (NB-IoT) upload each local day
once, as one batch of its 96 fifteen-minute register readings (ts = the quarter-hour the register
was read, 00:00 to 23:45 local), the next day: one meter in the early window (02:00-04:00), the
other in the late one (06:00-10:00), power first for a share of households. Each meter keeps a
daily slot that wanders by a few minutes. E-bike sensors send one batch an hour of 60 one-minute
means (ts = the end of the minute averaged). Numbers are written from integers (registers in
decilitres and watt-hours, power in tenths of a watt), so the bytes are exact and repeatable.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import numpy as np

from evaluation.crest.generate import BIN, MIN_PER_DAY, Run

BINS_PER_DAY = MIN_PER_DAY // BIN
TOPIC = "whistle/v1/{type}/{device}/data"


def water_registers(run: Run) -> np.ndarray:
    """Water registers (households, bins) in decilitres at the start of every quarter hour, at meter resolution."""
    hhs = run.district.households
    n_h = len(hhs)
    bins = run.water_l.reshape(n_h, -1, BIN).sum(axis=2)
    cum = np.floor(np.cumsum(bins, axis=1) * 10.0 + 1e-6).astype(np.int64)
    init = np.array([h.water_init_dl for h in hhs], dtype=np.int64)
    step = np.array([h.water_step_dl for h in hhs], dtype=np.int64)
    reg = init[:, None] + np.concatenate([np.zeros((n_h, 1), dtype=np.int64), cum[:, :-1]], axis=1)
    return np.asarray(reg // step[:, None] * step[:, None], dtype=np.int64)


def power_registers(run: Run) -> np.ndarray:
    """Power registers (households, bins) in Wh at the start of every quarter hour, at meter resolution."""
    hhs = run.district.households
    n_h = len(hhs)
    cum = np.floor(np.cumsum(run.power_wmin / 60.0, axis=1) + 1e-6).astype(np.int64)
    init = np.array([h.power_init_wh for h in hhs], dtype=np.int64)
    step = np.array([h.power_step_wh for h in hhs], dtype=np.int64)
    reg = init[:, None] + np.concatenate([np.zeros((n_h, 1), dtype=np.int64), cum[:, :-1]], axis=1)
    return np.asarray(reg // step[:, None] * step[:, None], dtype=np.int64)


def _m3(dl: int, step: int) -> str:
    if step == 1:
        return f"{dl // 10000}.{dl % 10000:04d}"
    litres = dl // 10
    return f"{litres // 1000}.{litres % 1000:03d}"


def _kwh(wh: int, step: int) -> str:
    if step == 1:
        return f"{wh // 1000}.{wh % 1000:03d}"
    dwh = wh // 10
    return f"{dwh // 100}.{dwh % 100:02d}"


def _schedule(rng: np.random.Generator, run: Run) -> list[tuple[int, int, int, int]]:
    """(send_at ms, kind 0 water / 1 power / 2 e-bike, device index, day or hour) per message, by send_at (stable)."""
    p_early = (120, 240)
    p_late = (360, 600)
    hhs = run.district.households
    days = run.n_min // MIN_PER_DAY
    clock = run.clock
    out: list[tuple[int, int, int, int]] = []
    for h in hhs:
        for kind in (0, 1):
            early = (kind == 0) != h.power_first
            lo, hi = p_early if early else p_late
            base = float(rng.uniform(lo + 10, hi - 10))
            for d in range(days):
                minute = float(np.clip(base + rng.uniform(-10.0, 10.0), lo, hi - 1))
                ms = clock.ms((d + 1) * MIN_PER_DAY) + int(minute * 60_000) + int(rng.integers(0, 1000))
                out.append((ms, kind, h.index, d))
    for ci in range(len(run.circuits)):
        for hour in range(run.n_min // 60):
            ms = clock.ms((hour + 1) * 60) + int(rng.integers(2_000, 60_000))
            out.append((ms, 2, ci, hour))
    order = sorted(range(len(out)), key=lambda i: out[i][0])
    return [out[i] for i in order]


def write(run: Run, out_dir: str) -> dict[str, Any]:
    """Write the five files into `out_dir` (created if needed); return the summary."""
    os.makedirs(out_dir, exist_ok=True)
    dist = run.district
    hhs = dist.households
    clock = run.clock
    rng = run.upload_rng
    with open(os.path.join(out_dir, "registry.json"), "w", encoding="utf-8") as fh:
        json.dump(dist.registry, fh, ensure_ascii=False, indent=1)
        fh.write("\n")

    wreg = water_registers(run)
    preg = power_registers(run)
    seq_w = rng.integers(1, 5000, len(hhs))
    seq_p = rng.integers(1, 5000, len(hhs))
    seq_e = rng.integers(1, 5000, len(run.circuits))
    schedule = _schedule(rng, run)
    n_readings = 0
    n_messages = 0
    max_payload = 0
    t0 = clock.t0_ms
    with open(os.path.join(out_dir, "messages.jsonl"), "w", encoding="utf-8") as fh:
        for send_at, kind, idx, block in schedule:
            if kind == 2:
                c = run.circuits[idx]
                topic = TOPIC.format(type="ebike", device=c.device_id)
                first = block * 60
                row = run.circuit_dw[idx, first : first + 60].tolist()
                s0 = int(seq_e[idx]) + first
                items = ",".join(
                    f'{{"ts":{t0 + (first + k + 1) * 60_000},"seq":{s0 + k},"power_w":{v // 10}.{v % 10}}}'
                    for k, v in enumerate(row)
                )
            else:
                h = hhs[idx]
                first = block * BINS_PER_DAY
                if kind == 0:
                    topic = TOPIC.format(type="water", device=h.water_id)
                    vals = [_m3(v, h.water_step_dl) for v in wreg[idx, first : first + BINS_PER_DAY].tolist()]
                    field, s0 = "total_m3", int(seq_w[idx]) + first
                else:
                    topic = TOPIC.format(type="power", device=h.power_id)
                    vals = [_kwh(v, h.power_step_wh) for v in preg[idx, first : first + BINS_PER_DAY].tolist()]
                    field, s0 = "total_kwh", int(seq_p[idx]) + first
                items = ",".join(
                    f'{{"ts":{t0 + (first + k) * BIN * 60_000},"seq":{s0 + k},"{field}":{v}}}'
                    for k, v in enumerate(vals)
                )
            payload = '{"batch":[' + items + "]}"
            max_payload = max(max_payload, len(payload.encode("utf-8")))
            fh.write(f'{{"send_at":{send_at},"topic":"{topic}","payload":{payload}}}\n')
            n_messages += 1
            n_readings += 60 if kind == 2 else BINS_PER_DAY

    truth = [r.to_json(clock, run.n_min) for r in run.records]
    with open(os.path.join(out_dir, "truth.jsonl"), "w", encoding="utf-8") as fh:
        for obj in truth:
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")

    absences: list[dict[str, str]] = []
    for h in hhs:
        if h.elder is None:
            continue
        for t in h.elder.trips:
            if t.declared:
                note = "家属报备：住院治疗" if t.reason == "hospital" else "家属报备：外出探亲"
                absences.append(
                    {
                        "household_id": h.id,
                        "start": clock.iso(t.declared_start),
                        "end": clock.iso(t.declared_end),
                        "note": note,
                    }
                )
    absences.sort(key=lambda a: (a["start"], a["household_id"]))
    with open(os.path.join(out_dir, "absences.json"), "w", encoding="utf-8") as fh:
        json.dump(absences, fh, ensure_ascii=False, indent=1)
        fh.write("\n")

    incidents = Counter(r.kind for r in run.records if not r.confounder)
    confounders = Counter(r.kind for r in run.records if r.confounder)
    summary: dict[str, Any] = {
        "generator": "evaluation.crest (Richardson/CREST via richardsonpy data)",
        "args": run.args,
        "households": len(hhs),
        "households_by_kind": dict(sorted(Counter(h.kind for h in hhs).items())),
        "lone_elders": sum(1 for h in hhs if h.elder is not None),
        "elder_days": sum(1 for h in hhs if h.elder is not None) * (run.n_min // MIN_PER_DAY),
        "devices": dict(sorted(Counter(d["type"] for d in dist.registry["devices"]).items())),
        "messages": n_messages,
        "readings": n_readings,
        "max_payload_bytes": max_payload,
        "incidents": dict(sorted(incidents.items())),
        "confounders": dict(sorted(confounders.items())),
        "declared_absences": len(absences),
        "first_ms": t0,
        "end_ms": clock.ms(run.n_min),
    }
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    return summary
