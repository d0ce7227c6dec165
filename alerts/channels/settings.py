"""Channel configuration from the environment: one settings class per channel, read once, frozen.

A channel none of whose variables are set is absent. A channel with some of its required
variables set and others not is a `SettingsError` naming what is missing: a half-configured
SMS provider must stop the process at start, not fail quietly at the first fire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time, tzinfo
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from alerts.channels.text import TEMPLATE_FIELDS
from whistle.domain import Severity
from whistle.settings import FileSettings, SettingsError
from whistle.timeutil import CHINA_TZ


def _is_set(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    return value != ""


class ChannelConfig(FileSettings):
    """Base: `REQUIRED` fields must all be set once any of `REQUIRED + TRIGGERS` is. Each variable may
    instead name a file holding the value: `WHISTLE_SMS_ALIYUN_ACCESS_KEY_SECRET_FILE=/run/secrets/...`."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    REQUIRED: ClassVar[tuple[str, ...]] = ()
    TRIGGERS: ClassVar[tuple[str, ...]] = ()

    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @classmethod
    def env_name(cls, field_name: str) -> str:
        return f"{cls.model_config.get('env_prefix', '')}{field_name}".upper()

    def configured(self) -> bool:
        """False when nothing is set, True when all that is required is; raises when only part of it is."""
        wanted = self.REQUIRED + self.TRIGGERS
        present = [f for f in wanted if _is_set(getattr(self, f))]
        if not present:
            return False
        missing = [f for f in self.REQUIRED if not _is_set(getattr(self, f))]
        if missing:
            have = ", ".join(self.env_name(f) for f in present)
            need = ", ".join(self.env_name(f) for f in missing)
            raise SettingsError(f"{need} must be set as well, since {have} is: set all of them or none")
        return True


def _template_params(value: str) -> str:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in TEMPLATE_FIELDS]
    if unknown:
        raise ValueError(f"unknown template fields {unknown}; known: {', '.join(TEMPLATE_FIELDS)}")
    return ",".join(names)


class AliyunSmsSettings(ChannelConfig):
    """Alibaba Cloud SMS (dysmsapi SendSms 2017-05-25), V3 signature."""

    model_config = SettingsConfigDict(env_prefix="WHISTLE_SMS_ALIYUN_", frozen=True, extra="ignore")
    REQUIRED = ("access_key_id", "access_key_secret", "sign_name", "template_code")

    access_key_id: str | None = None
    access_key_secret: SecretStr | None = None
    sign_name: str | None = None  # the approved signature, e.g. 数字吹哨
    template_code: str | None = None  # e.g. SMS_123456789
    template_params: str = "kind,title,code,link"  # variables, named as in the template: 回复${code}接单 ${link}
    param_max_chars: int = Field(default=35, gt=0)
    endpoint: str = "https://dysmsapi.aliyuncs.com/"

    @field_validator("template_params")
    @classmethod
    def _check_params(cls, value: str) -> str:
        return _template_params(value)


class TencentSmsSettings(ChannelConfig):
    """Tencent Cloud SMS (SendSms 2021-01-11), TC3-HMAC-SHA256 signature."""

    model_config = SettingsConfigDict(env_prefix="WHISTLE_SMS_TENCENT_", frozen=True, extra="ignore")
    REQUIRED = ("secret_id", "secret_key", "sdk_app_id", "sign_name", "template_id")

    secret_id: str | None = None
    secret_key: SecretStr | None = None
    sdk_app_id: str | None = None  # e.g. 1400006666
    sign_name: str | None = None
    template_id: str | None = None
    template_params: str = "kind,title,code,link"  # positional {1}…{4}: {1}：{2}，回复{3}接单，或点击{4}
    param_max_chars: int = Field(default=35, gt=0)
    region: str = "ap-guangzhou"
    endpoint: str = "https://sms.tencentcloudapi.com/"

    @field_validator("template_params")
    @classmethod
    def _check_params(cls, value: str) -> str:
        return _template_params(value)


class WebPushSettings(ChannelConfig):
    """Web Push (RFC 8030) with VAPID (RFC 8292); subscriptions come with each recipient."""

    model_config = SettingsConfigDict(env_prefix="WHISTLE_WEBPUSH_", frozen=True, extra="ignore")
    REQUIRED = ("vapid_private_key", "vapid_subject")

    vapid_private_key: SecretStr | None = None  # base64url of the 32-byte P-256 scalar, or a PEM
    vapid_subject: str | None = None  # mailto:ops@example.org or https://...
    ttl_s: int = Field(default=12 * 3600, ge=0, le=28 * 24 * 3600)
    allow_http: bool = False  # accept http:// endpoints (tests, closed networks); never on the internet

    @field_validator("vapid_subject")
    @classmethod
    def _check_subject(cls, value: str | None) -> str | None:
        if value and not value.startswith(("mailto:", "https://")):
            raise ValueError("WHISTLE_WEBPUSH_VAPID_SUBJECT must be a mailto: or https: URI (RFC 8292)")
        return value


