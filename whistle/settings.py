"""One settings object per process, read once from the environment (CONTRACT.md §5)."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_TOKEN_LENGTH = 16


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

    # the operations-center screen (api/static/index.html, stats/)
    screen_tiles_url: str | None = Field(
        default=None, description="a self-hosted XYZ tile URL template ({z}/{x}/{y}); unset: no basemap"
    )
    screen_tiles_crs: Literal["gcj02", "wgs84"] = "gcj02"
    screen_poll_s: float = Field(default=15.0, ge=1.0, le=3600.0)
    low_battery_pct: float = Field(default=20.0, ge=0.0, le=100.0)

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
        if len(value) < MIN_TOKEN_LENGTH and not self.demo:
            raise SettingsError(f"WHISTLE_ADMIN_TOKEN must be at least {MIN_TOKEN_LENGTH} characters")
        return value

    @property
    def token_generated(self) -> bool:
        return self.admin_token is None
