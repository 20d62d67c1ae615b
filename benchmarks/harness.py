"""What every benchmark needs: a database of its own, a Redis of its own, the fake Twilio,
the notifier processes, and one way to report figures.

Benchmarks measure; they are not tests. Each one prints its figures as table lines
(`name | figure | target | baseline | ratio | pass/miss`) and writes
`benchmarks/results/<name>.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from notifier import db  # noqa: E402
from notifier.clinic import load_clinic  # noqa: E402
from notifier.models import utc_naive  # noqa: E402
from notifier.settings import EXAMPLE_CLINIC  # noqa: E402
from tests.fakes import free_port, stop, wait_until  # noqa: E402, F401  (used by the benchmarks)
from tests.fakes.twilio import FakeTwilio  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
POSTGRES_ADMIN_URL = os.environ.get(
    "NOTIFIER_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
NOTIFIER = [sys.executable, "-m", "notifier"]
SENDER = "+15165550100"
# Benchmarks must never wait for the carrier's 1 SMS a second per sender.
SMS_PER_SECOND = 100_000


# -- reporting ------------------------------------------------------------------------------


@dataclass
class Figure:
    """One line of the final table. `higher_is_better` decides how `ratio` reads against target."""

    name: str
    value: float
    unit: str
    target: float | None = None
    higher_is_better: bool = True
    baseline: float | None = None
    baseline_label: str = ""
    # value/baseline unless given (e.g. "≥ 1.0× baseline" targets are judged on the ratio).
    ratio: float | None = None
    ratio_target: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None and self.baseline:
            self.ratio = self.value / self.baseline

    @property
    def passed(self) -> bool | None:
        verdicts = []
        if self.target is not None:
            ok = self.value >= self.target if self.higher_is_better else self.value <= self.target
            verdicts.append(ok)
        if self.ratio_target is not None and self.ratio is not None:
            ok = (
                self.ratio >= self.ratio_target
                if self.higher_is_better
                else self.ratio <= self.ratio_target
            )
            verdicts.append(ok)
        return all(verdicts) if verdicts else None

    def cells(self) -> list[str]:
        op = "≥" if self.higher_is_better else "≤"
        targets = []
        if self.target is not None:
            targets.append(f"{op} {_num(self.target)} {self.unit}")
        if self.ratio_target is not None:
            targets.append(f"ratio {op} {_num(self.ratio_target)}")
        baseline = "-"
        if self.baseline is not None:
            baseline = f"{_num(self.baseline)} {self.unit}"
            if self.baseline_label:
                baseline += f" ({self.baseline_label})"
        verdict = {True: "pass", False: "MISS", None: "info"}[self.passed]
        return [
            self.name,
            f"{_num(self.value)} {self.unit}",
            " and ".join(targets) or "-",
            baseline,
            f"{self.ratio:.2f}×" if self.ratio is not None else "-",
            verdict,
        ]


def _num(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}" if x else "0"


def busy_percent(seconds: float) -> float:
    """How busy all cores together are over the next `seconds`."""
    before = _machine_ticks()
    time.sleep(seconds)
    busy, total = (b - a for a, b in zip(before, _machine_ticks(), strict=True))
    return round(100 * busy / total, 1) if total else 0.0


def background_busy(seconds: float = 1.0) -> float:
    """How busy the machine is before a benchmark starts anything: other people's processes
    share these cores and skew every figure."""
    load = busy_percent(seconds)
    if load > 15:
        say(f"WARNING: the machine is already {load}% busy before the benchmark starts")
    return load


def report(
    benchmark: str,
    figures: Sequence[Figure],
    details: dict[str, Any],
    quick: bool,
    background: float | None = None,
) -> None:
    """Prints the final table lines and writes results/<benchmark>.json."""
    print()
    print("name | figure | target | baseline | ratio | pass/miss")
    for f in figures:
        print(" | ".join(f.cells()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "benchmark": benchmark,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine(),
        "code": code_version(),
        "background_busy_percent_before_start": background,
        "figures": [asdict(f) | {"passed": f.passed, "cells": f.cells()} for f in figures],
        "details": details,
    }
    path = RESULTS / f"{benchmark}.json"
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(ram_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": _postgres_version(),
        "redis": _redis_version(),
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and the files of notifier/ that differed from it."""

    def git(*args: str) -> str:
        run = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return run.stdout.rstrip()

    changed = git("status", "--short", "--", "notifier", "celeryconfig.py")
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted": changed.splitlines()}


