"""The chaos run: due SMS and email through the production shape while everything fails.

The real processes (two `notifier scheduler`s, Celery `notifier worker`s) run on a PostgreSQL
database and a Redis server of the run's own, and send through the twilio SDK to the fake Twilio,
which answers errors, hangs and drops at random, and over SMTP to a loopback mail server. The
texts go out of a network of clinics, each location with a sender number of its own at the
clinic default of 1 text a second. A monkey SIGKILLs a worker or a clock every few seconds
(restarting it) and kills Redis, whose queued tasks die with it. Then the faults stop, the system
settles, and the providers' records are held against the database's: every text accepted exactly
once, every email at least once and again only with its own Message-ID and no more often than
the emails a killed worker had on the wire, or the report says how far from that it was.

Used by tests/test_chaos.py (the CI size), tests/test_send_crash.py (a worker killed mid-batch)
and benchmarks/chaos.py (the long run).
"""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import phonenumbers
import redis
from sqlalchemy import Engine, Row, create_engine, insert, select, text
from sqlalchemy.exc import OperationalError

from notifier import db
from notifier.clinic import Policy
from notifier.models import Appointment, Notification, Patient
from tests.conftest import POSTGRES_ADMIN_URL
from tests.fakes import FakeTwilio, SMTPSink, free_port, wait_until
from tests.test_processes import NOTIFIER

FINAL = frozenset({"sent", "delivered", "undelivered", "failed", "suppressed", "cancelled"})
# 555 numbers are valid US numbers to phonenumbers; five area codes give 50,000 patients.
AREA_CODES = ("718", "516", "347", "646", "917")
# Sender numbers come from other area codes, so no sender is ever a patient.
SENDER_AREA_CODES = ("212", "315", "518", "585", "607", "631", "716", "845", "914")
MAIL_DOMAIN = "northshore.example"
MAIL_FROM = f"North Shore Skin & Neurology <reminders@{MAIL_DOMAIN}>"
# How long the fleet's texts may take per kill beyond the lease: a worker restarting, a clock
# tick to reap its rows, one to reconcile them, one to claim them again.
RESTART_SLACK_SECONDS = 5.0


class ServiceMissing(RuntimeError):
    """PostgreSQL or redis-server is not there: the run cannot even start."""


@dataclass(frozen=True)
class ChaosPlan:
    n: int = 2000  # due texts
    emails: int = 0
    # Locations, each with a sender number of its own: one number at 1 text a second would
    # take 2,000 s for 2,000 texts, a network of clinics takes n / senders.
    senders: int = 2
    # None: the clinic default (1 a second per sender number, as carriers allow a long code).
    sms_per_second: float | None = None
    schedulers: int = 2
    workers: int = 2
    concurrency: int = 2
    # NOTIFIER_SEND_CONCURRENCY: provider calls a worker process keeps in flight. Small, so
    # that the bound on email duplicates per killed worker (this × concurrency) means something.
    send_concurrency: int = 4
    kills: bool = True
    kill_every: tuple[float, float] = (1.0, 3.0)
    redis_restarts: int = 2
    error_rate: float = 0.10
    hang_rate: float = 0.02
    drop_rate: float = 0.01
    # Past the client's timeout, well inside the `sending` lease (2 × timeout + 10 s).
    hang_seconds: float = 2.0
    provider_timeout: float = 1.0
    retry_base_seconds: float = 0.5
    # How long a claimed row may wait for a worker before a clock claims it again: the time
    # it takes to notice tasks lost with Redis or with a killed worker's prefetch.
    queue_lease_seconds: float = 10.0
    chaos_seconds: float = 120.0
    settle_seconds: float = 90.0
    seed: int = field(default_factory=lambda: random.randrange(2**32))

    @property
    def rate(self) -> float:
        return self.sms_per_second or Policy().sms_per_second

    @property
    def sending_lease_seconds(self) -> float:
        """As notifier.settings has it: a row `sending` longer than this is presumed lost."""
        return 2 * self.provider_timeout + 10

    @property
    def lease_seconds(self) -> float:
        """The longest a killed worker may hold its messages: its `sending` rows or its
        prefetched `queued` ones, whichever lease is longer."""
        return max(self.sending_lease_seconds, self.queue_lease_seconds)

    @property
    def emails_in_flight(self) -> int:
        """The most emails one worker can have on the wire when it is killed."""
        return self.send_concurrency * self.concurrency


