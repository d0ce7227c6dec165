"""How this deployment's worker page is configured: the arrival radius, the Web Push key browsers subscribe with,
the one-tap links' key and the SMS reply callbacks' key (from `WHISTLE_*` and the Web Push channel's settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from alerts.channels.settings import WebPushSettings
from alerts.channels.webpush import b64url_encode, load_vapid_key, public_key_bytes
from alerts.links import link_key
from whistle.settings import Settings
from whistle.store.db import Database


def vapid_public_key(settings: WebPushSettings) -> str | None:
    """The applicationServerKey of the configured VAPID key (None: Web Push is not configured)."""
    if not settings.configured() or settings.vapid_private_key is None:
        return None
    key = load_vapid_key(settings.vapid_private_key.get_secret_value())
    return b64url_encode(public_key_bytes(key.public_key()))


@dataclass
class WorkerOptions:
    arrive_radius_m: float = 200.0
    vapid_public_key: str | None = None
    link_secret: bytes | None = None  # None: the database keeps the deployment's key
    sms_reply_key: str | None = None  # None: the reply callbacks are refused
    _key: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, s: Settings, push: WebPushSettings | None = None) -> WorkerOptions:
        return cls(
            arrive_radius_m=s.arrive_radius_m,
            vapid_public_key=vapid_public_key(push or WebPushSettings()),
            link_secret=s.link_key,
            sms_reply_key=s.sms_reply_key.get_secret_value() if s.sms_reply_key else None,
        )

    async def link_key(self, db: Database) -> bytes:
        """The one-tap links' key (read once from the database when it keeps it)."""
        if self._key is None:
            self._key = await link_key(db, self.link_secret)
        return self._key
