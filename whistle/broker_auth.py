"""Who may connect to the MQTT broker and what they may publish: accounts, Mosquitto's password file and ACL.

Three kinds of account, all with random passwords shown once (a CSV for provisioning) and kept as
Mosquitto 2 hashes (`$7$`: PBKDF2-SHA512, 101 iterations, a 12-byte salt — what `mosquitto_passwd`
writes), so the files can be rendered again whenever the registry changes:

- a **device** (username = device id) may publish only under `whistle/v1/{type}/{its id}/#` and may
  not subscribe (no read rule at all);
- a **gateway** (an NB-IoT platform, the simulator) publishes for many devices over one connection:
  under the topics of the devices assigned to it, or of every device;
- a **collector** reads `whistle/v1/#` (and `$share/<group>/whistle/v1/#`).

Devices and gateways use the devices' listener(s), where Mosquitto binds each client id to its
username (`use_username_as_clientid true`), so nobody can take another client's session; collectors
use a listener of their own (`service.passwd`, `service.acl`), whose password file holds only
collector accounts: a device's credentials do not open it. See deploy/mosquitto.conf.

A retired device's account is revoked (the registry does it in the retiring transaction), and the
next rendering leaves it out.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from whistle import audit
from whistle.errors import Invalid
from whistle.store.db import Database

MOSQUITTO_ITERATIONS = 101
TOPIC_ROOT = "whistle/v1"
PASSWORD_FILE, ACL_FILE = "passwd", "acl"
SERVICE_PASSWORD_FILE, SERVICE_ACL_FILE = "service.passwd", "service.acl"
DEFAULT_COLLECTOR = "whistle-collector"


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = MOSQUITTO_ITERATIONS) -> str:
    """A Mosquitto 2 password hash: `$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>`."""
    salt = salt or secrets.token_bytes(12)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def verify_mosquitto_hash(password: str, stored: str) -> bool:
    """Whether `password` matches a `$7$` hash (as Mosquitto checks it)."""
    try:
        _, version, iterations, salt, key = stored.split("$")
        if version != "7":
            return False
        expected = base64.b64decode(key)
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def device_topics(device_type: str, device_id: str) -> str:
    """The topics a device publishes under (CONTRACT.md §1)."""
    return f"{TOPIC_ROOT}/{device_type}/{device_id}/#"


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    """A gateway account: the devices it publishes for, or None for every device."""

    name: str
    devices: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> GatewaySpec:
        """`NAME` or `NAME=*` (every device) or `NAME=DEV1,DEV2`."""
        name, _, devices = text.partition("=")
        if not devices or devices == "*":
            return cls(name)
        return cls(name, tuple(d for d in devices.split(",") if d))


@dataclass(frozen=True, slots=True)
class NewCredential:
    """A password issued now: the only time it is seen."""

    username: str
    password: str
    kind: str
    topics: str


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """The rendered files: the devices' listener (passwd, acl) and the collectors' (service.passwd, service.acl)."""

    passwd: str
    acl: str
    service_passwd: str
    service_acl: str
    accounts: int

    def write(self, directory: Path) -> list[Path]:
        """Write the four files atomically (each replaced in one rename), readable by the broker only."""
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in (
            (PASSWORD_FILE, self.passwd),
            (ACL_FILE, self.acl),
            (SERVICE_PASSWORD_FILE, self.service_passwd),
            (SERVICE_ACL_FILE, self.service_acl),
        ):
            written.append(_atomic_write(directory / name, text, mode=0o640))
        return written


def _atomic_write(path: Path, text: str, *, mode: int) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _password() -> str:
    return secrets.token_urlsafe(24)


async def provision(
    db: Database,
    *,
    actor: str,
    gateways: Sequence[GatewaySpec] = (),
    collectors: Sequence[str] = (DEFAULT_COLLECTOR,),
    rotate: Sequence[str] = (),
) -> list[NewCredential]:
    """Give every active device without a live account one, and create (or update) the named gateways and
    collectors; `rotate` issues new passwords for those usernames. Returns only what was issued now."""
    issued: list[NewCredential] = []
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT username, kind, revoked_at IS NULL FROM broker_accounts")
        existing = {r[0]: (r[1], bool(r[2])) for r in await cur.fetchall()}
        cur = await conn.execute("SELECT id, type FROM devices WHERE retired_at IS NULL ORDER BY id")
        devices = {r[0]: r[1] for r in await cur.fetchall()}

        async def put(
            username: str, kind: str, topics: str, *, device_ids: Iterable[str] = (), every: bool = False
        ) -> None:
            password = _password()
            await conn.execute(
                "INSERT INTO broker_accounts (username, kind, hash, devices, all_devices, created_by) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (username) DO UPDATE SET hash = EXCLUDED.hash, "
                "devices = EXCLUDED.devices, all_devices = EXCLUDED.all_devices, revoked_at = NULL, "
                "created_at = now(), created_by = EXCLUDED.created_by",
                (username, kind, mosquitto_hash(password), list(device_ids), every, actor),
            )
            issued.append(NewCredential(username, password, kind, topics))

        for name in [*(g.name for g in gateways), *collectors]:
            if name in devices:
                raise Invalid(f"broker account {name} would take a device's name; choose another")
        for device_id, device_type in devices.items():
            kind, live = existing.get(device_id, ("device", False))
            if kind != "device":
                raise Invalid(f"device {device_id} has the name of a {kind} account; rename one of them")
            if not live or device_id in rotate:
                await put(device_id, "device", device_topics(device_type, device_id))
        for g in gateways:
            kind, live = existing.get(g.name, ("gateway", False))
            if kind != "gateway":
                raise Invalid(f"{g.name} is a {kind} account, not a gateway")
            unknown = sorted(set(g.devices or ()) - set(devices))
            if unknown:
                raise Invalid(f"gateway {g.name}: devices not in the registry: {', '.join(unknown[:10])}")
            topics = "whistle/v1/#" if g.devices is None else f"{len(g.devices)} devices' topics"
            if not live or g.name in rotate:
                await put(g.name, "gateway", topics, device_ids=g.devices or (), every=g.devices is None)
            else:
                await conn.execute(
                    "UPDATE broker_accounts SET devices = %s, all_devices = %s WHERE username = %s",
                    (list(g.devices or ()), g.devices is None, g.name),
                )
        for name in collectors:
            kind, live = existing.get(name, ("collector", False))
            if kind != "collector":
                raise Invalid(f"{name} is a {kind} account, not a collector")
            if not live or name in rotate:
                await put(name, "collector", f"read {TOPIC_ROOT}/#")
        await audit.record(
            conn,
            actor=actor,
            action="broker.provision",
            target_type="broker",
            data={"issued": [c.username for c in issued][:1000], "count": len(issued)},
        )
    return issued


async def revoke(db: Database, usernames: Sequence[str], *, actor: str) -> int:
    """Revoke broker accounts by username (they are left out of the next rendering)."""
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE broker_accounts SET revoked_at = now() WHERE username = ANY(%s) AND revoked_at IS NULL",
            (list(usernames),),
        )
        await audit.record(
            conn, actor=actor, action="broker.revoke", target_type="broker", data={"usernames": list(usernames)}
        )
        return cur.rowcount


async def render(db: Database) -> BrokerFiles:
    """The password files and ACLs of the live accounts (a device account only while its device is active)."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT a.username, a.kind, a.hash, a.devices, a.all_devices, d.type FROM broker_accounts a "
            "LEFT JOIN devices d ON d.id = a.username AND d.retired_at IS NULL "
            "WHERE a.revoked_at IS NULL AND (a.kind <> 'device' OR d.id IS NOT NULL) ORDER BY a.kind, a.username"
        )
        accounts = await cur.fetchall()
        cur = await conn.execute("SELECT id, type FROM devices WHERE retired_at IS NULL")
        types = {r[0]: r[1] for r in await cur.fetchall()}
    passwd, acl, service_passwd, service_acl = [], [], [], []
    head = "# Rendered by whistle (whistle.broker_auth) from the registry; do not edit: it is rewritten.\n"
    for username, kind, hashed, device_ids, every, device_type in accounts:
        line = f"{username}:{hashed}"
        if kind == "collector":
            service_passwd.append(line)
            service_acl += [f"user {username}", f"topic read {TOPIC_ROOT}/#", f"topic read $share/+/{TOPIC_ROOT}/#", ""]
            continue
        passwd.append(line)
        acl.append(f"user {username}")
        if kind == "device":
            acl.append(f"topic write {device_topics(device_type, username)}")
        elif every:
            acl.append(f"topic write {TOPIC_ROOT}/#")
        else:
            acl += [f"topic write {device_topics(types[d], d)}" for d in device_ids if d in types]
        acl.append("")
    return BrokerFiles(
        passwd=head + "".join(f"{x}\n" for x in passwd),
        acl=head + "\n".join(acl) + "\n",
        service_passwd=head + "".join(f"{x}\n" for x in service_passwd),
        service_acl=head + "\n".join(service_acl) + "\n",
        accounts=len(accounts),
    )


