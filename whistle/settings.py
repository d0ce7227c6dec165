"""One settings object per process, read once from the environment (CONTRACT.md §5)."""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

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


class FileValues(PydanticBaseSettingsSource):
    """`<VARIABLE>_FILE=/path`: the setting `<VARIABLE>` read from that file, for Docker and Compose secrets
    (`/run/secrets/...`) that must not sit in the environment. The file's content is the value, without its
    final newline. Setting both `<VARIABLE>` and `<VARIABLE>_FILE` is an error, as in the official images."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix", ""))
        env = {k.upper(): v for k, v in os.environ.items()}
        fields = self.settings_cls.model_fields
        values: dict[str, Any] = {}
        for name in fields:
            if f"{name}_file" in fields:
                continue  # `<X>_FILE` is a setting of its own there
            var = f"{prefix}{name}".upper()
            path = env.get(f"{var}_FILE")
            if not path:
                continue
            if env.get(var):
                raise SettingsError(f"set {var} or {var}_FILE, not both")
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{var}_FILE: cannot read {path}: {exc}") from exc
            values[name] = text.removesuffix("\n").removesuffix("\r")
        return values


class FileSettings(BaseSettings):
    """Settings read from the environment, each also from a file named by `<VARIABLE>_FILE`."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, FileValues(settings_cls), dotenv_settings, file_secret_settings)


class Settings(FileSettings):
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
    mqtt_listen: str = Field(
        default="127.0.0.1:1883", description="where the embedded MQTT endpoint listens (without WHISTLE_MQTT_URL)"
    )
    mqtt_embedded: Literal["endpoint", "amqtt"] = "endpoint"
    mqtt_max_inflight: int = Field(default=1000, gt=0, description="unacknowledged messages per device connection")
    mqtt_client_id: str = "whistle-collector"
    collector_batch: int = Field(default=2000, gt=0)
    collector_linger_ms: int = Field(default=20, ge=0)

    # rules
    rules_file: Path | None = Field(default=None, description="YAML rule configuration; unset: the defaults")

    # bus
    bus: Literal["postgres", "memory", "kafka"] | None = Field(
        default=None,
        description="postgres: the durable log in the database (default without Kafka); memory: in-process only",
    )
    partitions: int = Field(default=8, gt=0)
    bus_retention_hours: float = Field(default=168.0, gt=0, description="the durable log keeps records this long")

    # storage
    db_pool_max: int = Field(default=8, gt=1)
    readings_retention_days: int = Field(default=400, gt=0)
    # hourly statistics on plain PostgreSQL (whistle.store.stats; TimescaleDB refreshes its own)
    stats_refresh_s: float = Field(default=600.0, gt=0)
    stats_lookback_hours: float = Field(default=48.0, gt=0)

    # alarm storms (alerts.storms): a building's or gateway's devices going offline together are one incident
    storm_wait_s: float = Field(default=900.0, ge=0, description="hold a device.offline alarm this long")
    storm_min_devices: int = Field(default=5, ge=2)
    storm_share: float = Field(default=0.5, gt=0, le=1)
    # no flapping reaches a worker (alerts.lifecycle.ReopenPolicy): a household or device-health alarm raised
    # again within this long (event time) of its rule's clear reopens that alarm and its ticket; 0: never
    alarm_reopen_window_s: float = Field(default=6 * 3600.0, ge=0)

    # containers: a heartbeat file for roles that serve no HTTP (`whistle health --file`)
    health_file: Path | None = None

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

    # the operations-center screen (api/static/index.html, stats/)
    screen_tiles_url: str | None = Field(
        default=None, description="a self-hosted XYZ tile URL template ({z}/{x}/{y}); unset: no basemap"
    )
    screen_tiles_crs: Literal["gcj02", "wgs84"] = "gcj02"
    screen_poll_s: float = Field(default=15.0, ge=1.0, le=3600.0)
    low_battery_pct: float = Field(default=20.0, ge=0.0, le=100.0)

    # the grid worker's page (/m/), one-tap links and SMS replies (README "The grid worker's page")
    arrive_radius_m: float = Field(
        default=200.0, gt=0, le=10_000, description="an arrival this close to the building counts as at the building"
    )
    public_url: str | None = Field(
        default=None, description="where workers' phones reach the service (links in messages); unset: http://HTTP"
    )
    link_secret: SecretStr | None = Field(
        default=None, description="the HMAC key of one-tap links; unset: one made once and kept in the database"
    )
    one_tap_ttl_hours: float = Field(default=24.0, gt=0, le=24 * 14, description="a one-tap link expires after this")
    sms_reply_key: SecretStr | None = Field(
        default=None, description="the key in the SMS providers' reply callback URLs; unset: replies are refused"
    )

    demo: bool = False
    # `whistle serve`: the roles as supervised child processes (both cores), or all in one (WHISTLE_SINGLE_PROCESS)
    single_process: bool = False
    collectors: int = Field(default=1, ge=1, le=16, description="collector processes of `whistle serve`")
    supervised: bool = Field(default=False, description="set by `whistle serve` for the roles it starts")
    deployment: str | None = Field(
        default=None, description="set by `whistle serve`: the supervisor its processes share (their /metrics)"
    )
    process_name: str | None = Field(default=None, description="set by `whistle serve`: this child's name")

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"WHISTLE_PUBLIC_URL must be an http(s) URL without query, got {value!r}")
        return value.rstrip("/")

    @property
    def base_url(self) -> str:
        """Where links in messages point: WHISTLE_PUBLIC_URL, else this process's own address."""
        return self.public_url or f"http://{self.http}"

    @cached_property
    def link_key(self) -> bytes | None:
        """The configured one-tap link key (None: the database keeps one); refused if weak outside the demo."""
        if self.link_secret is None:
            return None
        value = self.link_secret.get_secret_value()
        why = weak_secret(value, min_length=32)
        if why and not self.demo:
            raise SettingsError(f"WHISTLE_LINK_SECRET is refused: {why}")
        return value.encode()

    @field_validator("http")
    @classmethod
    def _check_http(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"WHISTLE_HTTP must be host:port, got {value!r}")
        return value

    @property
    def bus_kind(self) -> str:
        """The bus to use: the one asked for, else Kafka when a bootstrap is given, else the durable log."""
        if self.bus is not None:
            return self.bus
        return "kafka" if self.kafka_bootstrap else "postgres"

    @property
    def mqtt_listen_address(self) -> tuple[str, int]:
        host, sep, port = self.mqtt_listen.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise SettingsError(f"WHISTLE_MQTT_LISTEN must be host:port, got {self.mqtt_listen!r}")
        return host.strip("[]"), int(port)

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
        _ = self.link_key
        if self.sms_reply_key is not None:
            why = weak_secret(self.sms_reply_key.get_secret_value(), min_length=MIN_TOKEN_LENGTH)
            if why:
                raise SettingsError(f"WHISTLE_SMS_REPLY_KEY is refused: {why}")
        if self.mqtt_url:
            password = urlsplit(self.mqtt_url).password
            if password is not None and unquote(password).lower() in DEFAULT_SECRETS:
                raise SettingsError("the password in WHISTLE_MQTT_URL is refused: an example value")

    @property
    def token_generated(self) -> bool:
        return self.admin_token is None
