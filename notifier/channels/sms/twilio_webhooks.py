"""Twilio's webhooks: the incoming-message webhook and the status callback, both form-encoded
and signed with X-Twilio-Signature; an incoming text is answered with TwiML."""

from __future__ import annotations

from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from .. import (
    DeliveryReceipt,
    ForgedRequest,
    InboundText,
    OptOutKind,
    ReceiptStatus,
    WebhookRequest,
)
from .twilio_codes import reason_for

# With Advanced Opt-Out, OptOutType names the kind of keyword Twilio matched, whatever the word.
OPT_OUT_TYPES: dict[str, OptOutKind] = {"stop": "stop", "start": "start", "help": "help"}
# Twilio's final MessageStatus values; the others (queued, sent…) are not passed on.
FINAL: dict[str, ReceiptStatus] = {
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
}


class TwilioWebhooks:
    media_type = "application/xml"

    def __init__(self, auth_token: str | None) -> None:
        # No token, no webhook: without it no request can be told from a forged one.
        self.validator = RequestValidator(auth_token) if auth_token else None

    def inbound(self, request: WebhookRequest) -> InboundText:
        form = self._form(request)
        return InboundText(
            provider_id=form.get("MessageSid", ""),
            sender=form.get("From", ""),
            to=form.get("To", ""),
            body=form.get("Body", ""),
            opt_out=OPT_OUT_TYPES.get(form.get("OptOutType", "").strip().lower()),
        )

    def receipt(self, request: WebhookRequest) -> DeliveryReceipt | None:
        form = self._form(request)
        status, sid = FINAL.get(form.get("MessageStatus", "")), form.get("MessageSid", "")
        if status is None or not sid:
            return None
        code = form.get("ErrorCode") or None
        reason = None if status == "delivered" else reason_for(code)
        return DeliveryReceipt(sid, status, code, reason)

    def answer(self, text: str | None) -> str:
        twiml = MessagingResponse()
        if text:
            twiml.message(text)
        return str(twiml)

    def _form(self, request: WebhookRequest) -> dict[str, str]:
        """The webhook's form, once its X-Twilio-Signature proves Twilio sent it to this URL."""
        params = twilio_params(request.body)
        signature = request.headers.get("x-twilio-signature", "")
        if self.validator is None or not self.validator.validate(request.url, params, signature):
            raise ForgedRequest("bad or missing X-Twilio-Signature")
        return first_values(params)


class TwilioParams(dict[str, list[str]]):
    """Every field of a webhook's form as Twilio sent it, the signature's input: blank values
    (an SMS's unknown FromCity, an MMS's Body, a receipt's ErrorCode) and repeated keys kept,
    in order. The SDK reads a field's values with `getlist`, as on Django's QueryDict."""

    def getlist(self, key: str) -> list[str]:
        return self[key]


def twilio_params(body: bytes) -> TwilioParams:
    params = TwilioParams()
    for key, value in parse_qsl(body.decode(errors="replace"), keep_blank_values=True):
        params.setdefault(key, []).append(value)
    return params


def first_values(params: TwilioParams) -> dict[str, str]:
    """The form as it is read: one value per field, the first one sent."""
    return {key: values[0] for key, values in params.items()}