@dataclass(frozen=True)
class ChaosReport:
    due: int
    accepted: int
    duplicates: int
    lost: int
    pending: int
    # Final rows that disagree with the provider: sent with a SID it never gave that number,
    # or accepted by it while the row says otherwise.
    mismatched: int
    failed_permanent: int
    emails_due: int
    emails_accepted: int
    email_duplicates: int
    # At most the emails on the wire at the kills: killed workers × NOTIFIER_SEND_CONCURRENCY ×
    # pool processes.
    email_duplicates_allowed: int
    # Copies whose Message-ID is not their notification's: a mail store could not tell them
    # for the same message.
    email_foreign_ids: int
    emails_lost: int
    email_lateness_p50: float
    email_lateness_max: float
    senders: int
    sms_per_second: float
    # From the fleet's start to the last text the provider accepted, and what the rate alone
    # would take: the texts of the busiest sender, one slot each.
    text_drain_seconds: float
    text_drain_ideal_seconds: float
    # The most texts one sender had accepted within any 10 s: the rate allows 10 × rate + 1.
    busiest_sender_10s: int
    elapsed_seconds: float
    kills: dict[str, int]
    redis_restarts: int
    faults: dict[str, int]
    statuses: dict[str, int]
    seed: int

    def summary(self) -> str:
        kills = ", ".join(f"{role} {count}" for role, count in sorted(self.kills.items()))
        faults = ", ".join(f"{kind} {count}" for kind, count in sorted(self.faults.items()))
        statuses = ", ".join(f"{status} {count}" for status, count in sorted(self.statuses.items()))
        return "\n".join(
            [
                f"texts due             {self.due}",
                f"accepted (distinct)   {self.accepted}",
                f"duplicates            {self.duplicates}",
                f"lost                  {self.lost}",
                f"still pending         {self.pending} (texts and emails)",
                f"mismatched rows       {self.mismatched}",
                f"failed (permanent)    {self.failed_permanent}",
                f"emails due            {self.emails_due}",
                f"emails accepted       {self.emails_accepted}",
                f"email duplicates      {self.email_duplicates}"
                f" (allowed {self.email_duplicates_allowed}: killed workers × emails in flight)",
                f"foreign Message-IDs   {self.email_foreign_ids}",
                f"emails lost           {self.emails_lost}",
                f"email lateness        p50 {self.email_lateness_p50:.1f} s,"
                f" max {self.email_lateness_max:.1f} s",
                f"senders               {self.senders} at {self.sms_per_second:g} text/s each",
                f"text drain            {self.text_drain_seconds:.1f} s"
                f" (the rate alone: {self.text_drain_ideal_seconds:.0f} s)",
                f"busiest sender        {self.busiest_sender_10s} texts in 10 s"
                f" (allowed {math.floor(10 * self.sms_per_second) + 1})",
                f"elapsed               {self.elapsed_seconds:.1f} s",
                f"kills                 {sum(self.kills.values())} ({kills or 'none'})",
                f"Redis restarts        {self.redis_restarts}",
                f"provider faults       {sum(self.faults.values())} ({faults or 'none'})",
                f"final states          {statuses}",
                f"seed                  {self.seed}",
            ]
        )


def run(plan: ChaosPlan, workdir: Path) -> ChaosReport:
    """The whole run; logs of every process are left in `workdir`."""
    with deployment(plan, workdir) as d:
        with Monkey(plan, d.fleet, d.broker, d.progress) as monkey:
            await_final(d.engine, plan.chaos_seconds)
        d.fake.chaos(0, 0, 0)
        await_final(d.engine, plan.settle_seconds)
        elapsed = time.time() - d.started
        # A request hung at the provider when its row gave up may still land: wait it out.
        time.sleep(plan.hang_seconds + plan.provider_timeout)
        return tally(d, elapsed, monkey.kills, monkey.redis_restarts)