class DingTalkSettings(ChannelConfig):
    """DingTalk custom group robot; `secret` is the robot's 加签 secret (SEC...)."""

    model_config = SettingsConfigDict(env_prefix="WHISTLE_DINGTALK_", frozen=True, extra="ignore")
    REQUIRED = ("webhook",)
    TRIGGERS = ("secret",)

    webhook: SecretStr | None = None  # https://oapi.dingtalk.com/robot/send?access_token=...
    secret: SecretStr | None = None
    mention: bool = True  # @ the recipient by phone number


class WeComSettings(ChannelConfig):
    """WeCom (企业微信) group robot."""

    model_config = SettingsConfigDict(env_prefix="WHISTLE_WECOM_", frozen=True, extra="ignore")
    REQUIRED = ("key",)

    key: SecretStr | None = None
    endpoint: str = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"


class WebhookSettings(ChannelConfig):
    """A generic signed JSON webhook to another system."""

    model_config = SettingsConfigDict(env_prefix="WHISTLE_WEBHOOK_", frozen=True, extra="ignore")
    REQUIRED = ("url", "secret")

    url: str | None = None
    secret: SecretStr | None = None
    include_contact: bool = False  # send the recipient's name and phone in full (else masked)


class LiveSettings(FileSettings):
    """The in-process live feed (WebSocket fan-out); always present."""

    model_config = SettingsConfigDict(env_prefix="WHISTLE_LIVE_", frozen=True, extra="ignore")

    queue_size: int = Field(default=256, gt=0, le=100_000)


_HHMM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_quiet_hours(value: str) -> tuple[time, time] | None:
    """Parse a daily window: 22:00-07:00 -> (22:00, 07:00); empty or "off" -> None."""
    if value.strip().lower() in ("", "off", "none"):
        return None
    m = _HHMM.match(value)
    if not m:
        raise ValueError(f"quiet hours must look like 22:00-07:00, got {value!r}")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f"quiet hours out of range: {value!r}")
    return time(h1, m1), time(h2, m2)


class DeliverySettings(FileSettings):
    """Retries, failover, per-recipient rate and quiet hours (see docs/NOTIFICATIONS.md)."""

    model_config = SettingsConfigDict(env_prefix="WHISTLE_NOTIFY_", frozen=True, extra="ignore")

    max_attempts: int = Field(default=3, ge=1, le=10)
    critical_max_attempts: int = Field(default=2, ge=1, le=10)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_cap_s: float = Field(default=30.0, gt=0)
    attempt_timeout_s: float = Field(default=20.0, gt=0)
    quiet_hours: str = "22:00-07:00"
    timezone: str = "Asia/Shanghai"
    rate_burst: int = Field(default=5, ge=1)
    rate_per_hour: float = Field(default=20.0, gt=0)
    # hard caps counted in PostgreSQL across processes (alerts.caps); 0: no cap
    recipient_max_per_hour: int = Field(default=20, ge=0)
    sms_max_per_hour: int = Field(default=200, ge=0)
    # delivered means seen (docs/NOTIFICATIONS.md): on these channels a notification of these severities
    # counts only once the worker's page confirms it was shown, or after this long goes to the next channel
    receipt_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    receipt_channels: str = "live,webpush"
    receipt_severities: str = "critical"

    @field_validator("quiet_hours")
    @classmethod
    def _check_quiet(cls, value: str) -> str:
        parse_quiet_hours(value)
        return value

    @field_validator("receipt_severities")
    @classmethod
    def _check_receipt_severities(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        known = {s.value for s in Severity}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown severities {unknown}; known: {', '.join(sorted(known))}")
        return ",".join(names)

    @property
    def receipt_channel_names(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.receipt_channels.split(",") if n.strip())

    @property
    def receipt_severity_set(self) -> frozenset[Severity]:
        return frozenset(Severity(n) for n in self.receipt_severities.split(",") if n)

    @property
    def tz(self) -> tzinfo:
        if self.timezone == "Asia/Shanghai":
            return CHINA_TZ  # no DST since 1991; no tzdata needed
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise SettingsError(f"WHISTLE_NOTIFY_TIMEZONE: unknown time zone {self.timezone!r}") from exc


@dataclass(frozen=True)
class ChannelSettings:
    """All channel settings of a process; `ChannelSettings()` reads the environment."""

    aliyun: AliyunSmsSettings = field(default_factory=AliyunSmsSettings)
    tencent: TencentSmsSettings = field(default_factory=TencentSmsSettings)
    webpush: WebPushSettings = field(default_factory=WebPushSettings)
    dingtalk: DingTalkSettings = field(default_factory=DingTalkSettings)
    wecom: WeComSettings = field(default_factory=WeComSettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    live: LiveSettings = field(default_factory=LiveSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
