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


# What staff read for a Twilio error code: the cause in plain words, not Twilio's.
WORDS = {
    21211: "not a valid phone number",
    21212: "the clinic's sending number is not valid",
    21408: "texts to this country are not enabled",
    21610: "patient opted out at the carrier",
    21612: "the carrier cannot reach this number",
    21614: "not a mobile number",
    30001: "too many texts at once (Twilio's queue was full)",
    30002: "the clinic's Twilio account is suspended",
    30003: "phone off or out of coverage",
    30004: "message blocked",
    30005: "unknown number",
    30006: "landline or can't receive texts",
    30007: "blocked as spam by the carrier",
    30008: "unknown error",
    30032: "the clinic's toll-free number is not verified",
    30034: "the clinic's number is not registered for texting (A2P 10DLC)",
}


def words_for(code: str | None) -> str | None:
    """A Twilio error code in plain words, if we know it."""
    return WORDS.get(int(code)) if code and code.isdigit() else None


def reason_for(code: str | None) -> str | None:
    """The reason for a failure code from a delivery receipt, if Twilio's code says one."""
    return REASONS.get(int(code)) if code and code.isdigit() else None
