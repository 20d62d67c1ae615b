"""Why a message failed, in words a receptionist can act on: the provider's code read through
a table (Twilio's for texts, SMTP's for email), else the reason the channel recorded."""

from __future__ import annotations

from .sms.twilio_codes import words_for

# SMTP reply codes (RFC 5321, and what mail servers commonly mean by them).
SMTP_WORDS = {
    421: "mail server busy, will try again",
    450: "mailbox busy or unavailable for now",
    451: "mail server error, will try again",
    452: "mail server out of space, will try again",
    521: "the patient's mail server takes no email",
    535: "the clinic's mail login was refused",
    541: "refused as spam by the patient's mail server",
    550: "mailbox does not exist",
    551: "mailbox does not exist here (moved)",
    552: "mailbox full",
    553: "not a valid email address",
    554: "refused by the patient's mail server",
    556: "the address's domain takes no email",
}
# The reasons channels record (`SendError.reason`, delivery receipts), for a code not above.
REASON_WORDS = {
    "invalid_number": "not a valid phone number",
    "invalid_sender": "the clinic's sending number is not valid",
    "region_not_enabled": "texts to this country are not enabled",
    "opted_out": "patient opted out at the carrier",
    "unreachable": "phone off or out of coverage",
    "not_mobile": "landline or can't receive texts",
    "blocked": "message blocked",
    "unknown_number": "unknown number",
    "filtered": "blocked as spam by the carrier",
    "undeliverable": "could not be delivered",
}


def in_plain_words(channel: str, code: str | None, reason: str | None) -> str:
    """The failure's cause for staff; empty when neither the code nor the reason says one."""
    if channel == "sms":
        words = words_for(code)
    else:
        words = SMTP_WORDS.get(int(code)) if code and code.isdigit() else None
    return words or REASON_WORDS.get(reason or "", "")
