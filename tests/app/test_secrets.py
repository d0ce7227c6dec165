"""Secrets stay secret: the banner never prints a configured token or an MQTT password, weak or example
secrets are refused outside the demo, and every log line leaves with phones masked and secrets removed."""

from __future__ import annotations

import io
import logging

import pytest

from app.console import banner, install_redaction, without_credentials
from whistle.privacy import RedactingFilter, mask_phones_in, redact_secrets
from whistle.settings import Settings, SettingsError


def test_the_banner_never_prints_a_configured_token_nor_the_mqtt_password(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 15: the banner printed a configured admin token and the MQTT URL with its password."""
    configured = Settings(admin_token="a-configured-admin-token-3f9c2a", http="127.0.0.1:8080")
    banner(configured, "mqtt://whistle-collector:s3cret-broker-pass@10.0.0.5:1884")
    out = capsys.readouterr().out
    assert "a-configured-admin-token-3f9c2a" not in out and "s3cret-broker-pass" not in out
    assert "mqtt://10.0.0.5:1884" in out and "#token=" not in out
    generated = Settings(http="127.0.0.1:8080")  # nothing configured: a token for this run, shown this once
    banner(generated, "mqtt://127.0.0.1:1883")
    out = capsys.readouterr().out
    assert f"#token={generated.token}" in out and "generated for this run" in out


def test_without_credentials() -> None:
    assert without_credentials("mqtt://u:p@host:1883") == "mqtt://host:1883"
    assert without_credentials("mqtt://host:1883") == "mqtt://host:1883"
    assert without_credentials("mqtt://u%40x:p%3A@[::1]:1883/") == "mqtt://[::1]:1883/"


@pytest.mark.parametrize(
    "token", ["short", "changeme-changeme", "aaaaaaaaaaaaaaaaaaaa", "abababababababababab", "password0000000000"]
)
def test_weak_or_example_admin_tokens_are_refused_outside_the_demo(token: str) -> None:
    with pytest.raises(SettingsError, match="WHISTLE_ADMIN_TOKEN is refused"):
        _ = Settings(admin_token=token).token
    assert Settings(admin_token=token, demo=True).token == token


def test_an_example_mqtt_password_is_refused() -> None:
    with pytest.raises(SettingsError, match="WHISTLE_MQTT_URL"):
        Settings(admin_token="a-good-long-token-4c8e1b", mqtt_url="mqtt://whistle:changeme@h:1883").check_secrets()
    Settings(admin_token="a-good-long-token-4c8e1b", mqtt_url="mqtt://w:Xq7-long-r4ndom@h:1883").check_secrets()
    Settings(mqtt_url="mqtt://whistle:changeme@h:1883", demo=True).check_secrets()


def test_log_lines_leave_without_phones_or_secrets() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.redaction")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    install_redaction(logger)
    install_redaction(logger)  # once is enough
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    try:
        logger.warning("call %s about %s", "+8613812345678", "13912345678")
        logger.warning("GET /x Authorization: Bearer dw_abcdefghijklmnopqrstuvwxyz0123456789")
        logger.warning("connecting to %s", "mqtt://collector:hunter2-long@10.0.0.5:1884")
        logger.warning("opened http://127.0.0.1:8080/#token=abcdef0123456789 and ?token=zyxw9876")
        try:
            raise ValueError("no route to +8613700000000")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    for secret in ("13812345678", "13912345678", "dw_abcdef", "hunter2-long", "abcdef0123456789", "zyxw9876"):
        assert secret not in text, (secret, text)
    assert "13700000000" not in text and "+86137****0000" in text
    assert "+86138****5678" in text and "mqtt://collector:[redacted]@10.0.0.5:1884" in text


def test_masking_helpers() -> None:
    assert mask_phones_in("家属 +8613800000000，或 13900001111") == "家属 +86138****0000，或 139****1111"
    assert redact_secrets("password=abc&x=1") == "password=[redacted]&x=1"
