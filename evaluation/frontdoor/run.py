"""One front-door run: a fresh `whistle serve`, one source's district through it, the figures back.

1. The source writes its district, truth and declared absences (`sources.py`).
2. `whistle serve` starts as its own process with its own state: a temporary `WHISTLE_STATE_DIR`
   (so its own embedded PostgreSQL), the API on a free loopback port, an admin token, a reading
   horizon and retention wide enough for a past season, optionally `WHISTLE_RULES_FILE`. Devices
   reach it through a private Mosquitto (`WHISTLE_MQTT_URL`) or through the service's own broker
   (`WHISTLE_MQTT_LISTEN`). We wait for `GET /api/v1/health`.
3. While it runs: `POST /api/v1/registry`, each declared absence to
   `POST /api/v1/households/{id}/absences`, then at once the devices' traffic over MQTT at QoS 1.
4. We wait until the service has taken and judged everything (`drain.py`), run the daily household
   job over the span (`POST /api/v1/jobs/household-days`), and wait again.
5. Every alarm and ticket is read back (`GET /api/v1/alarms`, `GET /api/v1/tickets`, all pages), the
   meters' usage too (`GET /api/v1/devices/{id}/usage`) for the fixed-rule baselines, and all of it
   is scored against the truth (`score.py`).

Nothing of the product is imported: the service is a process, the API is HTTP, the devices are MQTT.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from evaluation.frontdoor import baselines
from evaluation.frontdoor.client import JOBS_HOUSEHOLD_DAYS, Api
from evaluation.frontdoor.drain import Settled, wait_settled
from evaluation.frontdoor.errors import EvaluationError, SurfaceMissing
from evaluation.frontdoor.processes import (
    HOST,
    Mosquitto,
    ServiceConfig,
    WhistleService,
    clean_environment,
    free_port,
    listening,
    log_tail,
    whistle_executable,
)
from evaluation.frontdoor.score import GROUP_RENTAL, LONE_ELDER, score_run
from evaluation.frontdoor.sources import LOCAL, Dataset, Source, today_local
from evaluation.scoring import AlarmRow

log = logging.getLogger("evaluation.frontdoor")

MQTT_LISTEN = "WHISTLE_MQTT_LISTEN"


@dataclass
class RunOptions:
    broker: str = "auto"  # auto | embedded | mosquitto
    rules: Mapping[str, Any] | None = None  # `household.lone_elder_inactive` overrides, as WHISTLE_RULES_FILE
    setting: str = "shipped defaults"
    deadline_s: float = 1800.0
    stable_s: float = 5.0
    household_job: bool = True  # False: the job is not called, group rental is not judged (a partial run)
    keep: bool = False
    workroot: Path | None = None
    whistle: str | None = None
    notes: list[str] = field(default_factory=list)


def embedded_broker_offered(executable: str) -> bool:
    """Whether this `whistle serve` can accept devices itself on `WHISTLE_MQTT_LISTEN` (its --help says so)."""
    res = subprocess.run(  # noqa: S603 - our own command
        [executable, "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=clean_environment(),
    )
    return MQTT_LISTEN in res.stdout + res.stderr


def choose_broker(requested: str, executable: str) -> tuple[str, str | None]:
    """(broker, a note for the report or None)."""
    offered = embedded_broker_offered(executable)
    if requested == "auto":
        if offered:
            return "embedded", None
        return (
            "mosquitto",
            f"`whistle serve --help` does not offer {MQTT_LISTEN}: devices publish to a private Mosquitto",
        )
    if requested == "embedded" and not offered:
        raise SurfaceMissing(MQTT_LISTEN, "`whistle serve --help` does not mention it; use --broker mosquitto")
    return requested, None


def check_rules_file(executable: str, path: Path) -> None:
    """`whistle rules check FILE`: the service would refuse a file that does not validate."""
    res = subprocess.run(  # noqa: S603 - our own command
        [executable, "rules", "check", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    if res.returncode != 0:
        raise EvaluationError(f"whistle rules check {path} failed: {res.stderr[-2000:]}")


def rules_document(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {"rules": {LONE_ELDER: dict(overrides)}}


def horizon_days(dataset: Dataset) -> tuple[int, int]:
    """(reading horizon, retention) in days wide enough to accept and keep every day of the span."""
    age = (today_local() - dataset.first_day).days + 2
    return max(45, age), max(400, age + 30)


def _since_until(dataset: Dataset) -> tuple[datetime, datetime]:
    lo, hi = dataset.span
    return datetime.fromtimestamp(lo / 1000, LOCAL), datetime.fromtimestamp(hi / 1000, LOCAL)


def fixed_rule_alerts(api: Api, dataset: Dataset) -> list[AlarmRow]:
    """The 12-hour water rule over each lone elder's water usage, read back through the API."""
    since, until = _since_until(dataset)
    declared: dict[str, list[tuple[int, int]]] = {}
    for a in dataset.absences:
        declared.setdefault(a.household_id, []).append((baselines.ts_ms(a.start), baselines.ts_ms(a.end)))
    elders = {h["id"] for h in dataset.registry.get("households", []) if "lone_elder" in (h.get("tags") or ())}
    out = []
    for d in dataset.registry.get("devices", []):
        hid = d.get("household_id")
        if d["type"] != "water" or hid not in elders:
            continue
        series = baselines.litres(api.usage(d["id"], since, until))
        for ts in baselines.outside(baselines.fixed_water_rule(series), declared.get(hid, [])):
            out.append(AlarmRow(LONE_ELDER, hid, ts))
    return out


