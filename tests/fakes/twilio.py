"""A fake Twilio REST API (the Messages part of 2010-04-01) on loopback.

It speaks enough of api.twilio.com for the real twilio SDK: create, list and fetch Messages,
with Twilio's Basic auth, parameter validation and error bodies, plus programmable faults
(error answers, hangs, accept-then-drop), queued one by one or drawn at random (`chaos`).
Stdlib only.  Run it alone for manual checks:

    python -m tests.fakes.twilio --port 8099
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import math
import operator
import random
import re
import secrets
import socket
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, TypedDict
from urllib.parse import parse_qs, urlencode, urlsplit

DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_AUTH_TOKEN = "fake0auth0token0fa4e0123456789ab"
API_VERSION = "2010-04-01"

_MESSAGES_PATH = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages\.json$")
_MESSAGE_PATH = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages/(?P<sid>[^/]+)\.json$"
)
# E.164, optionally behind a channel prefix such as "whatsapp:".
_RECIPIENT = re.compile(r"^([a-z]+:)?\+[1-9]\d{6,14}$")
_MAX_BODY = 1600
_DEFAULT_PAGE_SIZE = 50
_MAX_PAGE_SIZE = 1000
# Twilio reads "DateSent>" as "on or after" and "DateSent<" as "on or before".
_DATE_SENT_FILTERS = {"DateSent": operator.eq, "DateSent>": operator.ge, "DateSent<": operator.le}

_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")  # each costs two septets (escape + char)


class RecordedMessage(TypedDict):
    """A message the fake accepted."""

    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    received_at: float
    params: dict[str, list[str]]  # the raw form, as parse_qs gives it


class RecordedRequest(TypedDict):
    """Any request the fake saw, accepted or not."""

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]
    received_at: float
    status: int | None  # None while unanswered, and for dropped connections


@dataclass(frozen=True)
class _Fault:
    kind: Literal["error", "hang", "drop"]
    status: int = 0
    code: int = 0
    message: str = ""
    seconds: float = 0.0


_SERVER_ERROR = _Fault("error", status=500, code=20500, message="Internal Server Error")
_TOO_MANY_REQUESTS = _Fault("error", status=429, code=20429, message="Too Many Requests")


@dataclass(frozen=True)
class _Chaos:
    """Fault rates for `FakeTwilio.chaos`: each create draws at most one fault."""

    error_rate: float
    hang_rate: float
    drop_rate: float
    hang_seconds: float
    rng: random.Random

    def draw(self) -> _Fault | None:
        roll = self.rng.random()
        if roll < self.error_rate:
            return _SERVER_ERROR if self.rng.random() < 0.5 else _TOO_MANY_REQUESTS
        if roll < self.error_rate + self.hang_rate:
            return _Fault("hang", seconds=self.hang_seconds)
        if roll < self.error_rate + self.hang_rate + self.drop_rate:
            return _Fault("drop")
        return None


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    auth: tuple[str, str] | None
    headers: dict[str, str]


@dataclass(frozen=True)
class _Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class FakeTwilio:
    """Twilio's Messages API on 127.0.0.1, recording what it is sent."""

    def __init__(
        self,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        *,
        port: int = 0,
        on_message: Callable[[RecordedMessage], None] | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._requested_port = port
        self._on_message = on_message
        self._lock = threading.Lock()
        self._messages: list[RecordedMessage] = []
        self._requests: list[RecordedRequest] = []
        self._faults: deque[_Fault] = deque()
        self._chaos: _Chaos | None = None
        self._injected: Counter[str] = Counter()
        # Per sender: the messages a second it may send, and when its next turn comes (GCRA).
        self._rates: dict[str, float] = {}
        self._rate_tolerance = 0.0
        self._turn: dict[str, float] = {}
        self._over_rate: Counter[str] = Counter()
        # Set by stop() and reset() to release requests parked by a hang.
        self._wake = threading.Event()
        self._server: _Server | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeTwilio:
        if self._server is not None:
            raise RuntimeError("FakeTwilio is already running")
        self._wake = threading.Event()
        self._server = _Server(("127.0.0.1", self._requested_port), self)
        # A short poll interval keeps stop() fast; the default would add 0.5 s per fixture.
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-twilio",
            daemon=True,
        ).start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._wake.set()
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeTwilio is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what tests read ---------------------------------------------------------------------

    @property
    def messages(self) -> list[RecordedMessage]:
        """Accepted messages, oldest first (a snapshot)."""
        with self._lock:
            return list(self._messages)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, oldest first (a snapshot)."""
        with self._lock:
            return list(self._requests)

    def sids_by_recipient(self) -> dict[str, list[str]]:
        """The SIDs of the accepted messages, grouped by `To`, oldest first.  Give each
        notification a number of its own and a list longer than one is a duplicate send."""
        grouped: dict[str, list[str]] = {}
        for message in self.messages:
            grouped.setdefault(message["to"], []).append(message["sid"])
        return grouped

    @property
    def faults_injected(self) -> dict[str, int]:
        """Faults dealt so far, queued or drawn: error_500, error_429 (…), hang, drop."""
        with self._lock:
            return dict(self._injected)

    def reset(self) -> None:
        """Forget messages, requests, fault counts and queued faults, and end chaos.  Requests
        still parked by a hang are released and closed unanswered, without being recorded."""
        with self._lock:
            self._messages.clear()
            self._requests.clear()
            self._faults.clear()
            self._chaos = None
            self._injected.clear()
            self._rates.clear()
            self._turn.clear()
            self._over_rate.clear()
            self._wake.set()
            self._wake = threading.Event()

    # -- carrier rates ------------------------------------------------------------------------

    def enforce_rates(self, rates: dict[str, float], tolerance: float = 0.25) -> None:
        """From now on a message from one of these senders that comes sooner than its rate
        allows (messages a second, by From) is refused with 429 (code 20429), as a provider
        that enforces the carrier's limit does. `tolerance` is how early a message may come
        for its turn (the network's and the machine's jitter)."""
        with self._lock:
            self._rates = dict(rates)
            self._rate_tolerance = tolerance
            self._turn.clear()
            self._over_rate.clear()

    @property
    def refused_over_rate(self) -> dict[str, int]:
        """How many messages each sender had refused for coming faster than its rate."""
        with self._lock:
            return dict(self._over_rate)

    def _within_rate(self, sender: str) -> bool:
        with self._lock:
            rate = self._rates.get(sender)
            if rate is None:
                return True
            now = time.monotonic()
            turn = self._turn.get(sender, now)
            if now < turn - self._rate_tolerance:
                self._over_rate[sender] += 1
                return False
            self._turn[sender] = max(turn, now) + 1 / rate
            return True

    # -- programmable faults (they apply to message creation, in the order queued) ---------

    def fail_next(
        self,
        status: int = 400,
        code: int = 21211,
        message: str = "The 'To' number is not a valid phone number.",
        times: int = 1,
    ) -> None:
        """Answer the next `times` creates with a Twilio error body."""
        self._queue(_Fault("error", status=status, code=code, message=message), times)

    def hang_next(self, seconds: float, times: int = 1) -> None:
        """Sit on the next `times` creates for `seconds`, then process them normally."""
        self._queue(_Fault("hang", seconds=seconds), times)

    def drop_next(self, times: int = 1) -> None:
        """Accept (and record) the next `times` creates, then close without answering."""
        self._queue(_Fault("drop"), times)

    def chaos(
        self,
        error_rate: float = 0.10,
        hang_rate: float = 0.02,
        drop_rate: float = 0.01,
        hang_seconds: float = 2.0,
        seed: int | None = None,
    ) -> None:
        """From now on, faults come at random, once the queued ones are spent: an error (500,
        or 429 with code 20429, half each), a hang of `hang_seconds` after which the message is
        accepted all the same (the worst case for a client that gave up: Twilio sent it), or a
        drop.  Rates are per create; `chaos(0, 0, 0)` ends it."""
        if min(error_rate, hang_rate, drop_rate) < 0 or error_rate + hang_rate + drop_rate > 1:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")
        rates = _Chaos(error_rate, hang_rate, drop_rate, hang_seconds, random.Random(seed))
        with self._lock:
            self._chaos = rates if error_rate + hang_rate + drop_rate else None

    def _queue(self, fault: _Fault, times: int) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            if self._faults:
                fault: _Fault | None = self._faults.popleft()
            else:
                fault = self._chaos.draw() if self._chaos else None
            if fault is not None:
                self._injected[_label(fault)] += 1
            return fault

    # -- request handling (runs on the server's threads) ------------------------------------

    def _handle(self, request: _Request) -> _Answer | None:
        """Answer one request; None means close the connection without answering."""
        record: RecordedRequest = {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "form": request.form,
            "headers": request.headers,
            "received_at": time.time(),
            "status": None,
        }
        with self._lock:
            self._requests.append(record)
        answer = self._route(request)
        record["status"] = answer.status if answer else None
        return answer

    def _route(self, request: _Request) -> _Answer | None:
        if match := _MESSAGES_PATH.match(request.path):
            sid = None
        elif match := _MESSAGE_PATH.match(request.path):
            sid = match["sid"]
        else:
            return _not_found(request.path)
        if request.auth != (self.account_sid, self.auth_token):
            return _unauthenticated()
        if match["account"] != self.account_sid:
            return _not_found(request.path)
        if sid is not None:
            if request.method != "GET":
                return _error(405, 20004, "Method not allowed")
            return self._fetch(sid, request.path)
        if request.method == "POST":
            return self._create_with_faults(request.form)
        return self._list(request.path, request.query)

    def _create_with_faults(self, form: dict[str, list[str]]) -> _Answer | None:
        if not self._within_rate((form.get("From") or [""])[-1]):
            return _error(429, 20429, "Too Many Requests")
        fault = self._next_fault()
        if fault is None:
            return self._create(form)
        if fault.kind == "error":
            return _error(fault.status, fault.code, fault.message)
        if fault.kind == "hang":
            with self._lock:
                wake = self._wake
            if wake.wait(fault.seconds):
                # Released by reset() or stop(): the request belongs to an earlier test, so
                # it must not land in this one's .messages.  Close without answering.
                return None
            return self._create(form)
        self._create(form)  # drop: Twilio took the message, but its answer never arrives
        return None

    def _create(self, form: dict[str, list[str]]) -> _Answer:
        values = {name: given[-1] for name, given in form.items()}
        if problem := _validate(values):
            return problem
        message: RecordedMessage = {
            "sid": "SM" + secrets.token_hex(16),
            "to": values["To"],
            "from_": values.get("From") or None,
            "messaging_service_sid": values.get("MessagingServiceSid") or None,
            "body": values.get("Body", ""),
            "status_callback": values.get("StatusCallback") or None,
            "received_at": time.time(),
            "params": form,
        }
        with self._lock:
            self._messages.append(message)
        if self._on_message is not None:
            self._on_message(message)
        return _Answer(201, self._resource(message, read_back=False))

    def _fetch(self, sid: str, path: str) -> _Answer:
        with self._lock:
            found = next((m for m in self._messages if m["sid"] == sid), None)
        if found is None:
            return _not_found(path)
        return _Answer(200, self._resource(found, read_back=True))

    def _list(self, path: str, query: dict[str, list[str]]) -> _Answer:
        args = {name: given[-1] for name, given in query.items()}
        try:
            wanted = _matcher(args)
            size = min(int(args.get("PageSize", _DEFAULT_PAGE_SIZE)), _MAX_PAGE_SIZE)
            page = int(args.get("Page", 0))
            if size < 1 or page < 0:  # either would make the SDK follow next_page_uri forever
                raise ValueError(f"PageSize={size}, Page={page}")
        except ValueError as exc:
            return _error(400, 20001, f"Invalid list parameter: {exc}")
        with self._lock:
            matches = [m for m in reversed(self._messages) if wanted(m)]  # newest first
        first = page * size
        chunk = matches[first : first + size]
        return _Answer(
            200,
            {
                "messages": [self._resource(m, read_back=True) for m in chunk],
                "page": page,
                "page_size": size,
                "start": first,
                "end": first + max(len(chunk) - 1, 0),
                "uri": _page_uri(path, args, page),
                "first_page_uri": _page_uri(path, args, 0),
                "previous_page_uri": _page_uri(path, args, page - 1) if page else None,
                "next_page_uri": (
                    _page_uri(path, args, page + 1) if len(matches) > first + size else None
                ),
            },
        )

    def _resource(self, message: RecordedMessage, *, read_back: bool) -> dict[str, Any]:
        """The Message resource as Twilio renders it."""
        created = format_datetime(datetime.fromtimestamp(message["received_at"], UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{message['sid']}"
        if read_back:
            # Twilio hands messages on within moments, so anything read back reads as sent.
            status, date_sent = "sent", created
        else:
            # At creation there is no date_sent yet; with only a Messaging Service the
            # sender is still to be picked, which Twilio reports as "accepted".
            status, date_sent = ("queued" if message["from_"] else "accepted"), None
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": message["body"],
            "date_created": created,
            "date_sent": date_sent,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": message["from_"],
            "messaging_service_sid": message["messaging_service_sid"],
            "num_media": str(len(message["params"].get("MediaUrl", []))),
            "num_segments": str(_segments(message["body"])),
            "price": None,
            "price_unit": "USD",
            "sid": message["sid"],
            "status": status,
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
            "to": message["to"],
            "uri": f"{uri}.json",
        }


def _label(fault: _Fault) -> str:
    return f"error_{fault.status}" if fault.kind == "error" else fault.kind


def _validate(values: dict[str, str]) -> _Answer | None:
    """The checks Twilio makes on a new message, with its error codes (the order is the fake's)."""
    to = values.get("To", "")
    body = values.get("Body", "")
    if not to:
        return _error(400, 21604, "A 'To' phone number is required.")
    if not _RECIPIENT.match(to):
        return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if not (values.get("From") or values.get("MessagingServiceSid")):
        return _error(400, 21603, "A 'From' phone number is required.")
    if not (body or values.get("MediaUrl") or values.get("ContentSid")):
        return _error(400, 21602, "Message body is required.")
    if len(body) > _MAX_BODY:
        return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
    return None


def _matcher(args: dict[str, str]) -> Callable[[RecordedMessage], bool]:
    """The list filters (To, From, DateSent, DateSent>, DateSent<) as one predicate."""
    date_tests = [_date_sent_test(key, args[key]) for key in _DATE_SENT_FILTERS if key in args]

    def wanted(message: RecordedMessage) -> bool:
        return (
            args.get("To", message["to"]) == message["to"]
            and args.get("From", message["from_"]) == message["from_"]
            and all(test(message["received_at"]) for test in date_tests)
        )

    return wanted


def _date_sent_test(key: str, value: str) -> Callable[[float], bool]:
    """A date bound compares UTC calendar days; a datetime bound compares whole seconds,
    the SDK's resolution (it sends datetimes as YYYY-MM-DDTHH:MM:SSZ)."""
    compare = _DATE_SENT_FILTERS[key]
    if len(value) == len("YYYY-MM-DD"):
        day = date.fromisoformat(value)
        return lambda ts: compare(datetime.fromtimestamp(ts, UTC).date(), day)
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return lambda ts: compare(datetime.fromtimestamp(int(ts), UTC), moment)


def _page_uri(path: str, args: dict[str, str], page: int) -> str:
    return f"{path}?{urlencode({**args, 'Page': page})}"


def _segments(body: str) -> int:
    """SMS segments as Twilio counts them: GSM-7 if every character fits, else UCS-2."""
    if all(c in _GSM7 or c in _GSM7_EXTENDED for c in body):
        units = len(body) + sum(c in _GSM7_EXTENDED for c in body)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else math.ceil(units / multi)


def _error(status: int, code: int, message: str, **extra: str) -> _Answer:
    """Twilio's classic error body.  (No "type"/"title" keys: with those the SDK would raise
    TwilioServiceException, the RFC 9457 flavour, instead of TwilioRestException.)"""
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    body = {"code": code, "message": message, "more_info": more_info, "status": status}
    return _Answer(status, {**body, **extra})


def _unauthenticated() -> _Answer:
    answer = _error(
        401, 20003, "Authenticate", detail="Your AccountSid or AuthToken was incorrect."
    )
    return replace(answer, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})


