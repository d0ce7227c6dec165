"""`whistle serve` as its own process: the roles as supervised children, seen only through the front door
(/api/v1/health, /metrics, the process table) — a child that dies comes back, the supervisor's death takes
the children with it, SIGTERM stops everything."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from evaluation.frontdoor.client import parse_metrics
from evaluation.frontdoor.processes import HOST, ServiceConfig, WhistleService, free_port

TOKEN = "supervisor-test-token-0123456789"


@pytest.fixture
def workdir() -> Iterator[Path]:
    # outside pytest's temporary root: the embedded PostgreSQL runs as its own user (see tests/conftest.py)
    path = Path(tempfile.mkdtemp(prefix="whistle-supervisor-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def served(workdir: Path) -> Iterator[WhistleService]:
    config = ServiceConfig(
        state_dir=workdir / "state", http_port=free_port(), admin_token=TOKEN, mqtt_listen=f"{HOST}:{free_port()}"
    )
    with WhistleService(config, log=workdir / "serve.log") as svc:
        wait_for(lambda: len(processes(svc)) == 2, 120, svc, "the API's process naming its two siblings")
        # and the supervisor's own verdict (it polls the same health): a child killed before it is a failed start
        wait_for(lambda: "roles running as" in svc.log.read_text(), 30, svc, "the supervisor to call the roles up")
        yield svc


def health(svc: WhistleService) -> dict[str, Any]:
    try:
        res = httpx.get(f"{svc.config.base_url}/api/v1/health", timeout=2.0, trust_env=False)
    except httpx.TransportError:
        return {}
    return res.json() if res.status_code == 200 else {}


def processes(svc: WhistleService) -> dict[str, int]:
    """The API process's siblings by name, with their pids (from their heartbeats)."""
    return {p["process"]: p["pid"] for p in health(svc).get("details", {}).get("processes", [])}


def wait_for(cond: Any, timeout_s: float, svc: WhistleService, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        svc.check_running(f"while waiting for {what}")
        if cond():
            return
        time.sleep(0.3)
    raise AssertionError(f"no {what} within {timeout_s:.0f} s; the serve log ends:\n{svc.log.read_text()[-3000:]}")


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_roles_run_as_three_processes_and_metrics_cover_them_all(served: WhistleService) -> None:
    body = health(served)
    assert body["status"] == "ok" and set(body["roles"]) == {"alerts", "api"}
    siblings = processes(served)
    assert set(siblings) == {"collector-1", "rules"}
    assert served.proc is not None
    assert set(siblings.values()) <= set(children_of(served.proc.pid))
    text = httpx.get(f"{served.config.base_url}/metrics", timeout=5.0, trust_env=False).text
    for name, process in [
        ("whistle_collector_messages_total", "collector-1"),
        ("whistle_rules_readings_total", "rules"),
        ("whistle_alerts_detections_applied_total", "alerts-api"),
    ]:
        assert f'{name}{{process="{process}"}}' in text, text
    assert parse_metrics(text)["whistle_rules_readings_total"] == 0


def test_a_role_that_dies_is_started_again(served: WhistleService) -> None:
    before = processes(served)["rules"]
    os.kill(before, signal.SIGKILL)
    wait_for(
        lambda: processes(served).get("rules") not in (None, before), 60, served, "a new rules process's heartbeat"
    )
    assert not alive(before)
    assert "rules exited with -9" in served.log.read_text()


def test_children_die_with_a_killed_supervisor_and_stop_with_a_terminated_one(served: WhistleService) -> None:
    assert served.proc is not None
    kids = children_of(served.proc.pid)
    assert len(kids) == 3
    served.proc.send_signal(signal.SIGKILL)
    served.proc.wait(10)
    deadline = time.monotonic() + 30
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(k) for k in kids), "a role outlived its killed supervisor"


def test_sigterm_stops_every_child_and_the_database(workdir: Path, served: WhistleService) -> None:
    assert served.proc is not None
    kids = children_of(served.proc.pid)
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(60) == 0
    assert not any(alive(k) for k in kids)
    assert not (served.config.state_dir / "pg" / "postmaster.pid").exists()
    log = served.log.read_text()
    assert "stopping collector-1, rules, alerts-api" in log and "alerts-api stopped (exit 0)" in log