def write_credentials_csv(path: Path, credentials: Sequence[NewCredential]) -> Path:
    """The passwords issued now, for provisioning (readable by its owner only); shown once, kept nowhere else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["username", "password", "kind", "topics"])
        for c in credentials:
            writer.writerow([c.username, c.password, c.kind, c.topics])
    return path


@dataclass(frozen=True, slots=True)
class BrokerAccount:
    """A live account as a broker checks it: its hash, and the topic filters it may publish and subscribe to."""

    username: str
    kind: str
    hash: str
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()

    @classmethod
    def collector(cls, username: str, hashed: str) -> BrokerAccount:
        return cls(username, "collector", hashed, (), (f"{TOPIC_ROOT}/#", f"$share/+/{TOPIC_ROOT}/#"))


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT topic-filter matching (`+` one level, `#` the rest)."""
    p, t = pattern.split("/"), topic.split("/")
    for i, part in enumerate(p):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(p) == len(t)


async def live_accounts(db: Database) -> dict[str, BrokerAccount]:
    """Every live account with what it may do: what an embedded broker checks (Mosquitto reads `render`)."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT a.username, a.kind, a.hash, a.devices, a.all_devices, d.type FROM broker_accounts a "
            "LEFT JOIN devices d ON d.id = a.username AND d.retired_at IS NULL "
            "WHERE a.revoked_at IS NULL AND (a.kind <> 'device' OR d.id IS NOT NULL)"
        )
        rows = await cur.fetchall()
        cur = await conn.execute("SELECT id, type FROM devices WHERE retired_at IS NULL")
        types = {r[0]: r[1] for r in await cur.fetchall()}
    out: dict[str, BrokerAccount] = {}
    for username, kind, hashed, device_ids, every, device_type in rows:
        if kind == "collector":
            out[username] = BrokerAccount.collector(username, hashed)
        elif kind == "device":
            out[username] = BrokerAccount(username, kind, hashed, (device_topics(device_type, username),))
        else:
            publish = (
                (f"{TOPIC_ROOT}/#",) if every else tuple(device_topics(types[d], d) for d in device_ids if d in types)
            )
            out[username] = BrokerAccount(username, kind, hashed, publish)
    return out
