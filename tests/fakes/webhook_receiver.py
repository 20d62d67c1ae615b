"""A booking system's webhook endpoint on loopback: checks each request's Standard Webhooks
signature with the `standardwebhooks` package, as a receiver would, and keeps what it took.

`failing` (a callable) makes it answer 500 while it says so; `hang` makes it hold a request
open, unanswered, until released (a delivery in flight when its sender is killed). Stdlib and
`standardwebhooks` only, so it also runs as its own process: `python -m
tests.fakes.webhook_receiver SECRET PORT` prints each verified body's `webhook-id` and type.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Received:
    message_id: str
    body: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.body["type"])


class WebhookReceiver:
    def __init__(self, secret: str, port: int = 0) -> None:
        self.verifier = Webhook(secret)
        self.received: list[Received] = []  # verified and answered 2xx, in arrival order
        self.refused: list[str] = []  # why each request was not taken
        self.failing: Callable[[], bool] = lambda: False
        self.hang = threading.Event()  # set: hold requests until `release` is set
        self.release = threading.Event()
        self.held = 0  # requests held open so far
        self.on_receive: Callable[[Received], None] = lambda r: None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks"

    def types(self) -> list[str]:
        with self._lock:
            return [r.type for r in self.received]

    def take(self, headers: dict[str, str], payload: bytes) -> int:
        try:
            body = self.verifier.verify(payload, headers)
        except WebhookVerificationError as exc:
            self.refused.append(f"signature: {exc}")
            return 401
        if self.failing():
            self.refused.append("failing on purpose")
            return 500
        received = Received(headers.get("webhook-id", ""), body)
        with self._lock:
            self.received.append(received)
        self.on_receive(received)
        return 204

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if receiver.hang.is_set():
                receiver.held += 1
                receiver.release.wait(60)
                return  # the sender is gone by now: no answer
            headers = {k.lower(): v for k, v in self.headers.items()}
            self.send_response(receiver.take(headers, payload))
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


if __name__ == "__main__":
    with WebhookReceiver(sys.argv[1], int(sys.argv[2])) as running:
        running.on_receive = lambda r: print(
            json.dumps({"id": r.message_id, "type": r.type, "data": r.body["data"]}), flush=True
        )
        threading.Event().wait()
