"""The worker's side: send a claimed batch once, at its senders' pace, and record each fate.

A batch sends only what can go within the next second (`WITHIN_SECONDS`). The rest goes back to
the schedule, due when its sender will have a slot, so a message waiting for its turn stays
where a cancel, a re-plan or a STOP reaches it. What is held (`sending`) is looked at again
right before its call (`recheck`). An email's acceptance is written down before the batch
starts another call, a text's within `RECORD_SECONDS`. Every state change is a conditional
update, so a redelivered task, a second worker or a re-plan racing with us can never make a
message go out twice.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from queue import Empty, SimpleQueue
from typing import Any

from sqlalchemy.orm import Session

from . import eventlog, hooks, states
from .calls import provider_calls
from .channels import Message, SendError
from .compose import compose, texted_phones
from .models import Notification
from .recheck import Skip, allowed_from, at_call, opted_out_phones, recheck
from .runtime import Runtime
from .states import Status, transition
from .store import notifications
from .track import after_sms_failure, apply_early_receipts

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
# A batch takes its senders' slots of the next second only; the rest waits in the schedule.
WITHIN_SECONDS = 1.0
# A provider call sees the database as it was at most this long before the call: a cancel, a
# re-plan or a STOP committed earlier wins over it.
RECHECK_SECONDS = 0.5


@dataclass(frozen=True)
class Outgoing:
    """A message admitted to a batch, and when (time.monotonic) its sender's slot comes."""

    n: Notification
    message: Message
    at: float


def deliver(rt: Runtime, ids: Sequence[int], worker: str = "worker") -> dict[int, str]:
    """Sends the claimed (`queued`) notifications among `ids`; returns the state each ended in.

    One batch shares its reads, its claim and its records, so the database is visited a few
    times per batch rather than per message; its provider calls run side by side, since each
    mostly waits on the network.
    """
    looked = time.monotonic()
    with rt.sessions() as session:
        now = rt.clock()
        claimed = notifications.batch(session, ids, Status.QUEUED)
        opted_out = opted_out_phones(session, claimed)
        texted = texted_phones(session, claimed)
        fates: dict[int, str] = {}
        ready: list[tuple[Notification, Message]] = []
        for n in claimed:
            skip = recheck(rt, session, n, now, opted_out)
            if skip is None:
                # Its priority decides the order in which its sender's slots are handed out.
                message = compose(rt, n, now, n.patient.phone in texted)
                ready.append((n, replace(message, priority=n.priority)))
            else:
                fates[n.id] = _skip(session, n, skip, now, Status.QUEUED)
        batch = Batch(rt, session, worker, looked)
        outgoing = batch.admit(ready, fates)
        batch.hold(outgoing)
        fates.update(batch.send_all(outgoing))
        return fates


# How often a batch still sending looks at its lease.
UPKEEP_SECONDS = 1.0
# The longest a text's acceptance waits to be written down, grouped with others (a crash in
# that time leaves it `unknown`, to be looked up at Twilio). An email's is written down before
# the batch starts another call.
RECORD_SECONDS = 0.02
# A message, what its call answered (a provider id; a Skip for "withdrawn"; None for "no longer
# ours"; or the error), and how long the call took.
_Answer = tuple[Notification, "str | Skip | BaseException | None", float]


