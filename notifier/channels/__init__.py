"""Channels: each sends one rendered message and returns the provider's id for it.

Callers branch only on `SendError.outcome`; nothing about a provider leaks above its module.
What a provider calls back with (a patient's text, a delivery receipt) comes in through its
`Webhooks`, which checks the request came from the provider and reads it into an `InboundText`
or a `DeliveryReceipt`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

SendOutcome = Literal["permanent", "transient", "unknown"]


class SendError(Exception):
    """permanent: will never work, don't retry. transient: nothing was sent, retry later.
    unknown: the request left and no answer came back; it may have been delivered."""

    def __init__(
        self, outcome: SendOutcome, message: str, code: str | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.code = code
        # Why a permanent failure is permanent, in the clinic's words: opted_out, not_mobile, …
        self.reason = reason


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Message:
    notification_id: int
    to: str
    text: str
    subject: str | None = None
    html: str | None = None
    sender: str | None = None
    attachments: tuple[Attachment, ...] = ()
    # Extra email headers, as (name, value): List-Unsubscribe and its one-click companion.
    headers: tuple[tuple[str, str], ...] = ()
    # Its notification's priority (0 first): the order in which a sender's slots are handed out.
    priority: int = 1


class Channel(Protocol):
    def pace(self, messages: Sequence[Message], within: float) -> list[float]:
        """Seconds from now at which each message may be sent (a provider's rate limit). A slot
        no more than `within` seconds away is the caller's; a later figure reserves nothing,
        it only says when to ask again."""
        ...

    def send(self, message: Message) -> str: ...

    def find(self, message: Message, known: Collection[str]) -> str | None:
        """The provider's id for `message` if the provider took it (ids in `known` belong to
        other notifications); None if it did not. SendError if it cannot tell."""
        ...


class Unpaced:
    """For a channel with no rate of its own to keep: every message may go at once."""

    def pace(self, messages: Sequence[Message], within: float) -> list[float]:
        return [0.0] * len(messages)


# A keyword the provider's own opt-out handling matched, whatever the word (a clinic can add its
# own, "BAJA" or "PARAR"): the provider blocks or unblocks the number all the same.
OptOutKind = Literal["stop", "start", "help"]
# The final states of a text at the provider; a receipt for any other state is not passed on.
ReceiptStatus = Literal["delivered", "undelivered", "failed"]


@dataclass(frozen=True)
class InboundText:
    """A text a patient sent to one of our numbers."""

    provider_id: str
    sender: str
    to: str
    body: str
    opt_out: OptOutKind | None = None


@dataclass(frozen=True)
class DeliveryReceipt:
    """The provider's last word on a text we sent. `reason` is the failure in the clinic's
    words (opted_out, not_mobile, …, as on SendError), None when delivered or not known."""

    provider_id: str
    status: ReceiptStatus
    error_code: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class WebhookRequest:
    """A provider's call as it reached us: the URL it called (our public URL), the body byte
    for byte, and the headers, names in lower case."""

    url: str
    body: bytes
    headers: Mapping[str, str]


class ForgedRequest(Exception):
    """The request's signature is missing or not the provider's for this URL and body."""


class Webhooks(Protocol):
    """One provider's side of incoming texts and receipts. Each reader checks the signature
    first and raises ForgedRequest before reading anything."""

    media_type: str

    def inbound(self, request: WebhookRequest) -> InboundText: ...

    def receipt(self, request: WebhookRequest) -> DeliveryReceipt | None:
        """None for a receipt of a state that is not final (queued, sent…)."""
        ...

    def answer(self, text: str | None) -> str:
        """The body that answers an inbound text: with `text` as the reply, or with none."""
        ...
