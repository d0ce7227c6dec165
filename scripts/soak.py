"""Soak: `whistle serve` for a long run at a steady rate, memory and lag watched (not a test; `make soak`).

`whistle serve` runs as its own process (embedded default: its own PostgreSQL, the MQTT endpoint, the
PostgreSQL log bus) with a fresh state directory; the registry of a simulated street is posted over HTTP,
and the street's traffic (simulators.stream, event time in the past, so every reading is accepted and no
timer follows the wall clock) is published over MQTT at QoS 1 at `--rate` messages a second. Every
`--sample-s` (60 s) the RSS of every process of the deployment is read from /proc (the supervisor, each
role's process by its name in GET /api/v1/health; PostgreSQL as the PSS of its processes, summed, so its
shared buffers count once) with the lag from
GET /api/v1/pipeline. At the end the publisher stops, the service drains, and the readings published and
acknowledged are compared with the readings stored (SQL on the service's database).

Targets (issue: "nothing lost, nothing stuck"): memory flat within 10 % after the warm-up (the first
sixth of the run), lag bounded, nothing lost.

    .venv/bin/python scripts/soak.py --minutes 30 --rate 5000 --json-out docs/soak.json
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import shutil
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from evaluation.frontdoor.client import Api  # noqa: E402
from evaluation.frontdoor.processes import HOST, ServiceConfig, WhistleService, free_port, listening  # noqa: E402
from evaluation.frontdoor.publish import Publisher  # noqa: E402
from simulators.district import build_district  # noqa: E402
from simulators.stream import Simulation, TrafficOptions, expected_messages_per_day  # noqa: E402
from simulators.timebase import day_start  # noqa: E402
from whistle.store.embedded import EmbeddedPostgres  # noqa: E402
from whistle.timeutil import local_day, now_ms  # noqa: E402


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages split between the processes that map them (PostgreSQL's shared
    buffers would otherwise count once per backend)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def postmaster(state: Path) -> int | None:
    try:
        return int((state / "pg" / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def sample_rss(service: WhistleService, state: Path, names: dict[int, str]) -> dict[str, int]:
    """KiB per process of the deployment: the supervisor and each role by name (RSS), PostgreSQL (the PSS of all
    its processes, summed)."""
    assert service.proc is not None
    sup = service.proc.pid
    out = {"supervisor": rss_kib(sup)}
    kids = children(sup)
    unnamed = [p for p in kids if p not in names]
    for pid in kids:
        # the API's process names its siblings in /api/v1/health, not itself: the one left unnamed is it
        name = names.get(pid) or ("alerts-api" if len(unnamed) == 1 else f"pid-{pid}")
        out[name] = rss_kib(pid)
    pg = postmaster(state)
    if pg is not None:
        out["postgres"] = pss_kib(pg) + sum(pss_kib(p) for p in children(pg))  # PSS, summed
    return out


def role_names(api: Api) -> dict[int, str]:
    health = api.health() or {}
    names = {int(p["pid"]): str(p["process"]) for p in health.get("details", {}).get("processes", [])}
    return names


class Paced(threading.Thread):
    """Publishes the simulation's messages at `rate` a second until `stop` is set."""

    def __init__(self, url: str, sim: Simulation, rate: float, part: int = 0, parts: int = 1) -> None:
        super().__init__(name=f"soak-publisher-{part}", daemon=True)
        self.part, self.parts = part, parts
        self.pub = Publisher(url, client_id=f"soak-{secrets.token_hex(3)}", window=1000)
        self.sim = sim
        self.rate = rate
        self.stop = threading.Event()
        self.messages = 0
        self.readings = 0
        self.error: str | None = None

    def run(self) -> None:
        try:
            self.pub.connect()
            began = time.monotonic()
            for m in self.sim.messages():
                if self.stop.is_set():
                    break
                if self.parts > 1 and zlib.crc32(m.topic.split("/")[3].encode()) % self.parts != self.part:
                    continue  # another connection's device (each device on one connection keeps its order)
                ahead = self.messages / self.rate - (time.monotonic() - began)
                if ahead > 0.005:
                    time.sleep(ahead)
                self.pub.publish(m.topic, m.payload)
                self.messages += 1
                self.readings += len(json.loads(m.payload)["batch"]) if m.payload.startswith(b'{"batch"') else 1
            self.pub.drain()
        except Exception as exc:
            self.error = repr(exc)
        finally:
            self.pub.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=5000.0, help="messages a second (default 5,000)")
    ap.add_argument("--households", type=int, default=2000)
    ap.add_argument(
        "--connections",
        type=int,
        default=2,
        help="publisher connections, each a share of the devices (one is bound by its window over ack-after-commit)",
    )
    ap.add_argument("--sample-s", type=float, default=60.0)
    ap.add_argument("--drain-s", type=float, default=900.0, help="at most this long to drain at the end")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the state directory and logs")
    args = ap.parse_args(argv)

    district = build_district(args.households, seed=args.seed)
    options = TrafficOptions()
    per_day = expected_messages_per_day(district, options)
    needed = args.rate * args.minutes * 60
    days_back = max(3, math.ceil(needed / per_day) + 2)
    start = day_start(local_day(now_ms()) - days_back)
    sim = Simulation(district, start_ms=start, end_ms=None, seed=args.seed, options=options)

    work = Path(tempfile.mkdtemp(prefix="whistle-soak-"))
    token = "soak-" + secrets.token_hex(12)
    listen = f"{HOST}:{free_port()}"
    config = ServiceConfig(
        state_dir=work / "state",
        http_port=free_port(),
        admin_token=token,
        mqtt_listen=listen,
        reading_horizon_days=days_back + 5,
        readings_retention_days=max(400, days_back + 30),
    )
    result: dict[str, Any] = {
        "command": "python scripts/soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "minutes": args.minutes,
        "rate_target": args.rate,
        "households": args.households,
        "devices": len(district.registry["devices"]),
        "simulated_days_back": days_back,
        "samples": [],
    }
    service = WhistleService(config, log=work / "serve.log")
    api = Api(config.base_url, token, timeout_s=60.0)
    try:
        service.start()
        api.wait_healthy(180.0, alive=lambda: service.check_running("while starting"))
        host, _, port = listen.rpartition(":")
        while not listening(host, int(port)):
            time.sleep(0.2)
        api.post_registry(district.registry)
        names = role_names(api)
        db_url = EmbeddedPostgres(config.state_dir).start()
        pubs = [
            Paced(f"mqtt://{listen}", sim, args.rate / args.connections, i, args.connections)
            for i in range(args.connections)
        ]
        began = time.monotonic()
        for p in pubs:
            p.start()
        end = began + args.minutes * 60
        next_sample = began
        while time.monotonic() < end and all(p.is_alive() for p in pubs):
            service.check_running("during the soak")
            if time.monotonic() >= next_sample:
                names = role_names(api) or names
                pipe = api.pipeline()
                s = {
                    "t_s": round(time.monotonic() - began, 1),
                    "published": sum(p.messages for p in pubs),
                    "acked": sum(p.pub.acked for p in pubs),
                    "lag": int(pipe.get("lag") or 0),
                    "rss_kib": sample_rss(service, config.state_dir, names),
                }
                result["samples"].append(s)
                print(json.dumps(s), flush=True)
                next_sample += args.sample_s
            time.sleep(0.5)
        for p in pubs:
            p.stop.set()
        for p in pubs:
            p.join(300)
        elapsed = time.monotonic() - began
        acked, readings = sum(p.pub.acked for p in pubs), sum(p.readings for p in pubs)
        result["connections"] = args.connections
        result["publisher_error"] = next((p.error for p in pubs if p.error), None)
        result["published_messages"] = acked
        result["published_readings"] = readings
        result["rate_achieved"] = round(acked / elapsed, 1)
        t = time.monotonic()
        stored = distinct = 0
        lag = None
        while time.monotonic() - t < args.drain_s:
            with psycopg.connect(db_url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*), count(DISTINCT (device_id, channel, seq)) FROM readings"
                ).fetchone()
            assert row is not None
            stored, distinct = int(row[0]), int(row[1])
            lag = int(api.pipeline().get("lag") or 0)
            if stored >= readings and lag == 0:
                break
            time.sleep(5)
        result["drain_s"] = round(time.monotonic() - t, 1)
        result["readings_stored"] = stored
        result["readings_distinct"] = distinct
        result["lost"] = readings - distinct
        result["lag_at_end"] = lag
        result["dead_letters"] = int(api.pipeline().get("dead_letters") or 0)
        result.update(summarise(result["samples"]))
    finally:
        api.close()
        service.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=1)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    return 0 if result.get("lost") == 0 and not result.get("publisher_error") else 1


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """RSS after the warm-up (the first sixth) against the last sample, per process; the largest lag."""
    if len(samples) < 2:
        return {"memory": {}, "max_lag": max((s["lag"] for s in samples), default=None)}
    warm = samples[max(1, len(samples) // 6)] if len(samples) > 2 else samples[0]
    last = samples[-1]
    memory = {}
    for name, kib in last["rss_kib"].items():
        base = warm["rss_kib"].get(name)
        if base:
            memory[name] = {
                "after_warmup_mib": round(base / 1024, 1),
                "end_mib": round(kib / 1024, 1),
                "growth_pct": round(100 * (kib - base) / base, 1),
            }
    flat = all(abs(m["growth_pct"]) <= 10 for m in memory.values())
    return {
        "warmup_sample_t_s": warm["t_s"],
        "memory": memory,
        "memory_flat_within_10pct": flat,
        "max_lag": max(s["lag"] for s in samples),
    }


if __name__ == "__main__":
    raise SystemExit(main())
