"""One settings object per process, read once from the environment (CONTRACT.md §5)."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_TOKEN_LENGTH = 16
# Secrets that are somebody's example, never a deployment's: refused outside the demo.
DEFAULT_SECRETS = frozenset(
    {"changeme", "change-me", "password", "secret", "admin", "whistle", "test", "token", "example", "default"}
)


def weak_secret(value: str, *, min_length: int) -> str | None:
    """Why a configured secret is not good enough (too short, an example, one repeated pattern), or None."""
    if len(value) < min_length:
        return f"shorter than {min_length} characters"
    rest = value.lower()
    for word in sorted(DEFAULT_SECRETS, key=len, reverse=True):
        rest = rest.replace(word, "")
    if len(set(c for c in rest if c.isalnum())) < 4:
        return "an example value"
    if len(set(value)) < 6:
        return "too few distinct characters"
    return None


class SettingsError(ValueError):
    """A setting that cannot be used, with the variable to fix."""


class Settings(BaseSettings):
    """What every role reads; an unset service URL means "run it embedded"."""

    model_config = SettingsConfigDict(env_prefix="WHISTLE_", frozen=True, extra="ignore")

    mqtt_url: str | None = Field(default=None, description="mqtt://user:pass@host:1883; unset: embedded amqtt")
    database_url: str | None = Field(default=None, description="postgresql://...; unset: embedded PostgreSQL")
    kafka_bootstrap: str | None = Field(default=None, description="host:9092; unset: in-process bus")
    http: str = "127.0.0.1:8080"
    admin_token: SecretStr | None = None
    state_dir: Path = Path(".whistle")

    # collectors (CONTRACT.md §1)
    reading_horizon_days: float = Field(default=45.0, gt=0)
    future_tolerance_s: float = Field(default=600.0, ge=0)
    max_payload_bytes: int = Field(default=16 * 1024, gt=0)
    max_batch_items: int = Field(default=1000, gt=0)
    mqtt_share_group: str | None = Field(default=None, description="shared-subscription group for scale-out")
    mqtt_client_id: str = "whistle-collector"
    collector_batch: int = Field(default=2000, gt=0)
    collector_linger_ms: int = Field(default=20, ge=0)

    # rules
    rules_file: Path | None = Field(default=None, description="YAML rule configuration; unset: the defaults")

    # bus
    partitions: int = Field(default=8, gt=0)

    # storage
    db_pool_max: int = Field(default=8, gt=1)
    readings_retention_days: int = Field(default=400, gt=0)

    # people and permissions (issue 15; README "Roles and access")
    token_ttl_days: float = Field(default=90.0, gt=0, description="bearer tokens issued to users expire after this")
    session_ttl_hours: float = Field(default=12.0, gt=0, description="a browser session cookie lasts this long")
    cookie_secure: bool = Field(default=False, description="mark the session cookie Secure (serve behind HTTPS)")
    min_password_length: int = Field(default=12, ge=8)
    rate_login_per_min: float = Field(default=10.0, gt=0, description="sign-in attempts per client address")
    rate_write_per_min: float = Field(default=120.0, gt=0, description="writes per user (and per address)")
    rate_write_privileged_per_min: float = Field(default=1200.0, gt=0, description="writes of admin, integration")
    max_body_bytes: int = Field(default=1024 * 1024, gt=0, description="request body cap")
    max_registry_bytes: int = Field(default=64 * 1024 * 1024, gt=0, description="body cap of POST /registry")
    registry_chunk_rows: int = Field(default=1000, gt=0, description="rows per statement of a registry import")
    life_safety_silence_max_hours: float = Field(default=4.0, gt=0, le=72)
    notification_phone_retention_days: float = Field(default=30.0, gt=0)
    mqtt_open_broker: bool = Field(default=False, description="the embedded broker accepts anonymous clients")
    broker_auth_dir: Path | None = Field(default=None, description="rewrite the broker's password file and ACL here")

    demo: bool = False

    @field_validator("http")
    @classmethod
    def _check_http(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"WHISTLE_HTTP must be host:port, got {value!r}")
        return value

    @property
    def http_host(self) -> str:
        return self.http.rpartition(":")[0].strip("[]")

    @property
    def http_port(self) -> int:
        return int(self.http.rpartition(":")[2])

    @cached_property
    def token(self) -> str:
        """The admin token: the configured one, or one generated for this process."""
        if self.admin_token is None:
            return secrets.token_urlsafe(24)
        value = self.admin_token.get_secret_value()
        why = weak_secret(value, min_length=MIN_TOKEN_LENGTH)
        if why and not self.demo:
            raise SettingsError(f"WHISTLE_ADMIN_TOKEN is refused: {why}")
        return value

    def check_secrets(self) -> None:
        """Refuse short or example secrets outside the demo (the admin token, the MQTT URL's password)."""
        if self.demo:
            return
        _ = self.token
        if self.mqtt_url:
            password = urlsplit(self.mqtt_url).password
            if password is not None and unquote(password).lower() in DEFAULT_SECRETS:
                raise SettingsError("the password in WHISTLE_MQTT_URL is refused: an example value")

    @property
    def token_generated(self) -> bool:
        return self.admin_token is None