def _postgres_version() -> str:
    try:
        with psycopg.connect(_libpq(POSTGRES_ADMIN_URL), connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "unknown"
    except psycopg.Error:
        return "unreachable"


def _redis_version() -> str:
    try:
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "not installed"
    found = re.search(r"v=(\S+)", out)
    return found.group(1) if found else out.strip()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def arguments(description: str, **extra: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for iterating")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="wall",
        choices=["wall", "cpu"],
        help="sample the process under test with py-spy and print where its time goes: wall"
        " (default: waiting included) or cpu (only Python holding the GIL)",
    )
    for flag, options in extra.items():
        parser.add_argument("--" + flag.replace("_", "-"), **options)
    return parser.parse_args()


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def workdir(benchmark: str) -> Path:
    """A fresh directory for the run's logs and files, kept afterwards for reading the logs."""
    return Path(tempfile.mkdtemp(prefix=f"notifier-bench-{benchmark}-"))


# -- services -------------------------------------------------------------------------------


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextlib.contextmanager
def postgres_database(clinic: Path) -> Iterator[str]:
    """A fresh notifier_bench_<random> database, migrated, with the clinic's locations and
    treatments; dropped at the end. Yields its SQLAlchemy URL."""
    name = f"notifier_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        engine = db.make_engine(url)
        db.upgrade(engine)
        with db.make_sessionmaker(engine)() as session:
            db.sync_clinic(session, load_clinic(clinic))
        engine.dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def connect(url: str) -> psycopg.Connection[Any]:
    """A plain psycopg connection, for planting rows and counting them."""
    return psycopg.connect(_libpq(url), autocommit=True)


@dataclass(frozen=True)
class RedisServer:
    url: str
    pid: int


@contextlib.contextmanager
def redis_server(logs: Path) -> Iterator[RedisServer]:
    """A redis-server of our own on a spare port (never the machine's shared 6379)."""
    port = free_port()
    log = (logs / "redis.log").open("wb")
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(logs),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        if not wait_until(lambda: _pings(client), timeout=10):
            raise RuntimeError(f"redis-server on port {port} did not answer; see {log.name}")
        yield RedisServer(url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:  # not up yet
        return False


def bench_clinic(directory: Path) -> Path:
    """The example clinic with a sender rate no benchmark waits for."""
    path = directory / "clinic.toml"
    rate = f"[policy]\nsms_per_second = {SMS_PER_SECOND}\n"
    path.write_text(EXAMPLE_CLINIC.read_text().replace("[policy]\n", rate, 1))
    return path


class Stack(NamedTuple):
    database_url: str
    redis: RedisServer
    twilio: FakeTwilio
    env: dict[str, str]


@contextlib.contextmanager
def full_stack(logs: Path) -> Iterator[Stack]:
    """A database, a Redis and a fake Twilio of the run's own, for the example clinic at a rate
    no benchmark waits for, and the environment that points notifier at all three."""
    clinic = bench_clinic(logs)
    with postgres_database(clinic) as url, redis_server(logs) as server, FakeTwilio() as twilio:
        yield Stack(url, server, twilio, notifier_env(url, server.url, twilio, clinic))


def notifier_env(
    database_url: str, broker_url: str | None, twilio: FakeTwilio | None, clinic: Path, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "TWILIO_"))}
    env |= {
        "NOTIFIER_DATABASE_URL": database_url,
        "NOTIFIER_CONFIG": str(clinic),
        "NOTIFIER_QUEUE": f"notifier-bench-{uuid.uuid4().hex[:8]}",
        "NOTIFIER_SECRET_KEY": "bench-secret",
        "NOTIFIER_PUBLIC_URL": "https://reminders.clinic.example",
        "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    }
    if broker_url:
        env["NOTIFIER_BROKER_URL"] = broker_url
    if twilio is not None:
        env |= {
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_FROM_NUMBER": SENDER,
            "TWILIO_API_BASE_URL": twilio.url,
        }
    return env | extra


@dataclass
class Processes:
    """Subprocesses of one benchmark, each logging to its own file in `logs`; all stopped at
    the end."""

    env: dict[str, str]
    logs: Path
    running: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_of: dict[int, Path] = field(default_factory=dict)

    def start(self, argv: Sequence[str], label: str) -> subprocess.Popen[bytes]:
        path = next(p for n in range(1000) if not (p := self.logs / f"{label}-{n}.log").exists())
        with path.open("wb") as log:
            process = subprocess.Popen(
                list(argv), env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
            )
        self.running.append(process)
        self.log_of[process.pid] = path
        return process

    def notifier(self, *args: str) -> subprocess.Popen[bytes]:
        return self.start([*NOTIFIER, *args], args[0])

    def wait_for_log(self, process: subprocess.Popen[bytes], needle: str, timeout: float) -> None:
        path = self.log_of[process.pid]
        if not wait_until(lambda: needle in path.read_text(errors="replace"), timeout):
            tail = path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{path.name}: no {needle!r} after {timeout}s\n{tail}")

    def stop(self) -> None:
        stop(self.running, timeout=20)
        self.running.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def worker_ready(processes: Processes, worker: subprocess.Popen[bytes]) -> None:
    # Celery logs "celery@host ready." once its pool is up and it consumes.
    processes.wait_for_log(worker, " ready.", timeout=60)


def descendants(pid: int) -> list[int]:
    """The process and all its descendants (a Celery worker and its pool's children)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    tree = {pid}
    while found := {child for child, parent in parents.items() if parent in tree} - tree:
        tree |= found
    return sorted(tree)


def rss_tree_kib(pid: int) -> dict[int, int]:
    """VmRSS (KiB) of a process and of every descendant."""
    return {p: _rss_kib(p) for p in descendants(pid)}


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds the processes have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def pids_named(comm: str) -> list[int]:
    """Every process whose command name is `comm` (e.g. all PostgreSQL backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == comm:
                    found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds used by groups of processes between start() and stop(), and how busy the
    whole machine was: on a 2-core box the processes compete for the same cores."""

    def __init__(self, groups: dict[str, Callable[[], Sequence[int]]]) -> None:
        self.groups = groups | {"postgresql (all backends)": lambda: pids_named("postgres")}
        self._start: dict[str, float] = {}
        self._machine_start = (0.0, 0.0)

    def start(self) -> None:
        self._start = self._sample()
        self._machine_start = _machine_ticks()

    def stop(self) -> dict[str, float]:
        end = self._sample()
        busy, total = (b - a for a, b in zip(self._machine_start, _machine_ticks(), strict=True))
        used = {name: round(end[name] - self._start.get(name, 0.0), 2) for name in end}
        return used | {"machine busy %": round(100 * busy / total, 1) if total else 0.0}

    def _sample(self) -> dict[str, float]:
        return {name: cpu_seconds(pids()) for name, pids in self.groups.items()}


def _machine_ticks() -> tuple[float, float]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])
    return float(total - idle), float(total)


def _rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@contextlib.contextmanager
def profiled(
    pid: int, mode: str | None, out: Path, *, subprocesses: bool = False
) -> Iterator[None]:
    """Samples `pid` (and its children) with py-spy while the block runs, then prints where
    the time went: mode "wall" counts waiting too, "cpu" only Python holding the GIL; None profiles
    nothing. py-spy is not a project dependency: `.venv/bin/pip install py-spy`."""
    if mode is None:
        yield
        return
    spy_bin = Path(sys.executable).with_name("py-spy")
    argv = [
        str(spy_bin),
        "record",
        "-p",
        str(pid),
        "-o",
        str(out),
        "--format",
        "raw",
        "--rate",
        "250",
        "--threads",
        "--nonblocking",
    ]
    # "cpu" keeps the samples of the thread holding the GIL: Python at work, not waiting on a
    # socket (py-spy's idle detection alone still counts threads blocked in C calls).
    argv.append("--idle" if mode == "wall" else "--gil")
    if subprocesses:
        argv.append("--subprocesses")
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # py-spy attaches
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    print(profile_summary(out))


def profile_summary(raw: Path, top: int = 30) -> str:
    """Inclusive and self shares per function over the samples of busy threads (a thread
    waiting for work is left out: idle pool threads would drown the rest), and each
    process's share of those samples."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    processes: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        entries = stack.split(";")
        owners = [e.split(":", 1)[0] for e in entries if e.startswith("process ")]
        frames = [e for e in entries if not e.startswith(("process ", "thread ("))]
        if not frames or _parked(frames):
            continue
        count = int(count_text)
        total += count
        processes[owners[-1] if owners else "process"] += count
        for name in {_function(f) for f in frames}:
            inclusive[name] += count
        own[_function(frames[-1])] += count
    if not total:
        return "profile: no samples"
    lines = [f"profile: {total} samples of busy threads ({raw})", "  by process:"]
    lines += [f"  {100 * c / total:8.1f}%  {name}" for name, c in processes.most_common()]
    lines.append("  inclusive  self  function")
    for name, count in inclusive.most_common(top):
        lines.append(f"  {100 * count / total:8.1f}% {100 * own[name] / total:5.1f}%  {name}")
    lines.append("  top self:")
    for name, count in own.most_common(15):
        lines.append(f"  {100 * count / total:8.1f}%  {name}")
    return "\n".join(lines)


# Leaf frames of a thread that is waiting for work, not doing it.
_PARKED = (
    ".wait (threading.py",
    "select (selectors.py",
    "Queue.get (queue.py",
    "_recv (billiard",
    "sleep (",
    "_epoll.poll (kombu",
    "poll (kombu",
    "_worker (concurrent/futures/thread.py",
)
# Frames that say the thread is doing the service's work (the CLI's frames do not: every
# forked pool process inherits them).
_WORK = (
    "notifier/send.py",
    "notifier/dispatch.py",
    "notifier/tasks.py",
    "notifier/web/",
    "notifier/ingest.py",
    "notifier/schedule.py",
    "sqlalchemy/",
    "twilio/",
)


def _parked(frames: list[str]) -> bool:
    leaf = frames[-1]
    return any(p in leaf for p in _PARKED) and not any(w in f for f in frames for w in _WORK)


def _function(frame: str) -> str:
    # "name (path/file.py:line)" → "name (path/file.py)"
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


# -- planting rows --------------------------------------------------------------------------

# Offsets at most four hours apart: one of them is always between 10:00 and 19:00, so no SMS
# of a benchmark waits for the end of the clinic's quiet hours.
_ZONES = (
    "America/Los_Angeles",
    "America/New_York",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Moscow",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Pacific/Auckland",
)


def daytime_zone(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    for name in _ZONES:
        if 10 <= now.astimezone(ZoneInfo(name)).hour < 19:
            return name
    return "Asia/Dubai"


def phone(i: int) -> str:
    return f"+1718{2_000_000 + i:07d}"


def plant_patients(conn: psycopg.Connection[Any], count: int, now: datetime, zone: str) -> None:
    """`count` patients (pat-i, phone(i), SMS consent) each with one booked appointment
    (apt-i) a week ahead."""
    start = now.replace(microsecond=0) + timedelta(days=7)
    with conn.cursor() as cur:
        with cur.copy(
            "COPY patients (id, first_name, last_name, phone, email, language, time_zone,"
            " consent_sms, consent_email, consent_marketing, updated_at) FROM STDIN"
        ) as copy:
            for i in range(count):
                copy.write_row(
                    (
                        f"pat-{i}",
                        "Ana",
                        "Ruiz",
                        phone(i),
                        None,
                        "en",
                        zone,
                        True,
                        False,
                        False,
                        utc_naive(now),
                    )
                )
        with cur.copy(
            "COPY appointments (id, patient_id, location_id, treatment_id, provider, start_at,"
            " end_at, status, confirmation, booked_at, rescheduled, last_event_at, created_at,"
            " updated_at) FROM STDIN"
        ) as copy:
            for i in range(count):
                copy.write_row(
                    (
                        f"apt-{i}",
                        f"pat-{i}",
                        "forest-hills",
                        "botox-cosmetic",
                        "Dr. Simhaee",
                        utc_naive(start),
                        utc_naive(start + timedelta(minutes=30)),
                        "booked",
                        "unconfirmed",
                        utc_naive(now),
                        False,
                        utc_naive(now),
                        utc_naive(now),
                        utc_naive(now),
                    )
                )


def plant_manual_sms(
    conn: psycopg.Connection[Any], due: Sequence[tuple[int, datetime]], now: datetime
) -> None:
    """One scheduled manual SMS per (patient number, due_at), in one COPY."""
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY notifications (appointment_id, patient_id, kind, channel, slot, ask_confirm,"
            " planned_for, due_at, expires_at, status, attempts, staff, created_at, updated_at)"
            " FROM STDIN"
        ) as copy,
    ):
        for i, at in due:
            copy.write_row(
                (
                    f"apt-{i}",
                    f"pat-{i}",
                    "manual",
                    "sms",
                    f"bench:{i}",
                    False,
                    utc_naive(at),
                    utc_naive(at),
                    utc_naive(at + timedelta(days=1)),
                    "scheduled",
                    0,
                    "bench",
                    utc_naive(now),
                    utc_naive(now),
                )
            )


def plant_future(conn: psycopg.Connection[Any], count: int, first_id: int = 0) -> None:
    """`count` scheduled reminders spread over the next four months, all on appointment apt-0
    (the clock's claim reads due_at, priority and status only), a quarter in each priority,
    generated inside PostgreSQL."""
    conn.execute(
        """
        INSERT INTO notifications (appointment_id, patient_id, kind, channel, slot, ask_confirm,
            planned_for, due_at, expires_at, status, attempts, priority, created_at, updated_at)
        SELECT 'apt-0', 'pat-0', 'reminder', 'sms', 'future:' || g, false, d, d,
               d + interval '2 days', 'scheduled', 0, g %% 4, created, created
        FROM (SELECT g, now() AT TIME ZONE 'UTC' AS created,
                     (now() AT TIME ZONE 'UTC') + interval '1 hour'
                         + random() * interval '120 days' AS d
              FROM generate_series(%s::bigint, %s::bigint) AS g) AS future
        """,
        (first_id, first_id + count - 1),
    )
