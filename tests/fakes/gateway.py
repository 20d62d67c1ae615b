"""A fake generic SMS gateway on loopback, the shape notifier.channels.sms.gateway documents:
`POST /messages` and `GET /messages?reference=…` behind a Bearer key, and the signed JSON
webhooks it would call us with. Stdlib only."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_API_KEY = "gateway-test-key"
DEFAULT_SECRET = "gateway-webhook-secret"


class FakeGateway:
    def __init__(self, api_key: str = DEFAULT_API_KEY, secret: str = DEFAULT_SECRET) -> None:
        self.api_key = api_key
        self.secret = secret
        self.messages: list[dict[str, Any]] = []
        self.faults: list[tuple[int, str]] = []  # (status, error code) for the next sends
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail_next(self, status: int, code: str) -> None:
        self.faults.append((status, code))

    def inbound(
        self, sender: str, to: str, text: str, keyword: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The webhook the gateway sends when a patient texts one of our numbers."""
        return self._signed(
            {"id": f"in-{len(self.messages)}-{sender}-{text}", "from": sender, "to": to}
            | {"text": text, "keyword": keyword}
        )

    def receipt(
        self, message_id: str, status: str, code: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The webhook the gateway sends when a text reaches a final (or any) state."""
        error = {"code": code, "message": "not delivered"} if code else None
        return self._signed({"id": message_id, "status": status, "error": error})

    def _signed(self, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payload).encode()
        digest = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Gateway-Signature": f"sha256={digest}"}
        return body, headers

    def _create(self, sent: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self.faults:
                status, code = self.faults.pop(0)
                return status, {"error": {"code": code, "message": f"refused: {code}"}}
            if not (sent.get("to") and sent.get("text") and sent.get("reference")):
                return 400, {"error": {"code": "bad_request", "message": "to, text, reference"}}
            message = {"id": f"gw-{len(self.messages) + 1}", **sent}
            self.messages.append(message)
        return 201, {"id": message["id"]}

    def _list(self, reference: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            found = [m for m in self.messages if m["reference"] == reference]
        return 200, {"messages": found}

    def __enter__(self) -> FakeGateway:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(fake: FakeGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            self._answer(*(self._refusal() or fake._create(json.loads(body or b"{}"))))

        def do_GET(self) -> None:
            reference = parse_qs(urlsplit(self.path).query).get("reference", [""])[0]
            self._answer(*(self._refusal() or fake._list(reference)))

        def _refusal(self) -> tuple[int, dict[str, Any]] | None:
            if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                return 401, {"error": {"code": "unauthorized", "message": "bad key"}}
            if urlsplit(self.path).path != "/messages":
                return 404, {"error": {"code": "not_found", "message": self.path}}
            return None

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read .messages."""

    return Handler
