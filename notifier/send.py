"""The worker's side: re-check a claimed notification, render it, send it once, record the fate.

Every state change is a conditional update (`schedule.transition`), so a redelivered task, a
second worker or a re-plan racing with us can never make a message go out twice.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from queue import Empty, SimpleQueue
from typing import Any, cast

from sqlalchemy import (
    Integer,
    String,
    Table,
    Text,
    bindparam,
    exists,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, joinedload

from .channels import Attachment, Message, SendError
from .clinic import Location, Treatment
from .ics import appointment_ics
from .links import ACTIONS, make_token
from .models import (
    Appointment,
    Notification,
    NotificationEvent,
    Patient,
    SmsOptOut,
    UTCDateTime,
)
from .plan import next_allowed, plan
from .runtime import Runtime
from .schedule import recipient, transition, visit
from .track import after_sms_failure, apply_early_receipts

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
# Which appointment states each kind still makes sense in.
ACTIVE_FOR = {
    "confirmation": {"booked"},
    "reminder": {"booked"},
    "manual": {"booked"},
    "aftercare": {"booked", "completed"},
    "rebook": {"booked", "completed"},
    "cancellation": {"cancelled"},
}


@dataclass(frozen=True)
class Skip:
    status: str  # suppressed | cancelled | scheduled (deferred)
    reason: str
    due_at: datetime | None = None


def deliver(rt: Runtime, ids: Sequence[int], worker: str = "worker") -> dict[int, str]:
    """Sends the claimed (`queued`) notifications among `ids`; returns the state each ended in.

    One batch shares its reads, its claim and its record of what was sent, so the database
    is visited a few times per batch rather than per message; its provider calls run side by
    side, since each mostly waits on the network.
    """
    with rt.sessions() as session:
        now = rt.clock()
        claimed = _queued(session, ids)
        opted_out = _opted_out(session, claimed)
        fates: dict[int, str] = {}
        ready: list[tuple[Notification, Message]] = []
        for n in claimed:
            skip = recheck(rt, session, n, now, opted_out)
            if skip is None:
                ready.append((n, compose(rt, n, now)))
            else:
                fates[n.id] = _skip(session, n, skip, now)
        batch = Batch(rt, session, worker)
        batch.hold(ready)
        fates.update(batch.send_all(ready))
        batch.record_sent()
        return fates


# How often a batch still sending writes down its answers so far and looks at its lease.
UPKEEP_SECONDS = 1.0
# A message, what its call answered (a provider id, None for "no longer ours", or the error),
# and how long the call took.
_Answer = tuple[Notification, "str | BaseException | None", float]


class Batch:
    """The messages one worker holds (`sending`, with a lease) while it calls the provider.

    The session belongs to the calling thread; the pool threads only wait for their slot and
    call the provider, and renew the lease through a session of their own.
    """

    def __init__(self, rt: Runtime, session: Session, worker: str) -> None:
        self.rt, self.session, self.worker = rt, session, worker
        self.lease = timedelta(seconds=rt.settings.sending_lease_seconds)
        self.held: set[int] = set()
        self.lease_until = rt.clock()
        self.sent: list[dict[str, Any]] = []
        self._renewing = threading.Lock()

    def hold(self, ready: list[tuple[Notification, Message]]) -> None:
        """queued → sending for the whole batch, with each body stored for reconciliation."""
        now = self.rt.clock()
        self.lease_until = now + self.lease
        if self.session.get_bind().dialect.name == "postgresql":
            values = {
                "ids": [n.id for n, _ in ready],
                "bodies": [m.text for _, m in ready],
                "now": now,
                "owner": self.worker,
                "until": self.lease_until,
            }
            self.held = set(self.session.scalars(_HOLD, values))
        else:
            self.held = set(
                transition(
                    self.session, [n.id for n, _ in ready], ["queued"], "sending", now,
                    lease_owner=self.worker, lease_until=self.lease_until,
                    attempts=Notification.attempts + 1,
                )
            )  # fmt: skip
            bodies = [{"id": n.id, "body": m.text} for n, m in ready if n.id in self.held]
            if bodies:
                self.session.execute(update(Notification), bodies)
        self.session.commit()

    def send_all(self, ready: list[tuple[Notification, Message]]) -> dict[int, str]:
        """Calls the provider for each held message at its sender's next slot, as many at a
        time as `_in_flight` says, and records failures as their answers come back."""
        fates = {n.id: "lost-race" for n, _ in ready if n.id not in self.held}
        paced = iter(self._pace([(n, m) for n, m in ready if n.id in self.held], fates))
        answers: SimpleQueue[_Answer] = SimpleQueue()

        def call(n: Notification, message: Message, at: float) -> None:
            started = time.monotonic()
            try:
                answer: str | BaseException | None = self._call(n, message, at)
            except BaseException as exc:  # a SendError is a fate; the batch raises the rest
                answer = exc
            answers.put((n, answer, time.monotonic() - max(started, at)))

        pool, window = _calls(self.rt.settings.send_concurrency)
        started = 0

        def start(count: int) -> None:
            nonlocal started
            for at, n, message in itertools.islice(paced, count):
                pool.submit(call, n, message, at)
                started += 1

        start(window.size)
        for n, answer, seconds in self._collect(answers, lambda: started):
            start(window.answered(seconds))
            if isinstance(answer, SendError):
                fates[n.id] = _failed_send(self.rt, self.session, n, answer)
            elif isinstance(answer, BaseException):
                raise answer
            elif answer is None:
                fates[n.id] = "lost-race"
            else:
                self.sent.append({"nid": n.id, "pid": answer, "at": self.rt.clock()})
                fates[n.id] = "sent"
        return fates

    def _collect(
        self, answers: SimpleQueue[_Answer], started: Callable[[], int]
    ) -> Iterator[_Answer]:
        """The calls' answers as they come, until every call started has answered. Meanwhile,
        every second, what was sent is written down and the lease kept: a message may wait
        long for its sender's slot (other workers took the slots before it), and its row must
        not be presumed lost meanwhile."""
        upkeep = time.monotonic()
        collected = 0
        while collected < started():
            try:
                yield answers.get(timeout=UPKEEP_SECONDS)
                collected += 1
            except Empty:
                pass
            if time.monotonic() - upkeep >= UPKEEP_SECONDS:
                self.record_sent()
                if self._lease_too_short():
                    self._renew()
                upkeep = time.monotonic()

    def _pace(
        self, held: list[tuple[Notification, Message]], fates: dict[int, str]
    ) -> list[tuple[float, Notification, Message]]:
        """When (time.monotonic) each message may go, soonest first; a channel that cannot say
        fails its rows."""
        paced: list[tuple[float, Notification, Message]] = []
        for channel_name, channel in (("sms", self.rt.sms), ("email", self.rt.email)):
            mine = [(n, m) for n, m in held if n.channel == channel_name]
            if not mine:
                continue
            start = time.monotonic()
            try:
                delays = channel.pace([m for _, m in mine])
            except SendError as exc:
                for n, _ in mine:
                    fates[n.id] = _failed_send(self.rt, self.session, n, exc)
                continue
            paced += [(start + d, n, m) for (n, m), d in zip(mine, delays, strict=True)]
        return sorted(paced, key=lambda item: item[0])

    def _call(self, n: Notification, message: Message, at: float) -> str | None:
        """In a pool thread: the provider's id for the message, or None if the row is no
        longer this worker's to send."""
        pause = at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        # Never call the provider for a row whose lease could lapse before the answer: the
        # reaper would call it unknown and reconciliation might send it again.
        if self._lease_too_short():
            self._renew()
        if n.id not in self.held:
            return None
        channel = self.rt.sms if n.channel == "sms" else self.rt.email
        return channel.send(message)

    def _lease_too_short(self) -> bool:
        margin = timedelta(seconds=self.rt.settings.provider_timeout + 10)
        return self.rt.clock() + margin >= self.lease_until

    def _renew(self) -> None:
        with self._renewing:
            if not self._lease_too_short():  # another thread renewed while this one waited
                return
            now = self.rt.clock()
            until = now + self.lease
            with self.rt.sessions() as session:
                renewed = session.scalars(
                    update(Notification)
                    .where(
                        Notification.id.in_(self.held),
                        Notification.status == "sending",
                        Notification.lease_owner == self.worker,
                    )
                    .values(lease_until=until, updated_at=now)
                    .returning(Notification.id),
                    execution_options={"synchronize_session": False},
                )
                self.held = set(renewed)
                session.commit()
            self.lease_until = until

    def record_sent(self) -> None:
        if self.sent:
            sent, self.sent = self.sent, []
            if self.session.get_bind().dialect.name == "postgresql":
                columns = {"ids": "nid", "pids": "pid", "ats": "at"}
                self.session.execute(
                    _RECORD_SENT, {name: [r[key] for r in sent] for name, key in columns.items()}
                )
            else:
                self.session.execute(_MARK_SENT, sent)
                history = [
                    {"notification_id": r["nid"], "status": "sent", "at": r["at"]} for r in sent
                ]
                self.session.execute(insert(NotificationEvent), history)
            apply_early_receipts(self.session, [r["pid"] for r in sent], self.rt.clock())
        self.session.commit()


