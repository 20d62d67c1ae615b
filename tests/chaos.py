"""The chaos run: N due SMS through the production shape while everything fails.

The real processes (two `notifier scheduler`s, Celery `notifier worker`s) run on a PostgreSQL
database and a Redis server of the run's own, and send through the twilio SDK to the fake Twilio,
which answers errors, hangs and drops at random. A monkey SIGKILLs a worker or a clock every
few seconds (restarting it) and kills Redis, whose queued tasks die with it. Then the faults
stop, the system settles, and the provider's record is held against the database's: every
notification accepted exactly once, or the report says how far from that it was.

Used by tests/test_chaos.py (the CI size) and benchmarks/chaos.py (the long run).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import phonenumbers
import redis
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.exc import OperationalError

from notifier import db
from notifier.models import Appointment, Notification, Patient
from notifier.settings import EXAMPLE_CLINIC
from tests.conftest import POSTGRES_ADMIN_URL
from tests.fakes import FakeTwilio, free_port, wait_until
from tests.test_processes import NOTIFIER

FINAL = frozenset({"sent", "delivered", "undelivered", "failed", "suppressed", "cancelled"})
# 555 numbers are valid US numbers to phonenumbers; five area codes give 50,000 of them.
AREA_CODES = ("718", "516", "347", "646", "917")
SENDER = "+15165550100"


class ServiceMissing(RuntimeError):
    """PostgreSQL or redis-server is not there: the run cannot even start."""


@dataclass(frozen=True)
class ChaosPlan:
    n: int = 2000
    schedulers: int = 2
    workers: int = 2
    concurrency: int = 2
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
    sms_per_second: float = 200.0
    chaos_seconds: float = 120.0
    settle_seconds: float = 90.0
    seed: int = field(default_factory=lambda: random.randrange(2**32))


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
                f"messages due          {self.due}",
                f"accepted (distinct)   {self.accepted}",
                f"duplicates            {self.duplicates}",
                f"lost                  {self.lost}",
                f"still pending         {self.pending}",
                f"mismatched rows       {self.mismatched}",
                f"failed (permanent)    {self.failed_permanent}",
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
    if shutil.which("redis-server") is None:
        raise ServiceMissing("redis-server is not on PATH; the chaos run starts one of its own")
    with ExitStack() as resources:
        database_url = resources.enter_context(own_database())
        broker = resources.enter_context(RedisServer(free_port(), workdir / "redis.log"))
        fake = resources.enter_context(FakeTwilio())
        env = process_env(plan, database_url, broker.url, fake, workdir)
        migrate(env)
        engine = resources.enter_context(disposing(db.make_engine(database_url)))
        phones = plant(engine, plan.n, datetime.now(UTC))
        fake.chaos(plan.error_rate, plan.hang_rate, plan.drop_rate, plan.hang_seconds, plan.seed)
        started = time.monotonic()
        fleet = resources.enter_context(Fleet(env, workdir, plan))
        with Monkey(plan, fleet, broker, lambda: len(fake.messages) / plan.n) as monkey:
            await_final(engine, plan.chaos_seconds)
        fake.chaos(0, 0, 0)
        await_final(engine, plan.settle_seconds)
        elapsed = time.monotonic() - started
        # A request hung at the provider when its row gave up may still land: wait it out.
        time.sleep(plan.hang_seconds + plan.provider_timeout)
        return tally(engine, fake, phones, plan, elapsed, monkey)


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
    plan: ChaosPlan, database_url: str, broker_url: str, fake: FakeTwilio, workdir: Path
) -> dict[str, str]:
    # Nothing of the caller's own notifier or Twilio settings leaks into the run.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "TWILIO_"))}
    return {
        **inherited,
        "NOTIFIER_DATABASE_URL": database_url,
        "NOTIFIER_BROKER_URL": broker_url,
        "NOTIFIER_CONFIG": str(clinic_file(workdir, plan.sms_per_second)),
        "NOTIFIER_SECRET_KEY": "chaos-secret",
        "NOTIFIER_OUTBOX": str(workdir / "outbox.txt"),
        "NOTIFIER_PROVIDER_TIMEOUT": str(plan.provider_timeout),
        "NOTIFIER_RETRY_BASE_SECONDS": str(plan.retry_base_seconds),
        "NOTIFIER_QUEUE_LEASE_SECONDS": str(plan.queue_lease_seconds),
        "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": fake.auth_token,
        "TWILIO_FROM_NUMBER": SENDER,
        "TWILIO_API_BASE_URL": fake.url,
    }


def clinic_file(workdir: Path, sms_per_second: float) -> Path:
    """The example clinic, with a sender rate that lets N messages out in minutes, not hours."""
    path = workdir / "chaos-clinic.toml"
    rate = f"[policy]\nsms_per_second = {sms_per_second}\n"
    path.write_text(EXAMPLE_CLINIC.read_text().replace("[policy]\n", rate, 1))
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


def plant(engine: Engine, n: int, now: datetime) -> dict[str, int]:
    """Inserts n due manual SMS straight into the tables (the API would take minutes for 20,000
    bookings); returns each patient's phone with its notification's id. `manual` is the kind the
    send-time re-check takes as it is, with no plan to match."""
    phones = chaos_phones(n)
    zone = daytime_zone(now)
    start = now + timedelta(days=3)
    stamps = {"created_at": now, "updated_at": now}
    with engine.begin() as connection:
        connection.execute(
            insert(Patient), [_patient(i, phone, zone, now) for i, phone in enumerate(phones)]
        )
        connection.execute(insert(Appointment), [_appointment(i, start, stamps) for i in range(n)])
        connection.execute(insert(Notification), [_notification(i, now, stamps) for i in range(n)])
        query = select(Notification.patient_id, Notification.id)
        ids = {
            patient_id: notification_id for patient_id, notification_id in connection.execute(query)
        }
    return {phone: ids[f"chaos-pat-{i}"] for i, phone in enumerate(phones)}


def _patient(i: int, phone: str, zone: str, now: datetime) -> dict[str, object]:
    return {
        "id": f"chaos-pat-{i}",
        "first_name": "Pat",
        "last_name": f"Chaos {i}",
        "phone": phone,
        "email": None,
        "language": "en",
        "time_zone": zone,
        "consent_sms": True,
        "consent_email": False,
        "consent_marketing": False,
        "updated_at": now,
    }


def _appointment(i: int, start: datetime, stamps: dict[str, datetime]) -> dict[str, object]:
    return {
        "id": f"chaos-apt-{i}",
        "patient_id": f"chaos-pat-{i}",
        "location_id": ("manhasset", "forest-hills")[i % 2],
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


def _notification(i: int, now: datetime, stamps: dict[str, datetime]) -> dict[str, object]:
    return {
        "appointment_id": f"chaos-apt-{i}",
        "patient_id": f"chaos-pat-{i}",
        "kind": "manual",
        "channel": "sms",
        "slot": "chaos",
        "ask_confirm": False,
        "planned_for": now,
        "due_at": now,
        "expires_at": now + timedelta(days=2),
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


def tally(
    engine: Engine,
    fake: FakeTwilio,
    phones: dict[str, int],
    plan: ChaosPlan,
    elapsed: float,
    monkey: Monkey,
) -> ChaosReport:
    """Holds the provider's record against each notification row."""
    query = select(
        Notification.id, Notification.status, Notification.reason, Notification.provider_id
    )
    with engine.connect() as connection:
        rows = {row.id: row for row in connection.execute(query)}
    sids = fake.sids_by_recipient()
    figures: Counter[str] = Counter()
    for phone, notification_id in phones.items():
        row, taken = rows[notification_id], sids.get(phone, [])
        permanent = row.status == "failed" and row.reason != "gave_up"
        sent = row.status in ("sent", "delivered")
        figures["accepted"] += bool(taken)
        figures["duplicates"] += len(taken) > 1
        figures["lost"] += not taken and not permanent
        figures["pending"] += row.status not in FINAL
        figures["failed_permanent"] += permanent
        figures["mismatched"] += row.status in FINAL and (
            (sent and row.provider_id not in taken) or (bool(taken) and not sent)
        )
    return ChaosReport(
        due=plan.n,
        accepted=figures["accepted"],
        duplicates=figures["duplicates"],
        lost=figures["lost"],
        pending=figures["pending"],
        mismatched=figures["mismatched"],
        failed_permanent=figures["failed_permanent"],
        elapsed_seconds=round(elapsed, 1),
        kills=dict(monkey.kills),
        redis_restarts=monkey.redis_restarts,
        faults=fake.faults_injected,
        statuses=dict(statuses(engine)),
        seed=plan.seed,
    )
