"""Doors for other booking systems (FHIR R4, Cal.com): each turns what the system sends into the
contract's booking event and hands it to the same ingest path as `POST /v1/events`."""

import re
from dataclasses import dataclass
from typing import Any

# The primary subtag of a BCP 47 tag: "es" of "es-US", "pt" of "pt_BR"; not "fil" (no two-letter
# code, and cutting it to "fi" would be Finnish).
_PRIMARY_LANGUAGE = re.compile(r"^([A-Za-z]{2})(?:[-_]|$)")


@dataclass(frozen=True)
class Ignored:
    """A well-formed message that asks nothing of us (a proposal, a ping): answered 200,
    nothing stored, so the sender neither retries it nor switches the feed off."""

    reason: str


@dataclass(frozen=True)
class WaitlistWish:
    """A message that puts a patient on the waitlist (a FHIR Appointment with status
    `waitlist`): the entry as `POST /v1/waitlist` takes it."""

    entry: dict[str, Any]


def primary_language(tag: str | None) -> str | None:
    match = _PRIMARY_LANGUAGE.match(tag or "")
    return match.group(1).lower() if match else None


def error_reason(error: Any) -> str:
    """The reason of one pydantic error, as a sender would want to read it."""
    if str(error["type"]).endswith(
        "missing"
    ):  # fhir.resources says "model_field_validation.missing"
        return "required"
    return str(error["msg"]).removeprefix("Value error, ")
