"""Every API call made with a valid key goes into the audit log: the key's name, the address,
the route and the appointment it was about, and the answer's status. The entry is written
before the answer leaves, so a caller never holds an answer the log does not show."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import audit
from ..api_keys import ApiCaller
from ..runtime import Runtime

log = logging.getLogger(__name__)


class ApiAudit:
    """ASGI middleware for /v1/*. A route may name what it was about, when the path does not,
    in `request.state.audit_subject`, and add a note in `request.state.audit_detail`."""

    def __init__(self, app: ASGIApp, rt: Runtime) -> None:
        self.app = app
        self.rt = rt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return

        async def recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self._record(scope, message["status"])
            await send(message)

        await self.app(scope, receive, recorded)

    async def _record(self, scope: Scope, status: int) -> None:
        state: dict[str, Any] = scope.get("state", {})
        caller = state.get("api_caller")
        if not isinstance(caller, ApiCaller) or status == 429:
            return  # no key, nothing was read or changed; a throttled call did nothing either
        route = scope.get("route")
        action = f"{scope['method']} {getattr(route, 'path', scope['path'])}"
        subject = state.get("audit_subject")
        if subject is None and "appointment_id" in scope.get("path_params", {}):
            subject = f"appointment:{scope['path_params']['appointment_id']}"
        client = scope.get("client")
        try:
            await run_in_threadpool(
                self._write, caller.actor, action, subject, client[0] if client else None,
                str(status), state.get("audit_detail"),
            )  # fmt: skip
        except SQLAlchemyError:
            log.exception("audit log entry not written for %s by %s", action, caller.actor)

    def _write(
        self,
        actor: str,
        action: str,
        subject: str | None,
        address: str | None,
        outcome: str,
        detail: str | None,
    ) -> None:
        with self.rt.sessions() as session:
            audit.record(
                session, self.rt.clock(), actor, action, subject,
                address=address, outcome=outcome, detail=detail,
            )  # fmt: skip
