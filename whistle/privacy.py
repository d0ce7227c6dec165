"""Personal data and secrets kept out of logs and shared screens: masking, and a logging filter.

Residents' names and phone numbers are masked wherever they are not needed in full (a screen, a
log line, a delivery record); only the request to an SMS provider and a grid worker reading the
contacts of a ticket assigned to them see them in full. Secrets (bearer tokens, passwords in
MQTT URLs, session cookies) never reach a log line at all.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_MAINLAND_MOBILE = re.compile(r"1\d{10}")
_PHONE_LIKE = re.compile(r"\+?\d[\d\- ]{8,}\d")
# A phone as the registry stores it (E.164), and mainland mobiles written without the country code.
PHONE_IN_TEXT = re.compile(r"\+[1-9]\d{6,14}|(?<!\d)1[3-9]\d{9}(?!\d)")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")

_SECRETS = (
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]{6,}"), r"\1[redacted]"),
    (re.compile(r"(?i)((?:token|password|passwd|secret|session)=)[^\s&#\"']+"), r"\1[redacted]"),
    (re.compile(r"(?i)(#token=)[^\s&\"']+"), r"\1[redacted]"),
    (re.compile(r"((?:mqtts?|tcp|ssl|wss?|postgres(?:ql)?)://[^:/@\s]*:)[^@\s]+(@)"), r"\1[redacted]\2"),
)


def mask_phone(phone: str | None) -> str:
    """Mask a phone number: +8613812345678 -> +86138****5678, 13812345678 -> 138****5678;
    other numbers keep at most their first three and last two digits."""
    if not phone:
        return "-"
    text = phone.strip().replace(" ", "").replace("-", "")
    prefix = ""
    for cc in ("+86", "0086"):
        if text.startswith(cc):
            prefix, text = cc, text[len(cc) :]
            break
    else:
        if text.startswith("+"):
            prefix, text = "+", text[1:]
    if prefix != "+" and _MAINLAND_MOBILE.fullmatch(text):
        return f"{prefix}{text[:3]}****{text[-4:]}"
    if len(text) >= 7:
        return f"{prefix}{text[:3]}****{text[-2:]}"
    return f"{prefix}****"


def mask_name(name: str | None) -> str:
    """Mask a name: 王小明 -> 王*明, 欧阳小明 -> 欧**明, 王五 -> 王*, 王 -> *."""
    if not name:
        return "-"
    text = name.strip()
    if len(text) <= 1:
        return "*"
    if len(text) == 2:
        return text[0] + "*"
    return text[0] + "*" * (len(text) - 2) + text[-1]


def redact(text: str | None, limit: int = 300) -> str | None:
    """Mask anything that looks like a phone number in free text (provider error messages), and cut it."""
    if text is None:
        return None
    masked = _PHONE_LIKE.sub(lambda m: mask_phone(m.group(0)), text)
    return masked if len(masked) <= limit else masked[: limit - 1] + "…"


def mask_phones_in(text: str) -> str:
    """Free text with every phone number in it masked (a note typed by a worker, shown on a screen)."""
    return PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)


def redact_secrets(text: str) -> str:
    """Free text without bearer tokens, `token=`/`password=` values or the password of a URL."""
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return text


def mask_json(value: Any) -> Any:
    """A JSON value with phone numbers masked in every string in it."""
    if isinstance(value, str):
        return mask_phones_in(value)
    if isinstance(value, list):
        return [mask_json(v) for v in value]
    if isinstance(value, dict):
        return {k: mask_json(v) for k, v in value.items()}
    return value


class RedactingFilter(logging.Filter):
    """A handler filter: every record leaves with phones masked and secrets removed, whoever logged it.

    The parts of the product mask names themselves (names cannot be recognised in free text); this
    filter is the net under them for phones and secrets, including in third-party libraries' lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = redact_secrets(mask_phones_in(message))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(mask_phones_in(record.exc_text))
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True
