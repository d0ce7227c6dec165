from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from alerts.channels.settings import AliyunSmsSettings
from whistle.settings import Settings, SettingsError
from whistle.timeutil import format_ms, parse_rfc3339


def test_environment_names_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISTLE_MQTT_URL", "mqtt://u:p@127.0.0.1:1884")
    monkeypatch.setenv("WHISTLE_DATABASE_URL", "postgresql://x@127.0.0.1/db")
    monkeypatch.setenv("WHISTLE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    monkeypatch.setenv("WHISTLE_HTTP", "127.0.0.1:9090")
    monkeypatch.setenv("WHISTLE_ADMIN_TOKEN", "a-long-enough-admin-token")
    s = Settings()
    assert s.mqtt_url == "mqtt://u:p@127.0.0.1:1884"
    assert s.database_url == "postgresql://x@127.0.0.1/db"
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert (s.http_host, s.http_port) == ("127.0.0.1", 9090)
    assert s.token == "a-long-enough-admin-token"
    assert not s.token_generated


def test_unset_means_embedded_and_a_generated_token(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MQTT_URL", "DATABASE_URL", "KAFKA_BOOTSTRAP", "ADMIN_TOKEN"):
        monkeypatch.delenv(f"WHISTLE_{name}", raising=False)
    s = Settings()
    assert s.mqtt_url is None and s.database_url is None and s.kafka_bootstrap is None
    assert s.token_generated and len(s.token) >= 16
    assert s.token == s.token  # generated once per settings object


def test_weak_admin_token_refused_outside_the_demo() -> None:
    with pytest.raises(SettingsError):
        _ = Settings(admin_token="short").token
    assert Settings(admin_token="short", demo=True).token == "short"


def test_bad_http_address_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="host:port"):
        Settings(http="8080")


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.http = "0.0.0.0:1"  # type: ignore[misc]


def test_rfc3339_round_trip_and_offsets() -> None:
    assert parse_rfc3339("2026-11-24T08:15:00+08:00") == parse_rfc3339("2026-11-24T00:15:00Z")
    assert format_ms(parse_rfc3339("2026-11-24T08:15:00.123+08:00")) == "2026-11-24T00:15:00.123Z"
    with pytest.raises(ValueError, match="offset"):
        parse_rfc3339("2026-11-24T08:15:00")


def test_a_setting_can_be_read_from_the_file_its_FILE_variable_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = tmp_path / "database_url"
    url.write_text("postgresql://whistle:s3cret@db:5432/whistle\n")  # as `echo ... > file` leaves it
    token = tmp_path / "admin_token"
    token.write_text("a-long-enough-admin-token-from-a-file")
    monkeypatch.delenv("WHISTLE_DATABASE_URL", raising=False)
    monkeypatch.delenv("WHISTLE_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("WHISTLE_DATABASE_URL_FILE", str(url))
    monkeypatch.setenv("WHISTLE_ADMIN_TOKEN_FILE", str(token))
    monkeypatch.setenv("WHISTLE_PARTITIONS", "12")
    s = Settings()
    assert s.database_url == "postgresql://whistle:s3cret@db:5432/whistle"
    assert s.token == "a-long-enough-admin-token-from-a-file"
    assert s.partitions == 12  # plain variables still work beside files
    # and for the channels' settings classes
    secret = tmp_path / "aliyun"
    secret.write_text("aliyun-secret")
    monkeypatch.setenv("WHISTLE_SMS_ALIYUN_ACCESS_KEY_SECRET_FILE", str(secret))
    aliyun = AliyunSmsSettings()
    assert aliyun.access_key_secret is not None and aliyun.access_key_secret.get_secret_value() == "aliyun-secret"


def test_a_variable_and_its_FILE_twin_together_or_an_unreadable_file_are_errors_naming_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    f = tmp_path / "mqtt_url"
    f.write_text("mqtt://c:p@broker:1883")
    monkeypatch.setenv("WHISTLE_MQTT_URL", "mqtt://other@broker:1883")
    monkeypatch.setenv("WHISTLE_MQTT_URL_FILE", str(f))
    with pytest.raises(SettingsError, match="set WHISTLE_MQTT_URL or WHISTLE_MQTT_URL_FILE, not both"):
        Settings()
    monkeypatch.delenv("WHISTLE_MQTT_URL")
    monkeypatch.setenv("WHISTLE_MQTT_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match="WHISTLE_MQTT_URL_FILE: cannot read"):
        Settings()


def test_the_worker_pages_settings() -> None:
    s = Settings(http="10.0.0.5:8080")
    assert (s.base_url, s.arrive_radius_m, s.one_tap_ttl_hours, s.link_key) == (
        "http://10.0.0.5:8080",
        200.0,
        24.0,
        None,
    )
    assert Settings(public_url="https://dw.example.gov.cn/").base_url == "https://dw.example.gov.cn"
    for bad in ("ftp://dw.example.gov.cn", "https://dw.example.gov.cn/?x=1", "dw.example.gov.cn"):
        with pytest.raises(ValueError, match="WHISTLE_PUBLIC_URL"):
            Settings(public_url=bad)
    key = "a-long-random-link-secret-7d1f0c9b5e3a2f4c"
    assert Settings(link_secret=key, admin_token="a-good-long-token-4c8e1b").link_key == key.encode()
    with pytest.raises(SettingsError, match="WHISTLE_LINK_SECRET"):
        Settings(link_secret="short", admin_token="a-good-long-token-4c8e1b").check_secrets()
    with pytest.raises(SettingsError, match="WHISTLE_SMS_REPLY_KEY"):
        Settings(sms_reply_key="secret", admin_token="a-good-long-token-4c8e1b").check_secrets()
    Settings(link_secret="short", demo=True).check_secrets()  # the demo takes anything