class Batch:
    """The messages one worker holds (`sending`, with a lease) while it calls the provider.

    The session belongs to the calling thread; the pool threads only wait for their slot and
    call the provider, and renew the lease or look at the database through sessions of their
    own.
    """

    def __init__(self, rt: Runtime, session: Session, worker: str, looked: float) -> None:
        self.rt, self.session, self.worker = rt, session, worker
        self.lease = timedelta(seconds=rt.settings.sending_lease_seconds)
        self.held: set[int] = set()
        self.lease_until = rt.clock()
        # Acceptances not yet written down: since when (time.monotonic), and whether an
        # email is among them.
        self.sent: list[dict[str, Any]] = []
        self.sent_since = 0.0
        self.sent_email = False
        # Held rows whose call has begun; held rows a later look withdrew, and why; when
        # (time.monotonic) the database was last looked at for the rows still waiting.
        self.called: set[int] = set()
        self.withdrawn: dict[int, Skip] = {}
        self.looked = looked
        self._lock = threading.Lock()

    def admit(
        self, ready: list[tuple[Notification, Message]], fates: dict[int, str]
    ) -> list[Outgoing]:
        """The messages whose sender has a slot within the next second, soonest first. The
        others go back to the schedule, due a little before their sender will be free."""
        now = self.rt.clock()
        admitted: list[Outgoing] = []
        later: dict[int, datetime] = {}
        for channel_name, channel in (("sms", self.rt.sms), ("email", self.rt.email)):
            mine = [(n, m) for n, m in ready if n.channel == channel_name]
            if not mine:
                continue
            start = time.monotonic()
            try:
                delays = channel.pace([m for _, m in mine], WITHIN_SECONDS)
            except SendError as exc:
                for n, _ in mine:
                    fates[n.id] = _failed_send(self.rt, self.session, n, exc, Status.QUEUED)
                continue
            for (n, message), delay in zip(mine, delays, strict=True):
                if delay <= WITHIN_SECONDS:
                    admitted.append(Outgoing(n, message, start + delay))
                else:  # its place in line, or the morning if that falls in quiet hours
                    due = now + timedelta(seconds=delay - WITHIN_SECONDS / 2)
                    later[n.id] = allowed_from(self.rt, n, due)
                    fates[n.id] = Status.SCHEDULED
        states.defer(self.session, later, now)
        return sorted(admitted, key=lambda o: o.at)

    def hold(self, outgoing: list[Outgoing]) -> None:
        """queued → sending for the admitted messages, with each body stored for
        reconciliation."""
        now = self.rt.clock()
        self.lease_until = now + self.lease
        bodies = {o.n.id: o.message.text for o in outgoing}
        self.held = states.hold(self.session, bodies, now, self.worker, self.lease_until)
        self.session.commit()

    def send_all(self, outgoing: list[Outgoing]) -> dict[int, str]:
        """Calls the provider for each held message at its slot, as many at a time as
        `calls.InFlight` says, and records the answers as they come (an email's before the
        next call starts)."""
        fates = {o.n.id: "lost-race" for o in outgoing if o.n.id not in self.held}
        waiting = iter([o for o in outgoing if o.n.id in self.held])
        answers: SimpleQueue[_Answer] = SimpleQueue()
        pool, window = provider_calls(self.rt.settings.send_concurrency)
        started = 0

        def start(count: int) -> None:
            nonlocal started
            for o in itertools.islice(waiting, count):
                pool.submit(self._answer, o, answers)
                started += 1

        start(window.size)
        for answered in self._collect(answers, lambda: started):
            more, fatal = 0, None
            for n, answer, seconds in answered:
                more += window.answered(seconds)
                if isinstance(answer, BaseException) and not isinstance(answer, SendError):
                    fatal = answer
                else:
                    fates[n.id] = self._fate(n, answer, seconds)
            if fatal is not None:
                self.record_sent()
                raise fatal
            if self.sent_email:
                # Before another call starts: SMTP cannot be asked what it took, so a crash
                # may send again only the emails whose calls were in flight.
                self.record_sent()
            start(more)
        self.record_sent()
        return fates

    def _answer(self, o: Outgoing, answers: SimpleQueue[_Answer]) -> None:
        """In a pool thread: waits for the message's slot, calls, and puts the answer."""
        pause = o.at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        started = time.monotonic()
        try:
            answer: str | Skip | BaseException | None = self._call(o)
        except BaseException as exc:  # a SendError is a fate; the batch raises the rest
            answer = exc
        answers.put((o.n, answer, time.monotonic() - started))

    def _fate(self, n: Notification, answer: str | Skip | SendError | None, seconds: float) -> str:
        if isinstance(answer, SendError):
            return _failed_send(self.rt, self.session, n, answer, Status.SENDING)
        if isinstance(answer, Skip):
            return _skip(self.session, n, answer, self.rt.clock(), Status.SENDING)
        if answer is None:
            return "lost-race"
        eventlog.message_sent(n, seconds)
        if not self.sent:
            self.sent_since = time.monotonic()
        phone = n.patient.phone if n.channel == "sms" else None
        self.sent.append({"nid": n.id, "pid": answer, "at": self.rt.clock(), "phone": phone})
        self.sent_email |= n.channel == "email"
        return Status.SENT

    def _collect(
        self, answers: SimpleQueue[_Answer], started: Callable[[], int]
    ) -> Iterator[list[_Answer]]:
        """The calls' answers, all that have come at each moment, until every call started
        has answered. Meanwhile what was sent is written down within `RECORD_SECONDS`, and
        the lease is kept: a slow provider must not make a row look lost."""
        upkeep = time.monotonic()
        collected = 0
        while collected < started():
            patience = UPKEEP_SECONDS
            if self.sent:
                patience = max(0.0, self.sent_since + RECORD_SECONDS - time.monotonic())
            try:
                answered = [answers.get(timeout=patience)]
            except Empty:
                answered = []
            while answered and not answers.empty():
                answered.append(answers.get())
            if answered:
                collected += len(answered)
                yield answered
            if self.sent and time.monotonic() - self.sent_since >= RECORD_SECONDS:
                self.record_sent()
            if time.monotonic() - upkeep >= UPKEEP_SECONDS:
                if self._lease_too_short():
                    self._renew()
                upkeep = time.monotonic()

    def _call(self, o: Outgoing) -> str | Skip | None:
        """In a pool thread: the provider's id for the message; a Skip if the world no longer
        wants it sent; None if the row is no longer this worker's to send."""
        # Never call the provider for a row whose lease could lapse before the answer: the
        # reaper would call it unknown and reconciliation might send it again.
        if self._lease_too_short():
            self._renew()
        with self._lock:
            if time.monotonic() - self.looked > RECHECK_SECONDS:
                self._look_again()
            if o.n.id in self.withdrawn:
                return self.withdrawn.pop(o.n.id)
            if o.n.id not in self.held:
                return None
            skip = at_call(self.rt, o.n, self.rt.clock())
            if skip is not None:
                self.held.discard(o.n.id)
                return skip
            self.called.add(o.n.id)
        channel = self.rt.sms if o.n.channel == "sms" else self.rt.email
        return channel.send(o.message)

    def _look_again(self) -> None:
        """Re-checks, in one query, the held rows whose calls have not begun (caller holds
        the lock)."""
        looked = time.monotonic()
        waiting = self.held - self.called
        if waiting:
            with self.rt.sessions() as session:
                rows = notifications.batch(session, waiting, Status.SENDING, owner=self.worker)
                opted_out = opted_out_phones(session, rows)
                now = self.rt.clock()
                self.held -= waiting - {n.id for n in rows}
                for n in rows:
                    skip = recheck(self.rt, session, n, now, opted_out)
                    if skip is not None:
                        self.withdrawn[n.id] = skip
                        self.held.discard(n.id)
        self.looked = looked

    def _lease_too_short(self) -> bool:
        margin = timedelta(seconds=self.rt.settings.provider_timeout + 10)
        return self.rt.clock() + margin >= self.lease_until

    def _renew(self) -> None:
        with self._lock:
            if not self._lease_too_short():  # another thread renewed while this one waited
                return
            now = self.rt.clock()
            until = now + self.lease
            with self.rt.sessions() as session:
                self.held = notifications.renew_lease(session, self.held, self.worker, until, now)
                session.commit()
            self.lease_until = until

    def record_sent(self) -> None:
        if self.sent:
            sent, self.sent = self.sent, []
            early = states.record_sent(self.session, sent)
            if early:
                apply_early_receipts(self.session, self.rt.clinic, early, self.rt.clock())
            self.sent_email = False
        self.session.commit()