@dataclass(frozen=True)
class Planted:
    """What `plant` put in the tables: each recipient with its one notification's id."""

    texts: dict[str, int]  # phone → notification id
    emails: dict[str, int]  # address → notification id
    due_at: dict[int, float]  # notification id → when it fell due (Unix time)


@dataclass
class Deployment:
    """A run's database, Redis, fake providers and fleet, with what was planted."""

    plan: ChaosPlan
    engine: Engine
    broker: RedisServer
    fake: FakeTwilio
    smtp: SMTPSink
    planted: Planted
    fleet: Fleet
    started: float  # Unix time the fleet was started

    def accepted(self) -> int:
        """Texts and emails the providers have taken so far, duplicates included."""
        return len(self.fake.messages) + len(self.smtp.received)

    def progress(self) -> float:
        return self.accepted() / max(1, self.plan.n + self.plan.emails)


@contextmanager
def deployment(
    plan: ChaosPlan,
    workdir: Path,
    *,
    text_every: timedelta = timedelta(0),
    email_every: timedelta = timedelta(0),
) -> Iterator[Deployment]:
    """Everything up and the messages planted, the k-th text falling due `k × text_every` after
    the start (likewise the emails); the fleet runs while entered. Provider faults as the plan
    says, from the start."""
    if shutil.which("redis-server") is None:
        raise ServiceMissing("redis-server is not on PATH; the chaos run starts one of its own")
    with ExitStack() as resources:
        database_url = resources.enter_context(own_database())
        broker = resources.enter_context(RedisServer(free_port(), workdir / "redis.log"))
        fake = resources.enter_context(FakeTwilio())
        smtp = resources.enter_context(SMTPSink())
        locations = network_locations(plan.senders)
        clinic = network_clinic(workdir, locations, plan.sms_per_second)
        env = process_env(plan, database_url, broker.url, fake, smtp, clinic)
        migrate(env)
        engine = resources.enter_context(disposing(db.make_engine(database_url)))
        planted = plant(
            engine,
            datetime.now(UTC),
            plan.n,
            emails=plan.emails,
            locations=[location_id for location_id, _ in locations],
            text_every=text_every,
            email_every=email_every,
        )
        fake.chaos(plan.error_rate, plan.hang_rate, plan.drop_rate, plan.hang_seconds, plan.seed)
        started = time.time()
        fleet = resources.enter_context(Fleet(env, workdir, plan))
        yield Deployment(plan, engine, broker, fake, smtp, planted, fleet, started)


@contextmanager
def own_database() -> Iterator[str]:
    """A fresh `notifier_chaos_<random>` database on the machine's PostgreSQL, dropped after."""
    name = f"notifier_chaos_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        raise ServiceMissing(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}") from exc
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def disposing(engine: Engine) -> Iterator[Engine]:
    try:
        yield engine
    finally:
        engine.dispose()


