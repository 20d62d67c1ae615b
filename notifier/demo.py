"""`notifier demo`: a whole simulated clinic day, dry-run, printed as each patient's timeline."""

from __future__ import annotations

import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from .channels import Message, Unpaced
from .ingest import apply_event
from .runtime import Runtime
from .settings import Settings
from .simulate import SimulatedClock, run_until
from .store import notifications

NEW_YORK = ZoneInfo("America/New_York")


@dataclass
class Recorder(Unpaced):
    """A channel that keeps what it was given, stamped with the simulated time."""

    channel: str
    clock: SimulatedClock
    sent: list[tuple[datetime, str, Message]] = field(default_factory=list)

    def send(self, message: Message) -> str:
        self.sent.append((self.clock(), self.channel, message))
        return f"demo-{self.channel}-{len(self.sent)}"

    def find(self, message: Message, known: Collection[str]) -> str | None:
        return None


@dataclass(frozen=True)
class Patient:
    id: str
    first: str
    last: str
    phone: str
    email: str | None
    language: str = "en"
    marketing: bool = False


ANA = Patient("pat-ana", "Ana", "Ruiz", "+1 718 555 0134", "ana@example.org", marketing=True)
CARLOS = Patient("pat-carlos", "Carlos", "Vega", "+1 516 555 0188", None, language="es")
GRACE = Patient("pat-grace", "Grace", "Kim", "+1 917 555 0162", "grace@example.org")
MIA = Patient("pat-mia", "Mia", "Novak", "+1 347 555 0121", "mia@example.org")
LI = Patient("pat-li", "Li", "Chen", "+1 646 555 0177", "li@example.org")


def script(day: date) -> list[tuple[datetime, str, Patient, dict[str, Any]]]:
    """(when, event type, patient, appointment) for the clinic's week around `day`."""

    def at(offset_days: int, hh: int, mm: int = 0) -> datetime:
        return datetime.combine(day + timedelta(days=offset_days), time(hh, mm), NEW_YORK)

    def visit(apt: str, loc: str, treat: str, start: datetime, minutes: int) -> dict[str, Any]:
        end = start + timedelta(minutes=minutes)
        return {"id": apt, "location": loc, "treatment": treat, "provider": "Dr. Rivera",
                "start": start.isoformat(), "end": end.isoformat()}  # fmt: skip

    ana = visit("apt-ana", "forest-hills", "botox-cosmetic", at(0, 10), 30)
    carlos = visit("apt-carlos", "manhasset", "botox-spasm", at(0, 11), 45)
    grace = visit("apt-grace", "forest-hills", "botox-cosmetic", at(0, 15), 30)
    mia = visit("apt-mia", "manhasset", "botox-cosmetic", at(0, 13), 30)
    li = visit("apt-li", "forest-hills", "botox-spasm", at(0, 16), 45)
    mia_moved = visit("apt-mia", "manhasset", "botox-cosmetic", at(1, 9, 30), 30)
    return [
        (at(-3, 9), "booked", ANA, ana),
        (at(-3, 9, 5), "booked", CARLOS, carlos),
        (at(-3, 10), "booked", LI, li),
        (at(-3, 22, 30), "booked", GRACE, grace),
        (at(-2, 12), "booked", MIA, mia),
        (at(-2, 16), "rescheduled", MIA, mia_moved),
        (at(-1, 18), "cancelled", LI, li),
        (at(0, 10, 40), "completed", ANA, {**ana, "end": at(0, 10, 40).isoformat()}),
        (at(0, 11, 50), "completed", CARLOS, carlos),
        (at(0, 15, 30), "no_show", GRACE, grace),
    ]  # fmt: skip


def event(
    n: int, when: datetime, kind: str, patient: Patient, apt: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": f"evt-{n:03d}",
        "type": f"appointment.{kind}",
        "occurred_at": when.isoformat(),
        "appointment": apt,
        "patient": {
            "id": patient.id,
            "first_name": patient.first,
            "last_name": patient.last,
            "phone": patient.phone,
            "email": patient.email,
            "language": patient.language,
            "consent": {"sms": True, "email": bool(patient.email), "marketing": patient.marketing},
        },
    }


def next_tuesday(today: date) -> date:
    return today + timedelta(days=(1 - today.weekday()) % 7 or 7)


def play(day: date | None, out: TextIO) -> None:
    day = day or next_tuesday(datetime.now(NEW_YORK).date())
    steps = script(day)
    clock = SimulatedClock(steps[0][0].astimezone(UTC))
    with tempfile.TemporaryDirectory(prefix="notifier-demo-") as tmp:
        # The clinic and templates of the environment; a throwaway database; nothing sent.
        settings = replace(
            Settings.from_env(), database_url=f"sqlite:///{Path(tmp) / 'demo.db'}", broker_url=None
        )
        rt = Runtime.build(settings, clock=clock)
        sms, email = Recorder("sms", clock), Recorder("email", clock)
        rt.sms, rt.email = sms, email
        rt.prepare_database()
        timeline: list[tuple[datetime, str, str]] = []
        for n, (when, kind, patient, apt) in enumerate(steps, start=1):
            run_until(rt, when.astimezone(UTC))
            with rt.sessions() as session:
                apply_event(session, rt.clinic, event(n, when, kind, patient, apt), clock())
            timeline.append((clock(), patient.id, f"event   appointment {kind}".replace("_", "-")))
        run_until(rt, datetime.combine(day + timedelta(days=100), time(12), NEW_YORK))
        with rt.sessions() as session:
            skipped = notifications.withdrawn(session)
        for sent_at, channel, message in sms.sent + email.sent:
            text = message.subject or message.text
            timeline.append((sent_at, _owner(rt, message), f"{channel:<7} {text}"))
        for patient_id, kind, channel, status, why, at in skipped:
            what = "withdrawn, the plan changed" if why == "plan_changed" else f"{status}: {why}"
            timeline.append((at, patient_id, f"{channel:<7} ({kind} {what})"))
    _print(out, rt, day, timeline)


def _owner(rt: Runtime, message: Message) -> str:
    with rt.sessions() as session:
        return notifications.one_by_id(session, message.notification_id).patient_id


def _print(out: TextIO, rt: Runtime, day: date, timeline: list[tuple[datetime, str, str]]) -> None:
    out.write(f"notifier demo: {rt.clinic.practice.name}, clinic day {day:%A %Y-%m-%d}\n")
    out.write("Times are New York time. Nothing is really sent: this is a dry run.\n")
    for patient in (ANA, CARLOS, GRACE, MIA, LI):
        out.write(f"\n{patient.first} {patient.last}\n")
        # Events first within a minute: they are what the messages answer to.
        mine = sorted(
            (t[0], not t[2].startswith("event"), t[2]) for t in timeline if t[1] == patient.id
        )
        for when, _, what in mine:
            out.write(f"  {when.astimezone(NEW_YORK):%a %b %d %H:%M}  {what}\n")
