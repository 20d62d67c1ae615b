"""Twilio's webhooks, at the contract's URLs; what Twilio sends is read in its channel.

`inbound_text` and `receipt` are the same for every SMS provider: a provider's routes hand
them the request and its `Webhooks` object.
"""

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from ..bodies import TOO_LARGE, Detail, read_body, refusal
from ..channels import DeliveryReceipt, ForgedRequest, InboundText, WebhookRequest, Webhooks
from ..channels.sms.twilio_webhooks import TwilioWebhooks
from ..deps import Rt
from ..metrics import count_refused_webhook
from ..runtime import Runtime
from ..track import Answer, delivery_receipt, receive

T = TypeVar("T")

router = APIRouter()

ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "TwiML", "content": {"application/xml": {}}},
    403: refusal(Detail, "X-Twilio-Signature is missing or not Twilio's for this URL"),
    413: TOO_LARGE,
}
RECEIPT_ANSWERS = {code: answer for code, answer in ANSWERS.items() if code != 200}


async def twilio_webhooks(rt: Rt) -> TwilioWebhooks:
    # async, as deps.runtime: a plain `def` dependency would cost each webhook a thread hand-off.
    return TwilioWebhooks(rt.settings.twilio_auth_token)


Twilio = Annotated[TwilioWebhooks, Depends(twilio_webhooks)]


@router.post("/twilio/inbound", response_class=Response, responses=ANSWERS)
async def twilio_inbound(request: Request, rt: Rt, twilio: Twilio) -> Response:
    return await inbound_text(rt, twilio, request)


@router.post("/twilio/status", status_code=204, response_class=Response, responses=RECEIPT_ANSWERS)
async def twilio_status(request: Request, rt: Rt, twilio: Twilio) -> Response:
    return await receipt(rt, twilio, request)


async def inbound_text(rt: Runtime, hooks: Webhooks, request: Request) -> Response:
    """A patient's text, through the provider's webhook; the answer in the provider's format."""
    text = await signed(rt, request, hooks.inbound)
    reply = await run_in_threadpool(_received, rt, text)
    answer = None
    if reply.kind:
        lang = reply.context["lang"]
        answer = rt.renderer.render(reply.kind, "sms", lang, reply.context).text
    return Response(hooks.answer(answer), media_type=hooks.media_type)


async def receipt(rt: Runtime, hooks: Webhooks, request: Request) -> Response:
    """A delivery receipt, through the provider's webhook."""
    given = await signed(rt, request, hooks.receipt)
    if given is not None:
        await run_in_threadpool(_applied, rt, given)
    return Response(status_code=204)


def _received(rt: Runtime, text: InboundText) -> Answer:
    with rt.sessions() as s:
        return receive(rt, s, text, rt.clock())


def _applied(rt: Runtime, given: DeliveryReceipt) -> None:
    with rt.sessions() as s:
        delivery_receipt(s, rt.clinic, given, rt.clock())


async def signed(rt: Runtime, request: Request, read: Callable[[WebhookRequest], T]) -> T:
    """What the provider's call says, read by `read` once the call is proved the provider's:
    made to our public URL, with this body byte for byte."""
    url = rt.settings.public_url + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    try:
        return read(WebhookRequest(url, await read_body(request), request.headers))
    except ForgedRequest as exc:
        await run_in_threadpool(count_refused_webhook, rt, request.url.path)
        raise HTTPException(403, str(exc)) from None
