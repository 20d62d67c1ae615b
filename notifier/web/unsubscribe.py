"""The unsubscribe page of every email: GET asks, POST unsubscribes.

A mail client's one-click button (RFC 8058) POSTs `List-Unsubscribe=One-Click` to the URL in the
`List-Unsubscribe` header and expects it done, with nothing more to click; the page's own button
POSTs the same way. GET never unsubscribes: mail scanners open links.
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from ..deps import Db, Rt
from ..links import BadLink, make_unsubscribe_token, read_unsubscribe_token
from ..runtime import Runtime
from ..unsubscribe import unsubscribe
from .link_pages import PAGE, _pages

router = APIRouter()
ANSWERS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a link that is not valid (changed, cut or forged)", **PAGE},
}

# A one-click body is 26 bytes; reading more would only serve a hostile client.
_ONE_CLICK_BYTES = 256


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, responses=ANSWERS)
def ask(request: Request, token: str, rt: Rt) -> HTMLResponse:
    return _page(request, rt, token, "ask")


@router.post("/unsubscribe/{token}", response_class=HTMLResponse, responses=ANSWERS)
async def one_click(request: Request, token: str, rt: Rt, s: Db) -> HTMLResponse:
    try:
        link = read_unsubscribe_token(rt.settings.secret_key or "", token)
    except BadLink:
        return _page(request, rt, token, "invalid")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _ONE_CLICK_BYTES:
            break
    via = "one-click" if b"List-Unsubscribe=One-Click" in body[:_ONE_CLICK_BYTES] else "page"
    await run_in_threadpool(unsubscribe, s, link, f"link:{via}", rt.clock())
    return _page(request, rt, token, "done")


def _page(request: Request, rt: Runtime, token: str, state: str) -> HTMLResponse:
    secret = rt.settings.secret_key or ""
    context: dict[str, Any] = {
        "practice": rt.clinic.practice.name,
        "title": "Unsubscribe",
        "lang": "en",
    }
    try:
        link = read_unsubscribe_token(secret, token)
    except BadLink:
        state = "invalid"
    else:
        context |= {"address": link.address, "scope": link.scope}
        if link.scope == "marketing":  # the page also offers the wider choice
            context["all_token"] = make_unsubscribe_token(secret, link.address, "all")
    pages = _pages(rt.settings.templates_dir)
    status = 400 if state == "invalid" else 200
    return pages.TemplateResponse(request, "unsubscribe.html", context | {"state": state}, status)