def power_only_leads(api: Api, dataset: Dataset) -> list[AlarmRow]:
    """The electricity-only group-rental screen over every household's power usage, read back through the API."""
    since, until = _since_until(dataset)
    building = {h["id"]: h.get("building_id") or "" for h in dataset.registry.get("households", [])}
    kwh: dict[str, list[float]] = {}
    for d in dataset.registry.get("devices", []):
        hid = d.get("household_id")
        if d["type"] == "power" and hid:
            kwh[hid] = baselines.daily_kwh(api.usage(d["id"], since, until), dataset.first_day, dataset.days)
    flagged = baselines.power_only_group_rental(kwh, building, dataset.days)
    day0 = dataset.span[0]
    return [AlarmRow(GROUP_RENTAL, hid, day0 + (d + 1) * 86_400_000) for hid, d in sorted(flagged.items())]


def run_once(source: Source, opts: RunOptions) -> dict[str, Any]:
    """Prepare, serve, publish, drain, judge, read back and score one run; raises EvaluationError on failure."""
    began = time.monotonic()
    exe = whistle_executable(opts.whistle)
    broker, note = choose_broker(opts.broker, exe)
    notes = [*opts.notes, *([note] if note else [])]
    tmp = Path(tempfile.mkdtemp(prefix=f"whistle-frontdoor-{source.name}-{source.seed}-", dir=opts.workroot))
    failed = True
    stages: dict[str, float] = {}
    try:
        t = time.monotonic()
        dataset = source.prepare(tmp / "data")
        stages["generate"] = time.monotonic() - t
        rules_file = None
        if opts.rules:
            rules_file = tmp / "rules.yaml"
            rules_file.write_text(json.dumps(rules_document(opts.rules), indent=1) + "\n")  # JSON is YAML
            check_rules_file(exe, rules_file)
        horizon, retention = horizon_days(dataset)
        token = "evaluation-" + secrets.token_hex(12)
        with contextlib.ExitStack() as stack:
            mqtt_listen = None
            if broker == "mosquitto":
                mosq = stack.enter_context(Mosquitto(tmp / "mqtt"))
                device_url, service_mqtt = mosq.url, mosq.url
            else:
                port = free_port()
                mqtt_listen, device_url, service_mqtt = f"{HOST}:{port}", f"mqtt://{HOST}:{port}", None
            config = ServiceConfig(
                state_dir=tmp / "state",
                http_port=free_port(),
                admin_token=token,
                mqtt_url=service_mqtt,
                mqtt_listen=mqtt_listen,
                reading_horizon_days=horizon,
                readings_retention_days=retention,
                rules_file=rules_file,
            )
            service = stack.enter_context(WhistleService(config, log=tmp / "serve.log", executable=exe))
            api = Api(config.base_url, token)
            stack.callback(api.close)

            def alive() -> None:
                service.check_running("during the run")

            t = time.monotonic()
            health = api.wait_healthy(180.0, alive=alive)
            if not api.wait_receiving(60.0, alive=alive):
                notes.append(
                    "whistle_collector_mqtt_connected never said 1 in /metrics: published without waiting for it"
                )
            stages["start"] = time.monotonic() - t
            if mqtt_listen is not None and not _wait_listening(mqtt_listen, 30.0):
                raise SurfaceMissing(
                    MQTT_LISTEN, f"the service is healthy and nothing accepts devices on {mqtt_listen}"
                )
            if opts.household_job:  # fail before publishing anything, not after the drain
                paths = api.openapi_paths()
                if paths is not None and "/api/v1/jobs/household-days" not in paths:
                    raise SurfaceMissing(
                        JOBS_HOUSEHOLD_DAYS, "not in the service's OpenAPI document (/api/openapi.json)"
                    )
            t = time.monotonic()
            counts = api.post_registry(dataset.registry)
            for a in dataset.absences:
                api.post_absence(a.household_id, start=a.start, end=a.end, note=a.note)
            stages["registry_and_absences"] = time.monotonic() - t
            t = time.monotonic()
            published = source.publish(dataset, device_url)
            stages["publish"] = time.monotonic() - t
            t = time.monotonic()
            settled = wait_settled(
                api, published=published.messages, deadline_s=opts.deadline_s, stable_s=opts.stable_s, alive=alive
            )
            stages["drain"] = time.monotonic() - t
            notes += settled.notes
            job: dict[str, Any] | None = None
            after_job: Settled | None = None
            if opts.household_job:
                t = time.monotonic()
                job = api.run_household_days(dataset.first_day, dataset.last_day)
                after_job = wait_settled(
                    api,
                    published=published.messages,
                    deadline_s=opts.deadline_s,
                    stable_s=max(opts.stable_s, 10.0),
                    alive=alive,
                )
                stages["household_job"] = time.monotonic() - t
            else:
                notes.append(f"{JOBS_HOUSEHOLD_DAYS} was not called (--without-household-job): group rental not judged")
            t = time.monotonic()
            alarms = api.alarms()
            tickets = api.tickets()
            fixed = fixed_rule_alerts(api, dataset)
            power = power_only_leads(api, dataset)
            stages["read_back"] = time.monotonic() - t
            figures = score_run(
                truth=dataset.truth,
                registry=dataset.registry,
                span=dataset.span,
                days=dataset.days,
                alarms=alarms,
                tickets=tickets,
                fixed_rule_alerts=fixed,
                power_only_leads=power,
                group_rental_judged=opts.household_job,
            )
        failed = False
        return {
            "source": dataset.source,
            "seed": dataset.seed,
            "setting": opts.setting,
            "rules_overrides": dict(opts.rules or {}),
            "partial": not opts.household_job,
            "run": {
                "households": dataset.households,
                "days": dataset.days,
                "first_day": dataset.first_day.isoformat(),
                "generator": dataset.generator,
                "broker": broker,
                "service_version": health.get("version"),
                "registry_upserted": counts,
                "declared_absences": len(dataset.absences),
                "published": published.as_dict(),
                "drained": settled.as_dict(),
                "household_job": job,
                "after_household_job": after_job.as_dict() if after_job else None,
                "reading_horizon_days": horizon,
                "seconds": {k: round(v, 1) for k, v in stages.items()} | {"total": round(time.monotonic() - began, 1)},
            },
            **figures,
            "notes": notes,
        }
    except EvaluationError as exc:
        serve_log = tmp / "serve.log"
        if serve_log.exists():
            kept = "" if opts.keep else "; --keep keeps it"
            exc.add_note(f"the whistle serve log ({serve_log}{kept}) ends:\n{log_tail(serve_log, 2000)}")
        raise
    finally:
        if opts.keep:
            log.warning("run files kept in %s%s", tmp, " (the run failed)" if failed else "")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _wait_listening(hostport: str, timeout_s: float) -> bool:
    host, _, port = hostport.rpartition(":")
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if listening(host, int(port)):
            return True
        time.sleep(0.25)
    return False
