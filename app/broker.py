"""The embedded MQTT broker (amqtt), used when WHISTLE_MQTT_URL is unset."""

from __future__ import annotations

import logging
import socket
from typing import Any

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """An amqtt broker on a loopback port, anonymous, for one machine's demo or development."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._broker: Any = None

    @property
    def url(self) -> str:
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
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = Broker(config)
        await self._broker.start()
        log.info("embedded MQTT broker at %s", self.url)

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()
