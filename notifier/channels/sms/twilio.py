"""SMS through Twilio's REST API, with the twilio SDK; what its error codes mean."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence

import redis
import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from ...ratelimit import LocalRateLimiter, RateLimiter
from .. import Message, SendError
from .http import CALL_FAILED, call_failed
from .twilio_codes import REASONS

# Errors worth retrying: rate limits, and credentials, which staff can fix without losing messages.
TRANSIENT_CODES = {20003, 20429, 30001, 30002, 30008}


class TwilioSMS:
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str | None,
        messaging_service_sid: str | None,
        status_callback: str,
        base_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
        limiter: RateLimiter | None = None,
        per_second: Callable[[str], float] = lambda sender: 1.0,
        connections: int = 16,
    ) -> None:
        # Proxies from the environment are read once here: requests would read them again on
        # every call, a tenth of a send's time.
        proxies = requests.utils.get_environ_proxies(base_url) or None
        http = TwilioHttpClient(timeout=timeout, proxy=proxies)
        if http.session is not None:
            http.session.trust_env = False
            # One kept-alive connection for each call a worker process has in flight.
            for scheme in ("https://", "http://"):
                http.session.mount(scheme, HTTPAdapter(pool_maxsize=connections))
        self.client = Client(account_sid, auth_token, http_client=http)
        self.client.api.base_url = base_url.rstrip("/")
        # TWILIO_EDGE / TWILIO_REGION in the environment would rewrite the host of base_url.
        self.client.edge = None
        self.client.region = None
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.status_callback = status_callback
        self.limiter = limiter or LocalRateLimiter()
        self.per_second = per_second

    def pace(self, messages: Sequence[Message], within: float) -> list[float]:
        """Seconds from now at which each message may go: its sender's free slots of the next
        `within` seconds are taken in one step per sender; the rest are given places in line,
        which reserve nothing."""
        by_sender: dict[tuple[str, int], list[int]] = defaultdict(list)
        # The most urgent first: they take the sender's free slots before the others ask.
        for i, message in sorted(enumerate(messages), key=lambda m: m[1].priority):
            by_sender[(self._throttle_key(message), message.priority)].append(i)
        delays = [0.0] * len(messages)
        for (key, priority), indexes in by_sender.items():
            rate = self.per_second(key)
            try:
                slots = self.limiter.reserve(key, rate, len(indexes), within, priority)
            except redis.RedisError as exc:  # nothing has left yet: safe to try again later
                raise SendError("transient", f"rate limiter unavailable: {exc}") from exc
            for k, i in enumerate(indexes):
                if k < slots.taken:
                    delays[i] = min(slots.wait + k / rate, within)
                else:  # rounding must not bring a place in line inside `within`
                    later = slots.line + (k - slots.taken) / rate
                    delays[i] = max(later, math.nextafter(within, math.inf))
        return delays

    def _throttle_key(self, message: Message) -> str:
        return message.sender or self.from_number or self.messaging_service_sid or "default"

    def send(self, message: Message) -> str:
        """Sends now: the caller has waited for the slot `pace` gave it."""
        sender = message.sender or self.from_number
        route = (
            {"from_": sender} if sender else {"messaging_service_sid": self.messaging_service_sid}
        )
        try:
            created = self.client.messages.create(
                to=message.to,
                body=message.text,
                status_callback=self.status_callback,
                **route,
            )
        except TwilioRestException as exc:
            raise classify(exc) from exc
        except CALL_FAILED as exc:
            raise call_failed(exc, "Twilio") from exc
        return str(created.sid)

    def find(self, message: Message, known: Collection[str]) -> str | None:
        # Twilio has no idempotency key; its list of what this number was sent is the record.
        # Newest first, and a patient gets few texts: the last 100 reach back far enough. No
        # date filter: our clock and Twilio's need not agree.
        try:
            listed = self.client.messages.list(to=message.to, limit=100)
        except (TwilioException, requests.RequestException) as exc:
            raise SendError("transient", f"could not list Twilio messages: {exc}") from exc
        for item in listed:
            if item.body == message.text and item.sid not in known:
                return str(item.sid)
        return None


def classify(exc: TwilioRestException) -> SendError:
    code = int(exc.code) if exc.code else None
    text = f"Twilio {exc.status}: {exc.msg}"
    if code in REASONS:
        return SendError("permanent", text, str(code), REASONS[code])
    if code in TRANSIENT_CODES or exc.status == 429 or exc.status >= 500:
        return SendError("transient", text, str(code or exc.status))
    return SendError("permanent", text, str(code or exc.status))
