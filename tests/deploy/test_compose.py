"""deploy/compose.yaml as Debian's docker-compose (Compose v1) reads it, with no container runtime: it
validates, every role is its own named service with a healthcheck and a restart policy, our services are
configured only by WHISTLE_* variables that exist and by secrets files, and the broker configuration it
mounts runs in a real Mosquitto."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict
from pydantic_settings import BaseSettings

from alerts.channels import settings as channel_settings
from tests.conftest import _install_mosquitto
from whistle.mqtt import MqttEndpoint
from whistle.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ROLES = {
    "collector-1": "collector",
    "collector-2": "collector",
    "rules-1": "rules",
    "rules-2": "rules",
    "alerts": "alerts",
    "api": "api",
}
THIRD_PARTY = {"mosquitto", "kafka", "timescaledb"}


def docker_compose() -> str:
    found = shutil.which("docker-compose")
    if not found:
        pytest.fail(
            "Debian's docker-compose (Compose v1) is not installed: `make system-deps` installs it "
            "(scripts/ensure-system-deps: apt-get install --no-install-recommends docker-compose)"
        )
    return found


def compose_config(*files: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`docker-compose -f ... config`, parsed; fails the test with docker-compose's own words."""
    args = [docker_compose()]
    for f in files:
        args += ["-f", str(DEPLOY / f)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WHISTLE_") and not k.startswith("COMPOSE_")}
    res = subprocess.run(
        [*args, "config"],
        cwd=REPO,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if res.returncode != 0:
        pytest.fail(f"docker-compose {' '.join(files)} config failed:\n{res.stderr.strip()}")
    doc = yaml.safe_load(res.stdout)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return compose_config("compose.yaml")


def known_variables() -> set[str]:
    """Every WHISTLE_* variable a role reads: the settings of whistle/settings.py and of the channels."""
    classes: list[type[BaseSettings]] = [Settings]
    classes += [
        c
        for c in vars(channel_settings).values()
        if isinstance(c, type) and issubclass(c, BaseSettings) and c.model_config.get("env_prefix")
    ]
    names = {f"{c.model_config.get('env_prefix', '')}{f}".upper() for c in classes for f in c.model_fields}
    assert "WHISTLE_NOTIFY_SMS_MAX_PER_HOUR" in names and "WHISTLE_MQTT_SHARE_GROUP" in names
    return names | {f"{n}_FILE" for n in names}


def test_compose_v1_reads_it_and_every_role_is_a_named_service(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == set(ROLES) | THIRD_PARTY
    for name, svc in services.items():
        assert "deploy" not in svc, f"{name}: swarm-only `deploy` (replicas) — roles are named services"
        assert svc.get("restart") in ("unless-stopped", "always"), f"{name}: no restart policy"
        assert svc.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
    for name, role in ROLES.items():
        svc = services[name]
        assert svc["command"] == ["run", role]
        assert svc["image"] == services["api"]["image"]
        assert svc["healthcheck"]["test"][:3] == ["CMD", "whistle", "health"]
        needs = svc["depends_on"]
        assert needs["timescaledb"]["condition"] == needs["kafka"]["condition"] == "service_healthy"
    assert services["collector-1"]["depends_on"]["mosquitto"]["condition"] == "service_healthy"


def test_our_services_are_configured_by_known_whistle_variables_and_secret_files(config: dict[str, Any]) -> None:
    known = known_variables()
    declared = config["secrets"]
    for name in ROLES:
        svc = config["services"][name]
        env: dict[str, str] = svc["environment"]
        unknown = sorted(k for k in env if k not in known)
        assert not unknown, f"{name}: variables no setting reads: {unknown}"
        mounted = {s["source"] for s in svc.get("secrets", [])}
        for key, value in env.items():
            if key.endswith("_FILE") and key != "WHISTLE_HEALTH_FILE":
                secret = value.removeprefix("/run/secrets/")
                assert value.startswith("/run/secrets/") and secret in mounted, f"{name}: {key}={value} not mounted"
                assert "file" in declared[secret], f"secret {secret}: not from a file"
            assert "@" not in value and "password" not in value.lower(), f"{name}: {key} looks like a secret"
        for secret in ("WHISTLE_DATABASE_URL", "WHISTLE_MQTT_URL", "WHISTLE_ADMIN_TOKEN"):
            assert secret not in env, f"{name}: {secret} in the file; use {secret}_FILE"
        assert env["WHISTLE_DATABASE_URL_FILE"] == "/run/secrets/database_url"
        assert env["WHISTLE_KAFKA_BOOTSTRAP"] == "kafka:9092"
        if name != "api":
            assert env["WHISTLE_HEALTH_FILE"].startswith("/tmp/")
    api = config["services"]["api"]["environment"]
    assert "WHISTLE_HEALTH_FILE" not in api  # the api answers GET /api/v1/health itself
    assert api["WHISTLE_ADMIN_TOKEN_FILE"] == "/run/secrets/admin_token"
    partitions = {config["services"][n]["environment"]["WHISTLE_PARTITIONS"] for n in ROLES}
    assert partitions == {config["services"]["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"]}


def test_two_collectors_share_one_subscription_and_two_rule_workers_one_group(config: dict[str, Any]) -> None:
    c1, c2 = (config["services"][n]["environment"] for n in ("collector-1", "collector-2"))
    assert c1["WHISTLE_MQTT_SHARE_GROUP"] == c2["WHISTLE_MQTT_SHARE_GROUP"] != ""
    assert c1["WHISTLE_MQTT_CLIENT_ID"] != c2["WHISTLE_MQTT_CLIENT_ID"]  # one persistent session each
    assert c1["WHISTLE_MQTT_URL_FILE"] == c2["WHISTLE_MQTT_URL_FILE"] == "/run/secrets/mqtt_url"
    r1, r2 = (config["services"][n]["environment"] for n in ("rules-1", "rules-2"))
    assert r1 == r2  # same configuration: the consumer group is the code's, so they split the partitions


def test_kafka_kraft_timescaledb_and_mosquitto_are_the_official_images_with_volumes(config: dict[str, Any]) -> None:
    services = config["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    roles = set(kafka["environment"]["KAFKA_PROCESS_ROLES"].split(","))
    assert roles == {"broker", "controller"}
    assert not [k for k in kafka["environment"] if "ZOOKEEPER" in k]
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert services["timescaledb"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in services["timescaledb"]["environment"]
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:")
    mounts = {
        n: {str(v).split(":")[1] if isinstance(v, str) else v["target"] for v in services[n]["volumes"]}
        for n in THIRD_PARTY
    }
    assert "/var/lib/postgresql/data" in mounts["timescaledb"]
    assert "/var/lib/kafka/data" in mounts["kafka"]
    assert {"/mosquitto/data", "/mosquitto/auth", "/mosquitto/config/mosquitto.conf"} <= mounts["mosquitto"]
    assert set(config["volumes"]) == {"pgdata", "kafka-data", "mosquitto-data"}


def test_the_sms_override_adds_its_keys_as_secrets() -> None:
    merged = compose_config("compose.yaml", "compose.sms.yaml", env={"WHISTLE_SMS_ALIYUN_TEMPLATE_CODE": "SMS_1"})
    alerts = merged["services"]["alerts"]
    assert {s["source"] for s in alerts["secrets"]} == {
        "database_url",
        "sms_aliyun_access_key_id",
        "sms_aliyun_access_key_secret",
    }
    env = alerts["environment"]
    assert env["WHISTLE_SMS_ALIYUN_ACCESS_KEY_SECRET_FILE"] == "/run/secrets/sms_aliyun_access_key_secret"
    assert env["WHISTLE_DATABASE_URL_FILE"] == "/run/secrets/database_url"  # the base file's settings stay
    assert not [k for k in env if k not in known_variables()]


def test_init_secrets_writes_matching_urls_once_that_the_settings_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    env = {**os.environ, "WHISTLE_SECRETS_DIR": str(secrets)}
    script = ["bash", str(DEPLOY / "init-secrets.sh")]
    first = subprocess.run(script, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    assert secrets.stat().st_mode & 0o777 == 0o700
    files = {p.name: p for p in secrets.iterdir()}
    assert set(files) >= {"postgres_password", "database_url", "mqtt_url", "admin_token"}
    assert all(p.stat().st_mode & 0o777 == 0o444 for p in files.values())
    before = {n: p.read_text() for n, p in files.items()}
    again = subprocess.run(script, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "wrote" not in again.stdout and {n: p.read_text() for n, p in files.items()} == before
    # what the roles read through WHISTLE_*_FILE: the database password is postgres_password's
    for name in ("DATABASE_URL", "MQTT_URL", "ADMIN_TOKEN"):
        monkeypatch.delenv(f"WHISTLE_{name}", raising=False)
        monkeypatch.setenv(f"WHISTLE_{name}_FILE", str(files[name.lower()]))
    settings = Settings()
    assert settings.database_url is not None and settings.mqtt_url is not None
    db = conninfo_to_dict(settings.database_url)
    assert (db["host"], db["user"], db["dbname"]) == ("timescaledb", "whistle", "whistle")
    assert db["password"] == before["postgres_password"].strip()
    broker = MqttEndpoint.parse(settings.mqtt_url)
    assert (broker.host, broker.username) == ("mosquitto", "whistle-collector")
    assert broker.password == before["mqtt_collector_password"].strip()
    assert len(settings.token) >= 32
    config = compose_config("compose.yaml", env={"WHISTLE_SECRETS_DIR": str(secrets)})
    assert config["secrets"]["database_url"]["file"] == str(files["database_url"])


# --- the broker configuration in a real Mosquitto ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def compose_mosquitto() -> Iterator[tuple[int, int, str]]:
    """Debian's Mosquitto on deploy/mosquitto-compose.conf (the container's paths and ports moved to a
    temporary directory), the collector in the collectors' password file and ACL and no device yet:
    (collector port, health port, password). As root, Mosquitto drops to its own user, who must reach the files."""
    binary = _install_mosquitto()
    passwd_tool = shutil.which("mosquitto_passwd")
    if passwd_tool is None:
        pytest.fail("mosquitto_passwd is missing (Debian's mosquitto package ships it)")
    root = Path(tempfile.mkdtemp(prefix="whistle-compose-mosquitto-"))
    try:
        for sub in ("data", "auth", "config"):
            (root / sub).mkdir()
        password = "collector-password-for-the-test"
        subprocess.run(
            [passwd_tool, "-c", "-b", str(root / "auth/service.passwd"), "whistle-collector", password],
            check=True,
            timeout=30,
            capture_output=True,
        )
        (root / "auth/service.acl").write_text(
            "user whistle-collector\ntopic read whistle/v1/#\ntopic read $share/+/whistle/v1/#\n"
        )
        (root / "auth/passwd").write_text("")
        (root / "auth/acl").write_text("")
        shutil.copy(DEPLOY / "mosquitto-health.acl", root / "config/health.acl")
        devices, port, health = free_port(), free_port(), free_port()
        conf = (DEPLOY / "mosquitto-compose.conf").read_text()
        assert all(f"listener {p}\n" in conf for p in (1883, 1884)) and "listener 1880 127.0.0.1\n" in conf
        conf = conf.replace("/mosquitto/", f"{root}/")
        conf = conf.replace("listener 1883\n", f"listener {devices} 127.0.0.1\n")
        conf = conf.replace("listener 1884\n", f"listener {port} 127.0.0.1\n")
        conf = conf.replace("listener 1880 127.0.0.1\n", f"listener {health} 127.0.0.1\n")
        (root / "mosquitto.conf").write_text(conf)
        if os.geteuid() == 0:
            for p in [root, *root.rglob("*")]:
                shutil.chown(p, "mosquitto", "mosquitto")
        log = (root / "log").open("w")
        proc = subprocess.Popen([binary, "-c", str(root / "mosquitto.conf")], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"Mosquitto refused deploy/mosquitto-compose.conf:\n{(root / 'log').read_text()}")
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline:
                    pytest.fail(f"Mosquitto on mosquitto-compose.conf does not listen:\n{(root / 'log').read_text()}")
                time.sleep(0.1)
            yield port, health, password
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            log.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def connect(
    port: int, user: str | None = None, password: str | None = None, topic: str | None = None
) -> tuple[str, list[str]]:
    """Connect (and subscribe to `topic`): the CONNACK reason and the topics received within 3 s."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{port}-{user}-{time.monotonic_ns()}")
    if user is not None:
        client.username_pw_set(user, password)
    connected = threading.Event()
    got: list[str] = []
    reason: list[str] = []

    def on_connect(c: mqtt.Client, u: object, flags: object, rc: Any, props: object) -> None:
        reason.append(str(rc))
        connected.set()
        if topic is not None and not rc.is_failure:
            c.subscribe(topic, qos=0)

    client.on_connect = on_connect
    client.on_message = lambda c, u, m: got.append(m.topic)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert connected.wait(10), "no CONNACK"
        if topic is not None and reason[0] == "Success":
            deadline = time.monotonic() + 3
            while not got and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        client.loop_stop()
        client.disconnect()
    return reason[0], got


def test_the_broker_configuration_admits_the_collector_and_the_healthcheck_only(
    compose_mosquitto: tuple[int, int, str],
) -> None:
    port, health, password = compose_mosquitto
    assert connect(port, "whistle-collector", password)[0] == "Success"
    assert connect(port, "whistle-collector", "wrong")[0] == "Not authorized"
    assert connect(port)[0] == "Not authorized"  # no anonymous device on the public listener
    # what the container's healthcheck does: read $SYS/broker/uptime on the loopback listener, anonymously
    reason, got = connect(health, topic="$SYS/broker/uptime")
    assert (reason, got[:1]) == ("Success", ["$SYS/broker/uptime"])
    # and nothing else there
    assert connect(health, topic="whistle/v1/#")[1] == []
