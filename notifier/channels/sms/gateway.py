"""SMS through a generic HTTP/JSON gateway: the smallest provider there can be, in the shape
most SMS gateways share.

Sending: `POST {base_url}/messages` with `Authorization: Bearer <api key>` and
`{"to", "from", "text", "reference", "status_url"}` (`reference`: our notification id) answers
201 `{"id": …}`; an error answers `{"error": {"code": …, "message": …}}`, 429 and 5xx meaning
"try again later". `GET {base_url}/messages?reference=…` lists `{"messages": [{"id", "to",
"text", "reference"}]}`: what the gateway took for that notification.

Webhooks are JSON, signed `X-Gateway-Signature: sha256=<hex HMAC-SHA256 of the body>` with
the webhook secret. An incoming text is `{"id", "from", "to", "text", "keyword"}`, `keyword`
being `stop`, `start` or `help` when the gateway's own opt-out handling matched one, and is
answered with `{"reply": text}` (the gateway sends it) or `{}`. A receipt is `{"id", "status",
"error"}`, `status` one of queued, sent, delivered, undelivered, failed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Collection
from typing import Any

import requests

from .. import (
    DeliveryReceipt,
    ForgedRequest,
    InboundText,
    Message,
    OptOutKind,
    ReceiptStatus,
    SendError,
    Unpaced,
    WebhookRequest,
)
from .http import CALL_FAILED, call_failed

# The gateway's error codes that no retry will fix, in the clinic's words.
REASONS = {
    "opted_out": "opted_out",
    "invalid_number": "invalid_number",
    "landline": "not_mobile",
    "unreachable": "unreachable",
}
KEYWORDS: dict[str, OptOutKind] = {"stop": "stop", "start": "start", "help": "help"}
FINAL: dict[str, ReceiptStatus] = {
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
}


class GatewaySMS(Unpaced):
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        from_number: str | None,
        status_url: str,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.from_number = from_number
        self.status_url = status_url
        self.timeout = timeout
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.headers["Authorization"] = f"Bearer {api_key}"

    def send(self, message: Message) -> str:
        sent = {
            "to": message.to,
            "from": message.sender or self.from_number,
            "text": message.text,
            "reference": str(message.notification_id),
            "status_url": self.status_url,
        }
        answer = self._call("POST", "/messages", json=sent)
        return str(answer["id"])

    def find(self, message: Message, known: Collection[str]) -> str | None:
        # The gateway keeps our reference: what it took for this notification is all there is.
        try:
            listed = self._call("GET", "/messages", params={"reference": message.notification_id})
        except SendError as exc:
            raise SendError("transient", f"could not list gateway messages: {exc}") from exc
        for item in listed.get("messages", []):
            if item.get("text") == message.text and item.get("id") not in known:
                return str(item["id"])
        return None

    def _call(self, method: str, path: str, **given: Any) -> dict[str, Any]:
        try:
            answer = self.http.request(method, self.base_url + path, timeout=self.timeout, **given)
        except CALL_FAILED as exc:
            raise call_failed(exc, "the SMS gateway") from exc
        if answer.status_code >= 400:
            raise refused(answer)
        body: dict[str, Any] = answer.json()
        return body


def refused(answer: requests.Response) -> SendError:
    try:
        error = answer.json().get("error") or {}
    except ValueError:  # a proxy's HTML page, say
        error = {}
    code = str(error.get("code") or answer.status_code)
    text = f"SMS gateway {answer.status_code}: {error.get('message', answer.reason)}"
    # Credentials staff can fix and rate limits are worth waiting for, as the gateway's errors.
    if answer.status_code in (401, 403, 429) or answer.status_code >= 500:
        return SendError("transient", text, code)
    return SendError("permanent", text, code, REASONS.get(code))


class GatewayWebhooks:
    media_type = "application/json"

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()

    def inbound(self, request: WebhookRequest) -> InboundText:
        sent = self._verified(request)
        return InboundText(
            provider_id=str(sent.get("id", "")),
            sender=str(sent.get("from", "")),
            to=str(sent.get("to", "")),
            body=str(sent.get("text") or ""),
            opt_out=KEYWORDS.get(str(sent.get("keyword") or "").lower()),
        )

    def receipt(self, request: WebhookRequest) -> DeliveryReceipt | None:
        sent = self._verified(request)
        status, message_id = FINAL.get(str(sent.get("status"))), str(sent.get("id") or "")
        if status is None or not message_id:
            return None
        code = (sent.get("error") or {}).get("code")
        reason = None if status == "delivered" else REASONS.get(str(code))
        return DeliveryReceipt(message_id, status, str(code) if code else None, reason)

    def answer(self, text: str | None) -> str:
        return json.dumps({"reply": text} if text else {})

    def sign(self, body: bytes) -> str:
        """The signature the gateway sends with `body`."""
        return "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()

    def _verified(self, request: WebhookRequest) -> dict[str, Any]:
        given = request.headers.get("x-gateway-signature", "").encode()
        if not hmac.compare_digest(given, self.sign(request.body).encode()):
            raise ForgedRequest("bad or missing X-Gateway-Signature")
        try:
            sent = json.loads(request.body)
        except ValueError as exc:
            raise ForgedRequest(f"a signed body that is not JSON: {exc}") from None
        if not isinstance(sent, dict):
            raise ForgedRequest("a signed body that is not a JSON object")
        return sent