# A call that took longer than this was waiting on the network (Twilio answers in 0.1-0.3 s),
# not on the CPU or its turn at the interpreter lock behind a batch being rendered.
SLOW_CALL_SECONDS = 0.05
FEWEST_IN_FLIGHT = 4


class _InFlight:
    """How many provider calls a worker process keeps in flight. Few while the provider answers
    at once: more threads would only take turns at the interpreter lock, and the handing over
    costs more than the calls (16 threads sent 10% fewer messages per CPU second than 8, and
    8 as many as 4, against a provider answering at once). More, up to `most`, while calls
    spend their time waiting for the provider, as they do across the internet."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.size = min(FEWEST_IN_FLIGHT, most)
        self._lock = threading.Lock()  # `notifier serve` sends several batches at once

    def answered(self, seconds: float) -> int:
        """How many calls to start now that one has answered in `seconds`."""
        with self._lock:
            if seconds > SLOW_CALL_SECONDS and self.size < self.most:
                self.size += 1
                return 2
            if seconds <= SLOW_CALL_SECONDS and self.size > min(FEWEST_IN_FLIGHT, self.most):
                self.size -= 1
                return 0
            return 1


_pools: dict[tuple[int, int], tuple[ThreadPoolExecutor, _InFlight]] = {}
_pools_lock = threading.Lock()


def _calls(size: int) -> tuple[ThreadPoolExecutor, _InFlight]:
    """The process's threads for provider calls, and how many of them to use. Keyed by pid
    too: a forked worker process inherits the dict but not the threads."""
    key = (os.getpid(), size)
    with _pools_lock:
        if key not in _pools:
            pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="provider")
            _pools[key] = (pool, _InFlight(size))
        return _pools[key]


_table = cast(Table, Notification.__table__)
# sending → sent for many rows at once. Only this worker's lease-held rows are `sending`; an
# `unknown` row (lease lapsed under a very slow provider) was sent all the same.
_MARK_SENT = (
    update(_table)
    .where(
        _table.c.id == bindparam("nid"),
        or_(_table.c.status == "sending", _table.c.status == "unknown"),
    )
    .values(
        status="sent",
        provider_id=bindparam("pid"),
        sent_at=bindparam("at"),
        updated_at=bindparam("at"),
        lease_owner=None,
        lease_until=None,
    )
)
# PostgreSQL: `hold` in one statement, the bodies and the history with it.
_HOLD = text(
    """
    WITH held AS (
        UPDATE notifications AS n
        SET status = 'sending', updated_at = :now, lease_owner = :owner, lease_until = :until,
            attempts = n.attempts + 1, body = s.body
        FROM unnest(:ids, :bodies) AS s (id, body)
        WHERE n.id = s.id AND n.status = 'queued'
        RETURNING n.id
    ), history AS (
        INSERT INTO notification_events (notification_id, status, at)
        SELECT id, 'sending', :now FROM held
    )
    SELECT id FROM held
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Integer())),
    bindparam("bodies", type_=ARRAY(Text())),
    bindparam("now", type_=UTCDateTime()),
    bindparam("until", type_=UTCDateTime()),
)
# PostgreSQL: `record_sent` for the whole batch in one statement, its history written by a CTE.
_RECORD_SENT = text(
    """
    WITH sent AS (
        UPDATE notifications AS n
        SET status = 'sent', provider_id = s.pid, sent_at = s.at, updated_at = s.at,
            lease_owner = NULL, lease_until = NULL
        FROM unnest(:ids, :pids, :ats) AS s (id, pid, at)
        WHERE n.id = s.id AND n.status IN ('sending', 'unknown')
        RETURNING n.id, s.at
    )
    INSERT INTO notification_events (notification_id, status, at)
    SELECT id, 'sent', at FROM sent
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Integer())),
    bindparam("pids", type_=ARRAY(String())),
    bindparam("ats", type_=ARRAY(UTCDateTime())),
)


def _queued(session: Session, ids: Sequence[int]) -> list[Notification]:
    query = (
        select(Notification)
        .where(Notification.id.in_(list(ids)), Notification.status == "queued")
        # One query, joined: a batch's rows, appointments and patients in one round trip.
        .options(
            joinedload(Notification.appointment, innerjoin=True).joinedload(
                Appointment.patient, innerjoin=True
            )
        )
        .order_by(Notification.id)
    )
    return list(session.scalars(query))


def _opted_out(session: Session, rows: list[Notification]) -> set[str]:
    phones = {n.appointment.patient.phone for n in rows if n.channel == "sms"} - {None}
    if not phones:
        return set()
    query = select(SmsOptOut.phone).where(SmsOptOut.phone.in_(phones), SmsOptOut.active.is_(True))
    return set(session.scalars(query))


def recheck(
    rt: Runtime, session: Session, n: Notification, now: datetime, opted_out: set[str]
) -> Skip | None:
    """What the world looks like now, not when the row was planned: None means go ahead."""
    appointment, patient = n.appointment, n.appointment.patient
    location = rt.clinic.location(appointment.location_id)
    treatment = rt.clinic.treatment(appointment.treatment_id)
    if location is None or treatment is None:
        return Skip("suppressed", "not_in_config")
    who = recipient(patient, location.zone)
    if now >= n.expires_at:
        return Skip("suppressed", "stale")
    if appointment.status not in ACTIVE_FOR[n.kind]:
        return Skip("cancelled", f"appointment {appointment.status}")
    if not (who.sms if n.channel == "sms" else who.email):
        return Skip("suppressed", "no_consent")
    if n.channel == "sms" and patient.phone in opted_out:
        return Skip("suppressed", "opted_out")
    if n.kind == "rebook" and _has_future_visit(session, patient, now):
        return Skip("suppressed", "already_rebooked")
    # Manual reminders and email fallbacks are not the policy's, so the plan cannot vouch for them.
    if n.kind != "manual" and not n.slot.startswith("fallback:"):
        wanted = plan(visit(appointment), who, treatment, rt.clinic.policy, now)
        if not any(
            p.key == (n.kind, n.channel, n.slot) and p.due_at == n.planned_for for p in wanted
        ):
            return Skip("cancelled", "plan_changed")
    if n.channel == "sms":
        allowed = next_allowed(now, rt.clinic.policy.quiet_hours, who.zone)
        if allowed != now:
            if allowed >= n.expires_at:
                return Skip("suppressed", "quiet_hours")
            return Skip("scheduled", "quiet hours", due_at=allowed)
    return None


def _has_future_visit(session: Session, patient: Patient, now: datetime) -> bool:
    query = select(
        exists().where(
            Appointment.patient_id == patient.id,
            Appointment.status == "booked",
            Appointment.start_at > now,
        )
    )
    return bool(session.scalar(query))


def _skip(session: Session, n: Notification, skip: Skip, now: datetime) -> str:
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
    if skip.due_at is not None:
        values["due_at"] = skip.due_at
    else:
        values["reason"] = skip.reason
    transition(session, [n.id], ["queued"], skip.status, now, skip.reason, **values)
    return skip.status


def _failed_send(rt: Runtime, session: Session, n: Notification, exc: SendError) -> str:
    now = rt.clock()
    attempts = n.attempts + 1
    log.warning("notification %s: %s send failed (%s): %s", n.id, n.channel, exc.outcome, exc)
    values: dict[str, Any] = {}
    if exc.outcome == "transient" and attempts < MAX_ATTEMPTS:
        to, values["due_at"] = "scheduled", now + backoff(attempts, rt.settings.retry_base_seconds)
    elif exc.outcome == "unknown":
        # Reconciled only once the provider has surely finished with the request.
        to = "unknown"
        values["lease_until"] = now + timedelta(seconds=rt.settings.sending_lease_seconds)
    else:
        to = "failed"
        values["reason"] = exc.reason or ("gave_up" if exc.outcome == "transient" else "provider")
    transition(
        session,
        [n.id],
        ["sending"],
        to,
        now,
        str(exc)[:300],
        error_code=exc.code,
        **({"lease_owner": None, "lease_until": None} | values),
    )
    if to == "failed" and n.channel == "sms" and exc.outcome == "permanent":
        after_sms_failure(session, n, exc.reason, now)
    session.commit()
    return to


def backoff(attempts: int, first: float = 30.0) -> timedelta:
    """30 s, 1 min, 2 min, … capped at an hour, with jitter so retries don't stampede."""
    base = min(first * 2 ** (attempts - 1), 3600)
    return timedelta(seconds=base * random.uniform(0.75, 1.25))


def compose(rt: Runtime, n: Notification, now: datetime) -> Message:
    appointment, patient = n.appointment, n.appointment.patient
    location = rt.clinic.location(appointment.location_id)
    treatment = rt.clinic.treatment(appointment.treatment_id)
    assert location is not None and treatment is not None  # recheck() made sure
    rendered = rt.renderer.render(
        n.kind, n.channel, patient.language, context(rt, n, location, treatment)
    )
    if n.channel == "sms":
        return Message(n.id, patient.phone or "", rendered.text, sender=location.sender)
    attachments: tuple[Attachment, ...] = ()
    if n.kind == "confirmation":
        attachments = (_calendar_file(rt, appointment, location, treatment, now),)
    return Message(
        n.id,
        patient.email or "",
        rendered.text,
        subject=rendered.subject,
        html=rendered.html,
        attachments=attachments,
    )


def context(
    rt: Runtime, n: Notification, location: Location, treatment: Treatment
) -> dict[str, Any]:
    appointment, patient = n.appointment, n.appointment.patient
    zone = location.zone
    return {
        "lang": patient.language,
        "practice": {"name": rt.clinic.practice.name},
        "location": location.for_templates(),
        "patient": {"first_name": patient.first_name},
        "appointment": {
            "start": appointment.start_at.astimezone(zone),
            "end": appointment.end_at.astimezone(zone),
            "provider": appointment.provider,
        },
        "treatment": {
            "name": treatment.wording(patient.language),
            "avoid_hours": treatment.avoid_hours,
        },
        "notification": {
            "kind": n.kind,
            "ask_confirm": n.ask_confirm and appointment.confirmation == "unconfirmed",
            "rescheduled": appointment.rescheduled,
        },
        "links": _links(rt, n, appointment),
    }


def _links(rt: Runtime, n: Notification, appointment: Appointment) -> dict[str, str | None]:
    if n.channel != "email" or not n.ask_confirm or appointment.confirmation != "unconfirmed":
        return {"confirm": None, "reschedule": None}
    secret = rt.settings.secret_key or ""
    return {
        action: f"{rt.settings.public_url}/links/"
        + make_token(secret, appointment.id, action, appointment.end_at)
        for action in ACTIONS
    }


def _calendar_file(
    rt: Runtime,
    appointment: Appointment,
    location: Location,
    treatment: Treatment,
    now: datetime,
) -> Attachment:
    domain = (rt.settings.mail_from or "notifier.invalid").rpartition("@")[2].strip(">")
    data = appointment_ics(
        uid=f"appointment-{appointment.id}@{domain}",
        summary=f"{treatment.wording(appointment.patient.language)} - {rt.clinic.practice.name}",
        start=appointment.start_at,
        end=appointment.end_at,
        location=f"{rt.clinic.practice.name}, {location.address}",
        description=f"{location.name}: {location.display_phone}",
        # Grows with every reschedule, so calendars move the event instead of adding one.
        sequence=int(appointment.booked_at.timestamp()),
        stamp=now,
    )
    return Attachment("appointment.ics", "text/calendar", data)
