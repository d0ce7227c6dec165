"""What a notification channel is: the values it takes and returns, its interface, and masking.

A `Notification` goes to one `Recipient` through one `NotifyChannel` and comes back as an `Attempt`.
Channels never raise for a delivery that did not happen: they return an `Attempt` that says why
and whether trying again could help. Personal data (names, phone numbers) is masked in every
log line and every attempt record; only the request to the provider carries it in full.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from whistle import privacy
from whistle.domain import AlarmKind, Severity

# Masking lives in the kernel (whistle.privacy); these names stay here for the code that imports them from here.
mask_name = privacy.mask_name
mask_phone = privacy.mask_phone
redact = privacy.redact

# Attempt codes that are ours rather than a provider's.
NO_ADDRESS = "no_address"  # the recipient has no address on this channel: skip it, it is not a failure to retry
NOT_CONFIGURED = "not_configured"  # the route names a channel that is not configured in this process
BUDGET_SPENT = "budget_spent"  # the channel's hourly budget is spent (alerts.caps): skip it like an absent one
TIMEOUT = "timeout"
TRANSPORT = "transport_error"
EXCEPTION = "exception"


@dataclass(frozen=True, slots=True)
class PushSubscription:
    """A browser's Web Push subscription (PushSubscription.toJSON(): endpoint and keys)."""

    endpoint: str
    p256dh: str  # base64url, the user agent's uncompressed P-256 public key (65 octets)
    auth: str  # base64url, the 16-octet authentication secret

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> PushSubscription:
        """From the browser's JSON: {"endpoint": ..., "keys": {"p256dh": ..., "auth": ...}}."""
        keys = data.get("keys")
        endpoint = data.get("endpoint")
        if not isinstance(endpoint, str) or not isinstance(keys, Mapping):
            raise ValueError("a push subscription needs an endpoint and keys")
        p256dh, auth = keys.get("p256dh"), keys.get("auth")
        if not isinstance(p256dh, str) or not isinstance(auth, str):
            raise ValueError("a push subscription needs keys.p256dh and keys.auth")
        return cls(endpoint=endpoint, p256dh=p256dh, auth=auth)


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who is notified and where they can be reached; channels take the address they need."""

    id: str
    name: str
    phone: str | None = None  # E.164, e.g. +8613812345678
    push: tuple[PushSubscription, ...] = ()
    # Further per-channel addresses, e.g. {"wecom": "<userid to @mention>"}.
    addresses: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one recipient. `id` is the idempotency key: one id is delivered at most once."""

    id: str
    recipient: Recipient
    severity: Severity
    kind: AlarmKind
    title: str
    body: str
    ticket_id: str | None
    created_at: int  # ms since the epoch
    url: str | None = None  # where the ticket can be opened on the worker's page (no credential in it)
    # The assignee's one-tap link (alerts.links): a credential to acknowledge this one ticket. Only messages that
    # reach the assignee themselves carry it (SMS, push, the group robots that @-mention them), never the live
    # feed (the operations center sees a copy of it) nor a webhook.
    ack_url: str | None = None
    reply_code: str | None = None  # the ticket's short code: an SMS reply of it acknowledges (the assignee's only)

    def document(self) -> dict[str, object]:
        """The notification as JSON, without personal data or the one-tap link: what the live feed and webhooks
        carry (each adds what it alone needs: the recipient's id, a signed timestamp; push adds the link)."""
        return {
            "type": "notification",
            "id": self.id,
            "kind": self.kind.value,
            "severity": self.severity.value,
            "title": self.title,
            "body": self.body,
            "ticket_id": self.ticket_id,
            "url": self.url,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one try on one channel did. Everything in it is safe to log and to store."""

    channel: str
    notification_id: str
    ok: bool
    retryable: bool
    address: str = ""  # masked: a phone number with its middle hidden, an endpoint's origin
    status: int | None = None  # HTTP status, when there was a response
    code: str | None = None  # the provider's code ("OK", "isv.BUSINESS_LIMIT_CONTROL", errcode ...)
    provider_message_id: str | None = None
    error: str | None = None  # masked
    latency_ms: float = 0.0
    at: int = 0  # ms since the epoch, when the try started
    retry_after_ms: int | None = None  # the provider asked us to wait this long (Retry-After, rate limits)
    gone: tuple[str, ...] = ()  # Web Push endpoints that no longer exist (404/410): delete them


@runtime_checkable
class NotifyChannel(Protocol):
    """A way to reach a person: SMS, Web Push, a group robot, a webhook, the live feed.

    Implementations return an `Attempt` for every outcome a provider can produce, including
    network errors, and raise only for programming errors (e.g. not started).
    """

    @property
    def name(self) -> str: ...

    async def send(self, message: Notification) -> Attempt: ...


@runtime_checkable
class ManagedChannel(NotifyChannel, Protocol):
    """A channel with a lifecycle: `start()`, an idempotent `stop()`, and `async with`."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class ChannelNotStarted(RuntimeError):
    """`send()` on a channel whose `start()` was not called (or that was stopped)."""


# ---------------------------------------------------------------------------------------------
# Masking: personal data never reaches a log line or an attempt record in full (whistle.privacy).


def describe(message: Notification) -> str:
    """A log-safe description of a notification: id, kind, severity and the masked recipient."""
    r = message.recipient
    return f"{message.id} {message.kind.value}/{message.severity.value} to {r.id} {mask_name(r.name)}"
