"""Devices on the broker, against a real Mosquitto running deploy/mosquitto.conf (ports and paths moved to a
temporary directory) with the password file and ACL that `whistle.broker_auth` renders from the registry, and its
TLS listener with the certificate deploy/make-dev-cert.sh makes: anonymous clients are refused, a device cannot
publish as another device, hears nothing it subscribes to, cannot take the collector's session, and a retired
device is locked out once the files are rewritten and Mosquitto reloads them."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from alerts.retirement import retire_device
from alerts.service import AlertService
from app.broker import free_port
from app.mosquitto import stop_process
from tests.conftest import _install_mosquitto
from tests.helpers import small_registry
from tests.mqtt_clients import Probe, connect, refused
from whistle.broker_auth import (
    GatewaySpec,
    mosquitto_hash,
    provision,
    render,
    verify_mosquitto_hash,
)
from whistle.registry import import_registry, parse_registry
from whistle.store.db import Database

ROOT = Path(__file__).resolve().parents[2]
REFUSED = "Not authorized"


@dataclass
class DeployBroker:
    devices: int  # plain listener (1883 in deploy/mosquitto.conf)
    tls: int  # TLS listener (8883)
    service: int  # collectors' listener (1884)
    ca: Path
    auth_dir: Path
    proc: subprocess.Popen[bytes]
    log: Path
    passwords: dict[str, str]

    def reload(self) -> None:
        self.proc.send_signal(1)  # SIGHUP: Mosquitto reads its password files and ACLs again


def render_deploy_config(auth_dir: Path, certs: Path, state: Path, ports: tuple[int, int, int]) -> str:
    """deploy/mosquitto.conf as shipped, with its ports, file paths and bind addresses moved for a test."""
    text = (ROOT / "deploy" / "mosquitto.conf").read_text()
    text = re.sub(r"^listener 1883$", f"listener {ports[0]} 127.0.0.1", text, flags=re.M)
    text = re.sub(r"^listener 8883$", f"listener {ports[1]} 127.0.0.1", text, flags=re.M)
    text = re.sub(r"^listener 1884 127.0.0.1$", f"listener {ports[2]} 127.0.0.1", text, flags=re.M)
    assert text.count(" 127.0.0.1\n") >= 3, "deploy/mosquitto.conf no longer has the three listeners"
    text = text.replace("/etc/mosquitto/whistle", str(auth_dir)).replace("/etc/mosquitto/certs", str(certs))
    text = text.replace("/var/lib/mosquitto/", f"{state}/")
    user = "user root\n" if os.geteuid() == 0 else ""  # read files in pytest's private (0700) directories
    return user + text + f"log_dest file {state}/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\n"


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"mosquitto exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"mosquitto did not listen on {port} within 15 s")


@pytest.fixture
async def registry_db(db: Database) -> Database:
    await import_registry(db, parse_registry(small_registry()))
    return db


@pytest.fixture
async def deploy_broker(registry_db: Database, tmp_path: Path) -> AsyncIterator[DeployBroker]:
    binary = _install_mosquitto()
    issued = await provision(
        registry_db,
        actor="test",
        gateways=[GatewaySpec.parse("gw-nbiot=WM-000001")],
        collectors=["whistle-collector"],
    )
    auth_dir, certs, state = tmp_path / "auth", tmp_path / "certs", tmp_path / "state"
    (await render(registry_db)).write(auth_dir)
    proc, ports, log = await asyncio.to_thread(start_deploy_mosquitto, binary, tmp_path, auth_dir, certs, state)
    try:
        yield DeployBroker(*ports, certs / "ca.crt", auth_dir, proc, log, {c.username: c.password for c in issued})
    finally:
        stop_process(proc)


def start_deploy_mosquitto(
    binary: str, tmp_path: Path, auth_dir: Path, certs: Path, state: Path
) -> tuple[subprocess.Popen[bytes], tuple[int, int, int], Path]:
    """A development certificate from deploy/make-dev-cert.sh, then Mosquitto on deploy/mosquitto.conf."""
    state.mkdir()
    made = subprocess.run(
        ["bash", str(ROOT / "deploy" / "make-dev-cert.sh"), str(certs)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, f"deploy/make-dev-cert.sh failed (is openssl installed?): {made.stderr}"
    ports = (free_port(), free_port(), free_port())
    assert len(set(ports)) == 3
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(render_deploy_config(auth_dir, certs, state, ports))
    log = state / "mosquitto.log"
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for port in ports:
            wait_listening(port, proc, log)
    except BaseException:
        stop_process(proc)
        raise
    return proc, ports, log


@pytest.fixture
def collector(deploy_broker: DeployBroker) -> Iterator[dict[str, Probe]]:
    """The collector's two lanes, as the product names them, on persistent sessions subscribed to everything."""
    lanes = {}
    for client_id in ("whistle-collector", "whistle-collector-priority"):
        probe = connect(
            deploy_broker.service,
            client_id=client_id,
            username="whistle-collector",
            password=deploy_broker.passwords["whistle-collector"],
            clean_session=False,
        )
        assert probe.rc == "Success", probe.rc
        probe.subscribe("whistle/v1/#")
        lanes[client_id] = probe
    yield lanes
    for probe in lanes.values():
        probe.close()


