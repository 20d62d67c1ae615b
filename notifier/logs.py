"""Logging for every process: no phone number or email address reaches a log in full."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

PHONE = re.compile(r"\+\d{7,15}")
# The secret part of a patient's link (/links/<token>, and an unsubscribe link's): whoever reads
# the access log must not be able to open the patient's page.
LINK_TOKEN = re.compile(r"(/(?:links|unsubscribe)/)[^/?#\s\"]+")
EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
HIDDEN = "•••"  # what stands in a log for the part of a number, address or token it hides


def mask(text: str) -> str:
    """+17185550134 → +1718•••0134, ana@example.org → a•••@example.org, /links/<token> →
    /links/••• (and an unsubscribe link's token alike)."""
    text = PHONE.sub(lambda m: m.group()[:5] + "•••" + m.group()[-4:], text)
    text = LINK_TOKEN.sub(rf"\1{HIDDEN}", text)
    return EMAIL.sub(r"\1•••@\2", text)


class MaskingFilter(logging.Filter):
    """Masks the formatted message of every record, whoever logged it (a library's error
    message may quote the number it refused)."""

    def filter(self, record: logging.LogRecord) -> bool:
        masked = mask(record.getMessage())
        if masked != record.getMessage():
            record.msg, record.args = masked, None
        return True


def utc_time(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC to the millisecond: 2026-12-02T16:05:09.123Z."""
    at = datetime.fromtimestamp(record.created, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return utc_time(record)


class LinkTokenFilter(logging.Filter):
    """uvicorn's access log names each request's path: a link's token is cut out of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                LINK_TOKEN.sub(rf"\1{HIDDEN}", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object a line, for log shippers (NOTIFIER_LOG_FORMAT=json). An event-log line
    (`eventlog`) also carries its event and its fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": utc_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if isinstance(event := getattr(record, "event", None), str):
            entry["event"] = event
            fields = getattr(record, "fields", {})
            entry |= {k: mask(v) if isinstance(v, str) else v for k, v in fields.items()}
        if record.exc_info:
            entry["exception"] = mask(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: int, structured: bool = False) -> None:
    logging.basicConfig(level=level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskingFilter())
        handler.setFormatter(JSONFormatter() if structured else TextFormatter(TEXT_FORMAT))
    # The twilio SDK logs each request's parameters (number and text) at INFO; the clock's
    # scheduler logs two lines a second.
    for chatty in ("twilio", "apscheduler"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, LinkTokenFilter) for f in access.filters):
        access.addFilter(LinkTokenFilter())