class RedisServer:
    """A redis-server of the run's own that keeps nothing on disk: a crash loses every task."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        if not wait_until(self._answers, timeout=10, interval=0.05):
            raise ServiceMissing(f"redis-server did not start on port {self.port}: {self.log}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def crash(self) -> None:
        """kill -9 and start again on the same port, empty."""
        self.kill()
        self.start()

    def _answers(self) -> bool:
        try:
            with redis.Redis(port=self.port, socket_timeout=0.5) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False


def process_env(
    plan: ChaosPlan,
    database_url: str,
    broker_url: str,
    fake: FakeTwilio,
    smtp: SMTPSink,
    clinic: Path,
) -> dict[str, str]:
    # Nothing of the caller's own notifier or Twilio settings leaks into the run.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "TWILIO_"))}
    return {
        **inherited,
        "NOTIFIER_DATABASE_URL": database_url,
        "NOTIFIER_BROKER_URL": broker_url,
        "NOTIFIER_CONFIG": str(clinic),
        "NOTIFIER_SECRET_KEY": "chaos-secret",
        "NOTIFIER_OUTBOX": str(clinic.parent / "outbox.txt"),
        "NOTIFIER_PROVIDER_TIMEOUT": str(plan.provider_timeout),
        "NOTIFIER_RETRY_BASE_SECONDS": str(plan.retry_base_seconds),
        "NOTIFIER_QUEUE_LEASE_SECONDS": str(plan.queue_lease_seconds),
        "NOTIFIER_SEND_CONCURRENCY": str(plan.send_concurrency),
        "NOTIFIER_SMTP_URL": smtp.url,
        "NOTIFIER_MAIL_FROM": MAIL_FROM,
        # Sending processes refuse to start without it; nothing here calls back.
        "NOTIFIER_PUBLIC_URL": "http://127.0.0.1:8000",
        "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": fake.auth_token,
        # Every location has a sender of its own; this one is the fallback no text should use.
        "TWILIO_FROM_NUMBER": sender_numbers(1)[0],
        "TWILIO_API_BASE_URL": fake.url,
    }


def sender_numbers(count: int) -> list[str]:
    """`count` distinct random 555 numbers, valid to phonenumbers and new to each run, so runs
    sharing a Redis never share a sender's rate slots."""
    pool = len(SENDER_AREA_CODES) * 10_000
    picks = random.sample(range(pool), count)
    numbers = [f"+1{SENDER_AREA_CODES[p // 10_000]}555{p % 10_000:04d}" for p in picks]
    invalid = [n for n in numbers if not phonenumbers.is_valid_number(phonenumbers.parse(n))]
    if invalid:
        raise ValueError(f"not valid US numbers: {invalid[:5]}")
    return numbers


def network_locations(count: int) -> list[tuple[str, str]]:
    """A network of `count` clinic locations, each id with a sender number of its own."""
    return [(f"clinic-{k:03d}", sender) for k, sender in enumerate(sender_numbers(count))]


def network_clinic(
    workdir: Path, locations: Sequence[tuple[str, str]], sms_per_second: float | None
) -> Path:
    """The clinic config of the network: one treatment, the default policy but for the
    sender rate, when one is given."""
    path = workdir / "chaos-clinic.toml"
    rate = "" if sms_per_second is None else f"sms_per_second = {sms_per_second}\n"
    parts = [f'[practice]\nname = "North Shore Skin & Neurology"\n\n[policy]\n{rate}']
    for location_id, sender in locations:
        parts.append(
            "[[locations]]\n"
            f'id = "{location_id}"\n'
            f'name = "Clinic {location_id}"\n'
            f'phone = "{sender}"\n'
            f'address = "{location_id}, 1 Main St, New York, NY 10001"\n'
            'time_zone = "America/New_York"\n'
            f'sender = "{sender}"\n'
        )
    parts.append(
        "[[treatments]]\n"
        'id = "botox-cosmetic"\n'
        'name = "Botox, cosmetic"\n'
        'patient_wording = { en = "Botox for fine lines" }\n'
    )
    path.write_text("\n".join(parts))
    return path


