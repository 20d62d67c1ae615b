"""A small FHIR R4 server on loopback: the read interaction (`GET [base]/Type/id`) for the
resources it is given, behind a bearer token, answering errors as OperationOutcome. Stdlib only.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

BASE_PATH = "/fhir"
DEFAULT_TOKEN = "fhir-test-token"
_READ = re.compile(rf"^{BASE_PATH}/(?P<kind>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{{1,64}})$")


class FakeFhirServer:
    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self.resources: dict[str, dict[str, Any]] = {}
        self.reads: list[tuple[str, str | None]] = []  # (path, Authorization header)
        self.fail_with: int | None = None  # answer every read with this status
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{BASE_PATH}"

    def put(self, *resources: dict[str, Any]) -> None:
        for resource in resources:
            self.resources[f"{resource['resourceType']}/{resource['id']}"] = resource

    def reset(self) -> None:
        self.resources.clear()
        self.reads.clear()
        self.fail_with = None

    def __enter__(self) -> FakeFhirServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


def _outcome(code: str, diagnostics: str) -> dict[str, Any]:
    issue = {"severity": "error", "code": code, "diagnostics": diagnostics}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _handler(fake: FakeFhirServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            authorization = self.headers.get("Authorization")
            fake.reads.append((self.path, authorization))
            if authorization != f"Bearer {fake.token}":
                self._answer(401, _outcome("login", "a valid bearer token is required"))
            elif fake.fail_with is not None:
                self._answer(fake.fail_with, _outcome("exception", "failing on purpose"))
            elif (match := _READ.match(self.path)) is None:
                self._answer(400, _outcome("not-supported", "only reads are served"))
            elif (resource := fake.resources.get(f"{match['kind']}/{match['id']}")) is None:
                self._answer(404, _outcome("not-found", f"{match['kind']}/{match['id']}"))
            else:
                self._answer(200, resource)

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
