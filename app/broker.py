"""The embedded MQTT broker (amqtt), used when WHISTLE_MQTT_URL is unset.

Outside `whistle demo` it refuses anonymous clients (unless WHISTLE_MQTT_OPEN_BROKER says it is an open
test broker): devices and gateways sign in with the accounts of `whistle devices credentials` (read from the
database, reloaded when an unknown or changed account connects), the collector with an account made for this
process, and each may publish or subscribe only as the ACL of whistle.broker_auth allows.

amqtt looks up (and, for a clean session, deletes) the session of a client id before it authenticates the
client, so a client that knows the collector's client id can disturb its session even though it is refused;
Mosquitto binds client ids to usernames (`use_username_as_clientid`) and is what to run for untrusted devices
(app/mosquitto.py, deploy/mosquitto.conf).
"""

from __future__ import annotations

import logging
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from whistle.broker_auth import BrokerAccount, mosquitto_hash, topic_matches, verify_mosquitto_hash

log = logging.getLogger(__name__)

AccountsLoader = Callable[[], Awaitable[Mapping[str, BrokerAccount]]]
EMBEDDED_COLLECTOR = "whistle-collector-embedded"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Accounts:
    """The accounts an embedded broker knows, reloaded (at most once a second) when a stranger knocks."""

    def __init__(self, loader: AccountsLoader | None, own: Mapping[str, BrokerAccount]) -> None:
        self._loader = loader
        self._own = dict(own)
        self._known: dict[str, BrokerAccount] = dict(own)
        self._loaded_at = float("-inf")

    def get(self, username: str) -> BrokerAccount | None:
        return self._known.get(username)

    async def check(self, username: str, password: str) -> BrokerAccount | None:
        account = self._known.get(username)
        stale = account is None or not verify_mosquitto_hash(password, account.hash)
        if stale and self._loader is not None and time.monotonic() - self._loaded_at >= 1.0:
            self._loaded_at = time.monotonic()
            self._known = {**dict(await self._loader()), **self._own}
            account = self._known.get(username)
        if account is None or not verify_mosquitto_hash(password, account.hash):
            return None
        return account


_ACCOUNTS: dict[str, Accounts] = {}  # by broker id: amqtt builds plugins from plain configuration


class WhistleAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt is untyped
    """Username and password against the broker accounts; a device or gateway's client id must be its username."""

    @dataclass
    class Config:
        broker_id: str = ""

    async def authenticate(self, *, session: Session) -> bool | None:
        accounts = _ACCOUNTS.get(self.config.broker_id)
        if accounts is None or not session.username:
            return False
        account = await accounts.check(session.username, session.password or "")
        if account is None:
            return False
        if not client_id_allowed(account.kind, session.username, session.client_id or ""):
            log.warning("MQTT client %s refused: its client id must be its username", session.username)
            return False
        return True


def client_id_allowed(kind: str, username: str, client_id: str) -> bool:
    """Client ids bound to usernames: a device's is its username; a gateway's is its username or
    `<username>-<n>` (a gateway may hold several connections); a collector's is free (its lanes and shares)."""
    if kind == "collector":
        return True
    if kind == "gateway" and client_id.startswith(f"{username}-"):
        return True
    return client_id == username


class WhistleTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]  # amqtt is untyped
    """The ACL: devices and gateways publish under their devices' topics and subscribe to nothing; collectors
    subscribe to (and receive) whistle/v1/# and publish nothing."""

    @dataclass
    class Config:
        broker_id: str = ""
        extra: dict[str, Any] = field(default_factory=dict)

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool | None:
        accounts = _ACCOUNTS.get(self.config.broker_id)
        account = accounts.get(session.username or "") if accounts and session else None
        if account is None or topic is None:
            return False
        if action == Action.PUBLISH:
            return any(topic_matches(f, topic) for f in account.publish)
        if action == Action.SUBSCRIBE:
            return any(topic_matches(f, topic) or f == topic for f in account.subscribe)
        return account.kind == "collector"


class EmbeddedBroker:
    """An amqtt broker on a loopback port: open (anonymous) for the demo and open test brokers, otherwise
    with the accounts of `accounts` (devices, gateways) and one collector account of its own (in `url`)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        open_broker: bool = True,
        accounts: AccountsLoader | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.open_broker = open_broker
        self._accounts_loader = accounts
        self._broker: Any = None
        self._id = uuid.uuid4().hex
        self._collector_password = secrets.token_urlsafe(24)

    @property
    def url(self) -> str:
        """Where the collector connects (with this broker's collector account, unless it is open)."""
        if self.open_broker:
            return f"mqtt://{self.host}:{self.port}"
        return f"mqtt://{EMBEDDED_COLLECTOR}:{quote(self._collector_password, safe='')}@{self.host}:{self.port}"

    @property
    def public_url(self) -> str:
        """Where devices connect: no credentials in it."""
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        from amqtt.broker import Broker

        for logger in ("amqtt", "transitions"):
            logging.getLogger(logger).setLevel(logging.WARNING)
        try:
            with socket.create_server((self.host, self.port)):
                pass
        except OSError:
            busy, self.port = self.port, free_port(self.host)
            log.warning("port %d is taken; the embedded MQTT broker listens on %d instead", busy, self.port)
        if self.open_broker:
            plugins: dict[str, Any] = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        else:
            own = {
                EMBEDDED_COLLECTOR: BrokerAccount.collector(
                    EMBEDDED_COLLECTOR, mosquitto_hash(self._collector_password)
                )
            }
            _ACCOUNTS[self._id] = Accounts(self._accounts_loader, own)
            plugins = {
                "app.broker.WhistleAuthPlugin": {"broker_id": self._id},
                "app.broker.WhistleTopicPlugin": {"broker_id": self._id},
            }
        config = {"listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}}, "plugins": plugins}
        self._broker = Broker(config)
        await self._broker.start()
        log.info(
            "embedded MQTT broker at %s (%s)",
            self.public_url,
            "open: anonymous clients accepted" if self.open_broker else "accounts required",
        )

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()
        _ACCOUNTS.pop(self._id, None)
