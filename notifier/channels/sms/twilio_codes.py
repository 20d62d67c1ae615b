"""What Twilio's error codes mean for a patient's number: read by the sender and by the
webhooks, without the SDK's REST client."""

from __future__ import annotations

# Twilio errors that no retry will fix, and what each means for the patient's number.
REASONS = {
    21211: "invalid_number",
    21212: "invalid_sender",
    21408: "region_not_enabled",
    21610: "opted_out",
    21612: "unreachable",
    21614: "not_mobile",
    30003: "unreachable",
    30004: "blocked",
    30005: "unknown_number",
    30006: "not_mobile",
    30007: "filtered",
}


def reason_for(code: str | None) -> str | None:
    """The reason for a failure code from a delivery receipt, if Twilio's code says one."""
    return REASONS.get(int(code)) if code and code.isdigit() else None