def _skip(session: Session, n: Notification, skip: Skip, now: datetime, source: Status) -> Status:
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
    if skip.due_at is not None:
        values["due_at"] = skip.due_at
    else:
        values["reason"] = skip.reason
    detail = skip.detail or skip.reason
    moved = transition(session, [n.id], [source], skip.status, now, detail, **values)
    if moved and skip.due_at is None:
        withdrawn = skip.status == Status.CANCELLED
        (eventlog.message_withdrawn if withdrawn else eventlog.message_suppressed)(n, skip.reason)
    return skip.status


def _failed_send(
    rt: Runtime, session: Session, n: Notification, exc: SendError, source: Status
) -> Status:
    now = rt.clock()
    attempts = n.attempts + 1
    log.warning("notification %s: %s send failed (%s): %s", n.id, n.channel, exc.outcome, exc)
    values: dict[str, Any] = {}
    to: Status
    if exc.outcome == "transient" and attempts < MAX_ATTEMPTS:
        to = Status.SCHEDULED
        values["due_at"] = now + backoff(attempts, rt.settings.retry_base_seconds)
    elif exc.outcome == "unknown":
        # Reconciled only once the provider has surely finished with the request.
        to = Status.UNKNOWN
        values["lease_until"] = now + timedelta(seconds=rt.settings.sending_lease_seconds)
    else:
        to = Status.FAILED
        values["reason"] = exc.reason or ("gave_up" if exc.outcome == "transient" else "provider")
    moved = transition(
        session,
        [n.id],
        [source],
        to,
        now,
        str(exc)[:300],
        error_code=exc.code,
        **({"lease_owner": None, "lease_until": None} | values),
    )
    if moved:
        retry = to == Status.SCHEDULED
        eventlog.message_failed(n, to, exc.code, exc.reason or exc.outcome, retry=retry)
        if to == Status.FAILED:
            hooks.message_failed(session, n, to, values["reason"], exc.code, now)
    if to == Status.FAILED and n.channel == "sms" and exc.outcome == "permanent":
        after_sms_failure(session, rt.clinic, n, exc.reason, now)
    session.commit()
    return to


def backoff(attempts: int, first: float = 30.0) -> timedelta:
    """30 s, 1 min, 2 min, … capped at an hour, with jitter so retries don't stampede."""
    base = min(first * 2 ** (attempts - 1), 3600)
    return timedelta(seconds=base * random.uniform(0.75, 1.25))
