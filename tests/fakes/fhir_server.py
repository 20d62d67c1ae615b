"""A small FHIR R4 server on loopback: the read interaction (`GET [base]/Type/id`) for the
resources it is given, behind a bearer token, answering errors as OperationOutcome. Stdlib only.

It keeps versions as a FHIR server that enforces them does: every read answers an `ETag`
(`W/"<versionId>"`), and an update (`PUT`) must name the current one in `If-Match`, or is
refused with 412 Precondition Failed; a stored update gets the next version.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
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
        self.writes: list[dict[str, Any]] = []  # the updates stored, in order
        self.conflicts: list[str] = []  # the If-Match of each update refused with 412
        # Called before each update is looked at: another client's edit in between, say.
        self.before_write: Callable[[FakeFhirServer], None] = lambda fake: None
        self._lock = threading.Lock()
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
        self.writes.clear()
        self.conflicts.clear()
        self.before_write = lambda fake: None

    def edit(self, key: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Someone else's update of the stored resource: a new version."""
        resource = json.loads(json.dumps(self.resources[key]))
        change(resource)
        self._store(key, resource)

    def _store(self, key: str, resource: dict[str, Any]) -> None:
        current = self.resources.get(key, {})
        version = int((current.get("meta") or {}).get("versionId") or 0) + 1
        resource["meta"] = {**(resource.get("meta") or {}), "versionId": str(version)}
        self.resources[key] = resource

    def put_request(
        self, path: str, headers: dict[str, str], data: bytes
    ) -> tuple[int, dict[str, Any], str | None]:
        """The update interaction: the answer's status, body and ETag."""
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, _outcome("login", "a valid bearer token is required"), None
        if (match := _READ.match(path)) is None:
            return 400, _outcome("not-supported", "no such resource"), None
        key = f"{match['kind']}/{match['id']}"
        status = self.update(key, json.loads(data), headers.get("If-Match"))
        if status != 200:
            return status, _outcome("conflict", f"{key}: HTTP {status}"), None
        return 200, self.resources[key], etag(self.resources[key])

    def update(self, key: str, resource: dict[str, Any], if_match: str | None) -> int:
        with self._lock:
            self.before_write(self)
            current = self.resources.get(key)
            if current is None:
                return 404
            if if_match != etag(current):
                self.conflicts.append(if_match or "")
                return 412
            self._store(key, resource)
            self.writes.append(self.resources[key])
            return 200

    def __enter__(self) -> FakeFhirServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


def etag(resource: dict[str, Any]) -> str:
    return f'W/"{(resource.get("meta") or {}).get("versionId") or 0}"'


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
                self._answer(200, resource, etag(resource))

        def do_PUT(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer(*fake.put_request(self.path, dict(self.headers.items()), data))

        def _answer(self, status: int, body: dict[str, Any], tag: str | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            if tag:
                self.send_header("ETag", tag)
            self.send_header("Content-Type", "application/fhir+json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