def _not_found(path: str) -> _Answer:
    return _error(404, 20404, f"The requested resource {path} was not found")


def _basic_auth(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


class _Server(ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], fake: FakeTwilio) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request resets its connection: expected of the processes a
        # chaos run SIGKILLs, and not worth a traceback each.  Anything else still gets one.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, like api.twilio.com, so the SDK's pooled session behaves as in production.
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle plus the client's
        # delayed ACK adds ~40 ms to every answer on a kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read .requests and the CLI prints messages itself."""

    def _serve(self) -> None:
        answer = self.server.fake._handle(self._parse())
        if answer is None:
            self.close_connection = True  # not even a status line: the client sees a drop
            return
        self._reply(answer)

    def _parse(self) -> _Request:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = self.rfile.read(length).decode() if length else ""
        return _Request(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            form=parse_qs(form, keep_blank_values=True),
            auth=_basic_auth(self.headers.get("Authorization", "")),
            headers=dict(self.headers.items()),
        )

    def _reply(self, answer: _Answer) -> None:
        payload = json.dumps(answer.body).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Content-Length": str(len(payload)),
            **answer.headers,
        }
        try:
            self.send_response(answer.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client stopped waiting (its timeout fired during hang_next).
            self.close_connection = True


def _print_message(message: RecordedMessage) -> None:
    stamp = time.strftime("%H:%M:%S", time.localtime(message["received_at"]))
    body = message["body"].replace("\n", "\\n")  # one line per message
    print(f"{stamp} {message['to']} {body}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.twilio",
        description="Fake Twilio Messages API; prints each accepted message on stdout.",
    )
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    args = parser.parse_args(argv)
    with FakeTwilio(
        args.account_sid, args.auth_token, port=args.port, on_message=_print_message
    ) as fake:
        # The banner goes to stderr so stdout carries nothing but messages.
        print(
            f"fake Twilio listening; point notifier at it with\n"
            f"  TWILIO_API_BASE_URL={fake.url} TWILIO_ACCOUNT_SID={fake.account_sid}"
            f" TWILIO_AUTH_TOKEN={fake.auth_token}\nCtrl-C stops it.",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the way to stop it
            threading.Event().wait()


if __name__ == "__main__":
    main()