def device(b: DeployBroker, name: str, *, client_id: str | None = None, **kw: object) -> Probe:
    probe = connect(b.devices, client_id=client_id or name, username=name, password=b.passwords[name], **kw)  # type: ignore[arg-type]
    assert probe.rc == "Success", f"{name}: {probe.rc}"
    return probe


def test_our_hashes_are_mosquittos(tmp_path: Path) -> None:
    """A `$7$` hash written by mosquitto_passwd verifies with ours, and ours has its shape."""
    _install_mosquitto()
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    assert os.path.exists(tool), "mosquitto_passwd is missing (Debian package mosquitto)"
    pwfile = tmp_path / "pw"
    subprocess.run([tool, "-b", "-c", str(pwfile), "dev", "s3cret-pass"], check=True, capture_output=True)
    theirs = pwfile.read_text().strip().split(":", 1)[1]
    assert verify_mosquitto_hash("s3cret-pass", theirs) and not verify_mosquitto_hash("other", theirs)
    ours = mosquitto_hash("s3cret-pass")
    assert re.fullmatch(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", ours), ours
    assert verify_mosquitto_hash("s3cret-pass", ours)


def test_anonymous_and_wrong_credentials_are_refused_on_every_listener(deploy_broker: DeployBroker) -> None:
    b = deploy_broker
    assert refused(b.devices, client_id="anon") == REFUSED
    assert refused(b.tls, client_id="anon", ca=b.ca) == REFUSED
    assert refused(b.service, client_id="anon") == REFUSED
    assert refused(b.devices, client_id="SM-0001", username="SM-0001", password="not-its-password") == REFUSED
    # a device's credentials do not open the collectors' listener
    assert refused(b.service, client_id="x", username="SM-0001", password=b.passwords["SM-0001"]) == REFUSED
    assert refused(b.service, client_id="x", username="gw-nbiot", password=b.passwords["gw-nbiot"]) == REFUSED


def test_a_device_publishes_only_as_itself_and_hears_nothing(
    deploy_broker: DeployBroker, collector: dict[str, Probe]
) -> None:
    b, bulk = deploy_broker, collector["whistle-collector"]
    spoofer = device(b, "SM-0001")
    spoofer.subscribe("whistle/v1/#")
    spoofer.subscribe("#")
    # The defect of issue 15: a spoofed tamper event on another detector's topic. Mosquitto drops it (and the
    # water meter's reading it forges); what it publishes under its own topic arrives.
    spoofer.publish("whistle/v1/smoke/SM-0002/event", b'{"event": "tamper"}')
    spoofer.publish("whistle/v1/water/WM-000001/data", b'{"total_m3": 0}')
    spoofer.publish("whistle/v1/smoke/SM-0001/event", b'{"event": "tamper"}')
    bulk.wait_for("whistle/v1/smoke/SM-0001/event")
    assert [t for t, _ in bulk.messages] == ["whistle/v1/smoke/SM-0001/event"], bulk.messages
    # Another device's message reached the collector; the spoofer's own next PUBACK comes after it on the
    # same connection, so had its subscription been served, the message would be in by then.
    other = device(b, "SM-0003")
    other.publish("whistle/v1/smoke/SM-0003/status", b'{"battery_pct": 80}')
    bulk.wait_for("whistle/v1/smoke/SM-0003/status")
    spoofer.publish("whistle/v1/smoke/SM-0001/status", b'{"battery_pct": 90}')
    assert spoofer.messages == [], spoofer.messages
    # A gateway publishes for the devices assigned to it, and for no other.
    gateway = device(b, "gw-nbiot")
    gateway.publish("whistle/v1/smoke/SM-0002/event", b'{"event": "alarm"}')
    gateway.publish("whistle/v1/water/WM-000001/data", b'{"total_m3": 1.5}')
    bulk.wait_for("whistle/v1/water/WM-000001/data")
    assert "whistle/v1/smoke/SM-0002/event" not in [t for t, _ in bulk.messages]
    for p in (spoofer, other, gateway):
        p.close()


def test_nobody_takes_the_collectors_session(deploy_broker: DeployBroker, collector: dict[str, Probe]) -> None:
    """The defect of issue 15: a client connecting with the collector's client id took over its persistent
    session. On the devices' listener every client id is its username, so both lanes keep theirs."""
    b = deploy_broker
    intruders = [
        device(b, "SM-0001", client_id=lane, clean_session=clean)
        for lane in ("whistle-collector", "whistle-collector-priority")
        for clean in (True, False)
    ]
    other = device(b, "SM-0003")
    other.publish("whistle/v1/smoke/SM-0003/event", b'{"event": "alarm"}')
    for lane in collector.values():
        lane.wait_for("whistle/v1/smoke/SM-0003/event")
        assert lane.disconnects == [], f"the collector's session was taken: {lane.disconnects}"
    # The bound client id is the username: the intruders' four connections were one session, SM-0001's, and
    # each new one took over the one before.
    assert [bool(p.disconnects) for p in intruders[:-1]] == [True, True, True]
    for p in (*intruders, other):
        p.close()


def test_devices_connect_over_tls(deploy_broker: DeployBroker, collector: dict[str, Probe]) -> None:
    b = deploy_broker
    probe = connect(b.tls, client_id="SM-0002", username="SM-0002", password=b.passwords["SM-0002"], ca=b.ca)
    assert probe.rc == "Success", probe.rc
    probe.publish("whistle/v1/smoke/SM-0002/status", b'{"battery_pct": 77}')
    collector["whistle-collector"].wait_for("whistle/v1/smoke/SM-0002/status")
    probe.close()


async def test_a_retired_device_is_locked_out_when_the_files_are_rewritten(
    deploy_broker: DeployBroker, registry_db: Database
) -> None:
    b = deploy_broker
    device(b, "SM-0001").close()
    done = await retire_device(AlertService(registry_db), "SM-0001", actor="test", reason="replaced")
    assert done.device_id == "SM-0001"
    files = await render(registry_db)
    assert "SM-0001:" not in files.passwd and "SM-0002:" in files.passwd
    files.write(b.auth_dir)
    b.reload()
    deadline = time.monotonic() + 15
    while True:  # Mosquitto applies a SIGHUP between two rounds of its loop
        answer = await asyncio.to_thread(
            refused, b.devices, client_id="SM-0001", username="SM-0001", password=b.passwords["SM-0001"]
        )
        if answer == REFUSED:
            break
        assert time.monotonic() < deadline, f"SM-0001 still accepted 15 s after the reload: {answer}"
        await asyncio.sleep(0.2)
    device(b, "SM-0002").close()  # the others are unaffected


def test_rendered_acl_gives_each_account_only_its_topics(deploy_broker: DeployBroker) -> None:
    acl = (deploy_broker.auth_dir / "acl").read_text()
    assert "user SM-0001\ntopic write whistle/v1/smoke/SM-0001/#\n" in acl
    assert "user gw-nbiot\ntopic write whistle/v1/water/WM-000001/#\n" in acl
    assert "topic read" not in acl and "readwrite" not in acl
    service = (deploy_broker.auth_dir / "service.acl").read_text()
    assert "user whistle-collector\ntopic read whistle/v1/#\ntopic read $share/+/whistle/v1/#\n" in service
    assert "whistle-collector" not in (deploy_broker.auth_dir / "passwd").read_text()
    assert oct((deploy_broker.auth_dir / "passwd").stat().st_mode & 0o777) == "0o640"
