"""Security headers on every answer, as one plain ASGI middleware (no per-request task).

- Every answer: no framing (X-Frame-Options, and frame-ancestors in the policy), no Referer
  (a link page's address holds its token), no content-type sniffing, and `Cache-Control:
  no-store` (the pages and the API show patients' names, numbers and visits; a shared
  computer's browser cache must not keep them), static files aside.
- Our HTML pages: a Content-Security-Policy with no inline script or <style> block at all:
  the pages load their stylesheets and script from /static (notifier/assets.py). Style
  attributes stay allowed: CSS from an attribute can neither run script nor, with
  `img-src 'self' data:`, load anything.
  FastAPI's own /docs pages load their script from a CDN and are left without the policy
  (deploy.md keeps them internal).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

EVERY_ANSWER = [
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]
NO_STORE = (b"cache-control", b"no-store")
CACHED = ("/static/",)
UNPOLICED = ("/docs", "/redoc")


POLICY = (
    "default-src 'none'; script-src 'self'; "
    "style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _headers(list(message.get("headers", [])), path)
            await send(message)

        await self.app(scope, receive, with_headers)


def _headers(headers: list[tuple[bytes, bytes]], path: str) -> list[tuple[bytes, bytes]]:
    names = {name.lower() for name, _ in headers}
    added = [header for header in EVERY_ANSWER if header[0] not in names]
    if not path.startswith(CACHED) and b"cache-control" not in names:
        added.append(NO_STORE)
    html = any(
        name.lower() == b"content-type" and value.startswith(b"text/html")
        for name, value in headers
    )
    if html and not path.startswith(UNPOLICED):
        added.append((b"content-security-policy", POLICY.encode()))
    return headers + added
