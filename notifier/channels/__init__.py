"""Channels: each sends one rendered message and returns the provider's id for it.

Callers branch only on `SendError.outcome`; nothing about a provider leaks above its module.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Outcome = Literal["permanent", "transient", "unknown"]


class SendError(Exception):
    """permanent: will never work, don't retry. transient: nothing was sent, retry later.
    unknown: the request left and no answer came back; it may have been delivered."""

    def __init__(
        self, outcome: Outcome, message: str, code: str | None = None, reason: str | None = None
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