def migrate(env: dict[str, str]) -> None:
    done = subprocess.run([*NOTIFIER, "db", "upgrade"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`notifier db upgrade` failed:\n{done.stdout}{done.stderr}")


def chaos_phones(n: int) -> list[str]:
    """n distinct valid US numbers, in E.164: one patient, so one notification, per number."""
    if n > len(AREA_CODES) * 10_000:
        raise ValueError(f"at most {len(AREA_CODES) * 10_000} distinct numbers")
    phones = [f"+1{AREA_CODES[i // 10_000]}555{i % 10_000:04d}" for i in range(n)]
    invalid = [p for p in phones if not phonenumbers.is_valid_number(phonenumbers.parse(p))]
    if invalid:
        raise ValueError(f"not valid US numbers: {invalid[:5]}")
    return phones


def daytime_zone(now: datetime) -> str:
    """A zone where it is about 14:00 now, so no SMS of the run waits for quiet hours to end."""
    offset = (14 - now.astimezone(UTC).hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}"  # POSIX-style names: Etc/GMT-5 is five hours ahead of UTC


def plant(
    engine: Engine,
    now: datetime,
    n: int,
    *,
    emails: int = 0,
    locations: Sequence[str] = ("manhasset", "forest-hills"),
    text_every: timedelta = timedelta(0),
    email_every: timedelta = timedelta(0),
) -> Planted:
    """Inserts n manual SMS and `emails` manual emails straight into the tables (the API would
    take minutes for 20,000 bookings), one patient each, the k-th text due at now + k ×
    `text_every` (likewise the emails), the locations taken in turn. `manual` is the kind the
    send-time re-check takes as it is, with no plan to match."""
    phones = chaos_phones(n)
    zone = daytime_zone(now)
    start = now + timedelta(days=3)
    stamps = {"created_at": now, "updated_at": now}
    people = [(f"chaos-pat-{i}", "sms", now + i * text_every) for i in range(n)]
    people += [(f"chaos-mail-{i}", "email", now + i * email_every) for i in range(emails)]
    people.sort(key=lambda person: person[2])  # as a booking system would bring them
    patients, appointments, notifications = [], [], []
    for k, (who, channel, due) in enumerate(people):
        phone = phones[int(who.rpartition("-")[2])] if channel == "sms" else None
        patients.append(_patient(who, phone, zone, now))
        appointments.append(_appointment(who, locations[k % len(locations)], start, stamps))
        notifications.append(_notification(who, channel, due, stamps))
    with engine.begin() as connection:
        connection.execute(insert(Patient), patients)
        connection.execute(insert(Appointment), appointments)
        connection.execute(insert(Notification), notifications)
        query = select(Notification.patient_id, Notification.id, Notification.due_at)
        rows = {patient_id: (nid, due) for patient_id, nid, due in connection.execute(query)}
    return Planted(
        texts={phone: rows[f"chaos-pat-{i}"][0] for i, phone in enumerate(phones)},
        emails={_address(f"chaos-mail-{i}"): rows[f"chaos-mail-{i}"][0] for i in range(emails)},
        due_at={nid: due.timestamp() for nid, due in rows.values()},
    )


def _address(patient_id: str) -> str:
    return f"{patient_id}@example.org"


def _patient(who: str, phone: str | None, zone: str, now: datetime) -> dict[str, object]:
    return {
        "id": who,
        "first_name": "Pat",
        "last_name": f"Chaos {who}",
        "phone": phone,
        "email": None if phone else _address(who),
        "language": "en",
        "time_zone": zone,
        "consent_sms": bool(phone),
        "consent_email": not phone,
        "consent_marketing": False,
        "updated_at": now,
    }


def _appointment(
    who: str, location: str, start: datetime, stamps: dict[str, datetime]
) -> dict[str, object]:
    return {
        "id": f"apt-{who}",
        "patient_id": who,
        "location_id": location,
        "treatment_id": "botox-cosmetic",
        "provider": "Dr. E. Jacob Simhaee",
        "start_at": start,
        "end_at": start + timedelta(minutes=30),
        "status": "booked",
        "confirmation": "unconfirmed",
        "booked_at": stamps["created_at"],
        "rescheduled": False,
        "last_event_at": stamps["created_at"],
        **stamps,
    }


def _notification(
    who: str, channel: str, due: datetime, stamps: dict[str, datetime]
) -> dict[str, object]:
    return {
        "appointment_id": f"apt-{who}",
        "patient_id": who,
        "kind": "manual",
        "channel": channel,
        "slot": "chaos",
        "ask_confirm": False,
        "planned_for": due,
        "due_at": due,
        "expires_at": due + timedelta(days=2),
        "status": "scheduled",
        "attempts": 0,
        "staff": "chaos monkey",
        **stamps,
    }


class Fleet:
    """The notifier processes, each in a process group of its own, so that one SIGKILL takes
    a Celery worker down with its pool children, as a crashed container would."""

    def __init__(self, env: dict[str, str], logs: Path, plan: ChaosPlan) -> None:
        self.env = env
        self.logs = logs
        self.commands = {f"scheduler-{i}": ["scheduler"] for i in range(plan.schedulers)}
        worker = ["worker", "--concurrency", str(plan.concurrency)]
        self.commands |= {f"worker-{i}": worker for i in range(plan.workers)}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> Fleet:
        for name in self.commands:
            self.start(name)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()

    def start(self, name: str) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [*NOTIFIER, *self.commands[name]],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def crash(self, name: str) -> None:
        """SIGKILL, no goodbye, and start again."""
        process = self.processes[name]
        _signal_group(process, signal.SIGKILL)
        process.wait()
        self.start(name)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    # The group may be gone already: a process that exited by itself takes its group along.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


class Monkey(threading.Thread):
    """Every few seconds, kills a random clock or worker; crashes Redis as the provider's
    acceptances pass evenly spaced marks, so every restart lands mid-run. Runs while entered."""

    def __init__(
        self, plan: ChaosPlan, fleet: Fleet, broker: RedisServer, progress: Callable[[], float]
    ) -> None:
        super().__init__(name="chaos-monkey", daemon=True)
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.fleet = fleet
        self.broker = broker
        self.progress = progress
        self.kills: Counter[str] = Counter()
        self.redis_restarts = 0
        self._halted = threading.Event()

    def __enter__(self) -> Monkey:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._halted.set()
        self.join()

    def run(self) -> None:
        marks = [(i + 1) / (self.plan.redis_restarts + 1) for i in range(self.plan.redis_restarts)]
        while not self._halted.wait(self.rng.uniform(*self.plan.kill_every)):
            if marks and self.progress() >= marks[0]:
                marks.pop(0)
                self.broker.crash()
                self.redis_restarts += 1
            elif self.plan.kills:
                victim = self.rng.choice(sorted(self.fleet.commands))
                self.fleet.crash(victim)
                self.kills[victim.partition("-")[0]] += 1


def statuses(engine: Engine) -> Counter[str]:
    query = text("SELECT status, count(*) FROM notifications GROUP BY status")
    with engine.connect() as connection:
        return Counter(dict(connection.execute(query).tuples().all()))


def await_final(engine: Engine, seconds: float) -> bool:
    """Waits until no row is pending any more; False if some still are after `seconds`."""
    return wait_until(lambda: set(statuses(engine)) <= FINAL, timeout=seconds, interval=0.5)


def tally(d: Deployment, elapsed: float, kills: Counter[str], redis_restarts: int) -> ChaosReport:
    """Holds the providers' records against each notification row."""
    rows = notification_rows(d.engine)
    sids = d.fake.sids_by_recipient()
    figures: Counter[str] = Counter()
    for phone, notification_id in d.planted.texts.items():
        row, taken = rows[notification_id], sids.get(phone, [])
        permanent = row.status == "failed" and row.reason != "gave_up"
        sent = row.status in ("sent", "delivered")
        figures["accepted"] += bool(taken)
        figures["duplicates"] += len(taken) > 1
        figures["lost"] += not taken and not permanent
        figures["failed_permanent"] += permanent
        figures["mismatched"] += row.status in FINAL and (
            (sent and row.provider_id not in taken) or (bool(taken) and not sent)
        )
    mail = email_tally(d, rows)
    lateness = sorted(at - d.planted.due_at[nid] for nid, at in mail.first_copy_at.items()) or [0.0]
    texts = text_times(d.fake)
    plan = d.plan
    return ChaosReport(
        due=plan.n,
        accepted=figures["accepted"],
        duplicates=figures["duplicates"],
        lost=figures["lost"],
        pending=sum(row.status not in FINAL for row in rows.values()),
        mismatched=figures["mismatched"] + mail.mismatched,
        failed_permanent=figures["failed_permanent"],
        emails_due=plan.emails,
        emails_accepted=mail.accepted,
        email_duplicates=mail.duplicates,
        email_duplicates_allowed=kills["worker"] * plan.emails_in_flight,
        email_foreign_ids=mail.foreign_ids,
        emails_lost=mail.lost,
        email_lateness_p50=round(median(lateness), 1),
        email_lateness_max=round(lateness[-1], 1),
        senders=plan.senders,
        sms_per_second=plan.rate,
        text_drain_seconds=round(
            max((t[-1] for t in texts.values()), default=d.started) - d.started, 1
        ),
        text_drain_ideal_seconds=math.ceil(plan.n / plan.senders) / plan.rate,
        busiest_sender_10s=max((busiest(t, 10.0) for t in texts.values()), default=0),
        elapsed_seconds=round(elapsed, 1),
        kills=dict(kills),
        redis_restarts=redis_restarts,
        faults=d.fake.faults_injected,
        statuses=dict(statuses(d.engine)),
        seed=plan.seed,
    )


def notification_rows(engine: Engine) -> dict[int, Row[Any]]:
    query = select(
        Notification.id, Notification.status, Notification.reason, Notification.provider_id
    )
    with engine.connect() as connection:
        return {row.id: row for row in connection.execute(query)}


def message_id(notification_id: int) -> str:
    """The Message-ID the email channel gives a notification, every time it is sent."""
    return f"<notification-{notification_id}@{MAIL_DOMAIN}>"


@dataclass(frozen=True)
class EmailTally:
    accepted: int  # notifications with at least one copy at the mail server
    duplicates: int  # copies beyond the first
    foreign_ids: int  # copies whose Message-ID is not their notification's
    lost: int
    # Rows sent with another Message-ID than theirs, or not sent while a copy arrived.
    mismatched: int
    # For each extra copy, when the copy before it arrived (Unix time): the kill that cut the
    # exchange it repeats is the first one after that.
    duplicated_at: tuple[float, ...]
    first_copy_at: dict[int, float]  # notification id → Unix time


def email_tally(d: Deployment, rows: dict[int, Row[Any]]) -> EmailTally:
    copies: dict[str, list[tuple[float, str]]] = {}
    for mail in d.smtp.received:
        for address in mail.rcpt_tos:
            copies.setdefault(address, []).append(
                (mail.received_at, str(mail.message["Message-ID"]))
            )
    figures: Counter[str] = Counter()
    duplicated_at: list[float] = []
    first_copy_at: dict[int, float] = {}
    for address, notification_id in d.planted.emails.items():
        row, got = rows[notification_id], sorted(copies.get(address, []))
        sent = row.status in ("sent", "delivered")
        figures["foreign_ids"] += sum(mid != message_id(notification_id) for _, mid in got)
        figures["lost"] += not got
        figures["mismatched"] += row.status in FINAL and (
            (sent and f"<{row.provider_id}>" != message_id(notification_id))
            or (bool(got) and not sent)
        )
        if got:
            first_copy_at[notification_id] = got[0][0]
            duplicated_at += [at for at, _ in got[:-1]]
    return EmailTally(
        accepted=len(first_copy_at),
        duplicates=len(duplicated_at),
        foreign_ids=figures["foreign_ids"],
        lost=figures["lost"],
        mismatched=figures["mismatched"],
        duplicated_at=tuple(sorted(duplicated_at)),
        first_copy_at=first_copy_at,
    )


def duplicates_per_kill(duplicated_at: Sequence[float], kills: Sequence[float]) -> list[int]:
    """How many email copies each kill (Unix times, in order) caused: a copy is owed to the
    first kill after its original. One more entry at the end: copies no kill explains."""
    counts = [0] * (len(kills) + 1)
    for at in duplicated_at:
        counts[bisect_left(kills, at)] += 1
    return counts


def text_times(fake: FakeTwilio) -> dict[str, list[float]]:
    """When the provider accepted each text, by sender number, in order."""
    times: dict[str, list[float]] = {}
    for message in fake.messages:
        times.setdefault(message["from_"] or "", []).append(message["received_at"])
    return {sender: sorted(at) for sender, at in times.items()}


def busiest(times: Sequence[float], seconds: float) -> int:
    """The most of `times` (in order) within any `seconds`."""
    return max((bisect_left(times, at + seconds) - i for i, at in enumerate(times)), default=0)
