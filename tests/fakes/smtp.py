"""A loopback SMTP server (aiosmtpd) that keeps what it receives, with programmable faults.

Run it alone for manual checks; it prints each message's To and Subject:

    python -m tests.fakes.smtp --port 8025
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from types import TracebackType
from typing import Literal, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

Stage = Literal["RCPT", "DATA"]


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted transaction: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    received_at: float


class _Controller(Controller):
    """A Controller that can bind port 0."""

    def _trigger_server(self) -> None:
        # aiosmtpd's start-up self-test connects to self.port, so learn the OS-picked port first.
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SMTPSink:
    """An SMTP server on 127.0.0.1 that records messages instead of delivering them."""

    host = "127.0.0.1"

    def __init__(
        self, *, port: int = 0, on_message: Callable[[ReceivedMail], None] | None = None
    ) -> None:
        self._requested_port = port
        self._on_message = on_message
        # One condition guards everything and lets wait_for sleep until mail arrives.
        self._changed = threading.Condition()
        self._received: list[ReceivedMail] = []
        self._faults: dict[Stage, deque[str]] = {"RCPT": deque(), "DATA": deque()}
        self._controller: _Controller | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SMTPSink:
        if self._controller is not None:
            raise RuntimeError("SMTPSink is already running")
        # A fixed server_hostname spares a reverse-DNS lookup (getfqdn) on every connection.
        controller = _Controller(
            _Handler(self),
            hostname=self.host,
            port=self._requested_port,
            server_hostname="smtp-sink.test",
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SMTPSink:
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
        if self._controller is None:
            raise RuntimeError("SMTPSink is not running")
        return self._controller.port

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    # -- what tests read ---------------------------------------------------------------------

    @property
    def received(self) -> list[ReceivedMail]:
        """Accepted transactions with their envelopes, oldest first (a snapshot)."""
        with self._changed:
            return list(self._received)

    @property
    def messages(self) -> list[EmailMessage]:
        """Accepted messages, oldest first (a snapshot)."""
        return [mail.message for mail in self.received]

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[EmailMessage]:
        """Block until at least `count` messages arrived; return them all."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._received) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} message(s) within {timeout}s, got {len(self._received)}"
                )
            return [mail.message for mail in self._received]

    def reset(self) -> None:
        with self._changed:
            self._received.clear()
            for queue in self._faults.values():
                queue.clear()

    # -- programmable faults -----------------------------------------------------------------

    def fail_next(
        self,
        code: int = 451,
        message: str = "Requested action aborted (fault injected by SMTPSink)",
        times: int = 1,
        stage: Stage = "DATA",
    ) -> None:
        """Answer the next `times` DATA (or RCPT) commands with `code`; nothing is kept."""
        with self._changed:
            self._faults[stage].extend([f"{code} {message}"] * times)

    def _next_fault(self, stage: Stage) -> str | None:
        with self._changed:
            queue = self._faults[stage]
            return queue.popleft() if queue else None

    def _keep(self, envelope: Envelope) -> None:
        parsed = BytesParser(policy=default).parsebytes(envelope.original_content or b"")
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=cast(EmailMessage, parsed),  # policy.default builds EmailMessage objects
            received_at=time.time(),
        )
        with self._changed:
            self._received.append(mail)
            self._changed.notify_all()
        if self._on_message is not None:
            self._on_message(mail)


class _Handler:
    """aiosmtpd's hooks, run on the server's event-loop thread.

    A separate object because aiosmtpd inspects every attribute of its handler, which would
    trip SMTPSink's properties.
    """

    def __init__(self, sink: SMTPSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if fault := self._sink._next_fault("RCPT"):
            return fault
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if fault := self._sink._next_fault("DATA"):
            return fault
        self._sink._keep(envelope)
        return "250 Message accepted for delivery"


def _print_mail(mail: ReceivedMail) -> None:
    stamp = time.strftime("%H:%M:%S", time.localtime(mail.received_at))
    print(f"{stamp} To: {mail.message['To']}  Subject: {mail.message['Subject']}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.smtp",
        description="SMTP sink; prints each message's To and Subject on stdout.",
    )
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    with SMTPSink(port=args.port, on_message=_print_mail) as sink:
        # The banner goes to stderr so stdout carries nothing but messages.
        print(
            f"SMTP sink listening; point notifier at it with\n"
            f"  NOTIFIER_SMTP_URL={sink.url}\nCtrl-C stops it.",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the way to stop it
            threading.Event().wait()


if __name__ == "__main__":
    main()
