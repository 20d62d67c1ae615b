"""The 08:00 burst of a network of clinics: every text held overnight falls due at once.

Clinics (locations of one network) in the four US mainland time zones, each with its own
sender at 1 text a second (a tenth on toll-free numbers at 3 a second) and 20 texts held by
quiet hours until 08:00 local: 2-hour reminders for 10:00 visits and a staff message (urgent),
confirmations of bookings made overnight and 48-hour reminders, aftercare for last night's
visits, rebook nudges. Each row is the one the real plan makes for its appointment. The real
stack sends them (PostgreSQL, Redis, `notifier worker --concurrency C`, one `notifier
scheduler`), to the fake Twilio, which refuses with 429 a text that comes faster than its
sender's rate.

The time zones' mornings come an hour apart, so each zone's burst runs on its own: the
processes start on a clock shifted so that 08:00 in that zone comes a few seconds after they
are ready (`benchmarks/shifted_clock.py`), and stop once it has drained. Lateness is the
fake's receipt time minus that 08:00.

    .venv/bin/python benchmarks/morning_burst.py [--quick] [--clinics 400] [--concurrency 2]
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (  # noqa: E402
    CpuMeter,
    Figure,
    Processes,
    arguments,
    background_busy,
    connect,
    descendants,
    notifier_env,
    percentile,
    phone,
    postgres_database,
    redis_server,
    report,
    say,
    wait_until,
    workdir,
    worker_ready,
)
from notifier import priority  # noqa: E402
from notifier.clinic import load_clinic  # noqa: E402
from notifier.models import utc_naive  # noqa: E402
from notifier.plan import Recipient, Visit, plan  # noqa: E402
from tests.fakes.twilio import FakeTwilio  # noqa: E402

NAME = "morning_burst"
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
# A clinic's 20 texts held overnight.
MIX = (
    ("reminder_2h",) * 4
    + ("manual",)
    + ("confirmation",) * 5
    + ("reminder_48h",) * 5
    + ("aftercare",) * 3
    + ("rebook",) * 2
)
URGENT = ("reminder_2h", "manual")
TARGET_URGENT_S = 60.0
TARGET_DRAIN_S = 300.0
LEAD_SECONDS = 20.0  # 08:00 comes this long after the processes start
TOLERANCE_S = 0.25  # how early the fake lets a text come for its sender's turn
FINAL = ("sent", "delivered", "failed", "suppressed", "cancelled", "undelivered")


@dataclass(frozen=True)
class Text:
    zone: int
    clinic: int
    kind: str  # as in MIX
    phone: str


def sender(clinic: int) -> tuple[str, float]:
    """The clinic's number and its rate: every tenth toll-free at 3 a second."""
    if clinic % 10 == 9:
        return f"+1833{2_000_000 + clinic:07d}", 3.0
    return f"+1646{2_000_000 + clinic:07d}", 1.0


def network_config(directory: Path, clinics: int) -> Path:
    """A network's config: one location per clinic, round the four zones, each its sender."""
    lines = [
        '[practice]\nname = "Benchmark Network"\n',
        '[policy]\nquiet_hours = { start = "21:00", end = "08:00" }\nsms_per_second = 1\n',
        '[[policy.reminders]]\nhours_before = 48\nchannels = ["sms"]\nask_confirm = true\n',
        '[[policy.reminders]]\nhours_before = 2\nchannels = ["sms"]\n',
        '[[treatments]]\nid = "botox-cosmetic"\nname = "Botox, cosmetic"\n'
        'patient_wording = { en = "Botox for fine lines" }\naftercare_delay_minutes = 60\n'
        "avoid_hours = 24\nrebook_after_days = 84\n",
    ]
    for c in range(clinics):
        number, rate = sender(c)
        lines.append(
            f'[[locations]]\nid = "c{c}"\nname = "Clinic {c}"\nphone = "{number}"\n'
            f'address = "{c} Main St"\ntime_zone = "{ZONES[c % 4]}"\nsender = "{number}"\n'
            f"sms_per_second = {rate:g}\n"
        )
    path = directory / "network.toml"
    path.write_text("\n".join(lines))
    return path


def eight_am(zone: str, day: date) -> datetime:
    return datetime.combine(day, clock_time(8, 0), ZoneInfo(zone)).astimezone(UTC)


def _visit(kind: str, at: datetime) -> Visit:
    """An appointment whose plan holds a text of `kind` until 08:00 (`at`)."""
    h, d = timedelta(hours=1), timedelta(days=1)
    if kind == "reminder_2h":  # a 10:00 visit
        return Visit("booked", at + 2 * h, at + 2.5 * h, at - 3 * d)
    if kind == "manual":  # a staff message written at night, for a visit today
        return Visit("booked", at + 5 * h, at + 5.5 * h, at - 3 * d)
    if kind == "confirmation":  # booked online at 02:00
        return Visit("booked", at + 5 * d + 6 * h, at + 5 * d + 6.5 * h, at - 6 * h)
    if kind == "reminder_48h":  # a visit at 08:00 the day after tomorrow
        return Visit("booked", at + 2 * d, at + 2 * d + 0.5 * h, at - 5 * d)
    if kind == "aftercare":  # last night's 20:00 visit
        return Visit("booked", at - 12 * h, at - 11.5 * h, at - 10 * d)
    # rebook: a visit 84 days before 03:00 this morning
    end = at - 5 * h - 84 * d
    return Visit("booked", end - 0.5 * h, end, end - 7 * d)


def plant(conn: Any, texts: list[Text], day: date, config: Path) -> None:
    """Patients, appointments and each text's notification row, as the plan makes it."""
    clinic = load_clinic(config)
    treatment = clinic.treatments[0]
    now = datetime.now(UTC)
    patients, appointments, rows = [], [], []
    for i, t in enumerate(texts):
        zone = ZONES[t.zone]
        at = eight_am(zone, day)
        v = _visit(t.kind, at)
        who = Recipient(ZoneInfo(zone), sms=True, email=False, marketing=t.kind == "rebook")
        if t.kind == "manual":
            key = ("manual", f"manual:{i}", False, at, v.start)
        else:
            kind, _, slot = t.kind.partition("_")
            found = [
                p
                for p in plan(v, who, treatment, clinic.policy, at - timedelta(minutes=1))
                if p.kind == kind and p.due_at == at and (not slot or p.slot == slot)
            ]
            if len(found) != 1:
                raise RuntimeError(f"the plan holds no {t.kind} until 08:00 {zone}: {found}")
            p = found[0]
            key = (p.kind, p.slot, p.ask_confirm, p.due_at, p.expires_at)
        kind, slot, ask, due, expires = key
        patients.append(
            (f"p{i}", "Ana", "Ruiz", t.phone, None, "en", zone, True, False, who.marketing, now)
        )
        appointments.append(
            (f"a{i}", f"p{i}", f"c{t.clinic}", treatment.id, "Dr. Lee", v.start, v.end,
             "booked", "unconfirmed", v.booked_at, False, v.booked_at, v.booked_at, v.booked_at)
        )  # fmt: skip
        rows.append(
            (f"a{i}", f"p{i}", kind, "sms", slot, ask, due, due, expires, "scheduled", 0,
             priority.of(kind, slot), "bench" if kind == "manual" else None, now, now)
        )  # fmt: skip
    copies: dict[str, list[tuple[Any, ...]]] = {
        "patients (id, first_name, last_name, phone, email, language, time_zone, consent_sms,"
        " consent_email, consent_marketing, updated_at)": patients,
        "appointments (id, patient_id, location_id, treatment_id, provider, start_at, end_at,"
        " status, confirmation, booked_at, rescheduled, last_event_at, created_at,"
        " updated_at)": appointments,
        "notifications (appointment_id, patient_id, kind, channel, slot, ask_confirm,"
        " planned_for, due_at, expires_at, status, attempts, priority, staff, created_at,"
        " updated_at)": rows,
    }
    with conn.cursor() as cur:
        for table, values in copies.items():
            with cur.copy(f"COPY {table} FROM STDIN") as copy:
                for row in values:
                    copy.write_row([utc_naive(x) if isinstance(x, datetime) else x for x in row])
    conn.execute("ANALYZE")


def main() -> None:
    args = arguments(
        __doc__.splitlines()[0],
        clinics={"type": int, "default": None, "help": "clinics in all (default 400, quick 80)"},
        concurrency={"type": int, "default": 2, "help": "worker processes (default 2)"},
        timeout={"type": float, "default": 420.0, "help": "longest wait for one zone (s)"},
    )
    clinics = args.clinics or (80 if args.quick else 400)
    background = background_busy()
    logs = workdir(NAME)
    texts = [
        Text(c % 4, c, kind, phone(c * len(MIX) + j))
        for c in range(clinics)
        for j, kind in enumerate(MIX)
    ]
    by_phone = {t.phone: t for t in texts}
    day = datetime.now(UTC).date() + timedelta(days=1)
    say(f"{clinics} clinics, {len(texts)} texts due at 08:00 local on {day}; logs in {logs}")
    config = network_config(logs, clinics)
    zones: dict[str, dict[str, Any]] = {}
    with (
        postgres_database(config) as url,
        redis_server(logs) as broker,
        FakeTwilio() as fake,
        connect(url) as conn,
    ):
        fake.enforce_rates(dict(sender(c) for c in range(clinics)), TOLERANCE_S)
        started = time.monotonic()
        plant(conn, texts, day, config)
        say(f"planted in {time.monotonic() - started:.1f} s")
        env = notifier_env(url, broker.url, fake, config)
        for k, zone in enumerate(ZONES):
            zones[zone] = burst(args, env, logs, conn, fake, broker.pid, k, zone, day, by_phone)
        refused = fake.refused_over_rate
        statuses = [
            (kind, status, n)
            for kind, status, n in conn.execute(
                "SELECT kind, status, count(*) FROM notifications GROUP BY 1, 2 ORDER BY 1, 2"
            )
        ]
        received = fake.messages
    say("statuses: " + ", ".join(f"{kind} {status} {n}" for kind, status, n in statuses))
    figures, stats = summarize(texts, by_phone, zones, received, refused, statuses)
    stats |= {"clinics": clinics, "concurrency": args.concurrency, "logs": str(logs)}
    report(NAME, figures, stats, args.quick, background)


def burst(
    args: Any,
    env: dict[str, str],
    logs: Path,
    conn: Any,
    fake: FakeTwilio,
    redis_pid: int,
    k: int,
    zone: str,
    day: date,
    by_phone: dict[str, Text],
) -> dict[str, Any]:
    """One zone's morning: processes on a clock where 08:00 comes LEAD_SECONDS after now."""
    at = eight_am(zone, day)
    shift = at.timestamp() - (time.time() + LEAD_SECONDS)
    shifted = [sys.executable, "-m", "benchmarks.shifted_clock", f"{shift:.6f}"]
    mine = sum(1 for t in by_phone.values() if t.zone == k)
    with Processes(env, logs) as procs:
        worker = procs.start([*shifted, "worker", "--concurrency", str(args.concurrency)], "worker")
        worker_ready(procs, worker)
        clock = procs.start([*shifted, "scheduler"], "scheduler")
        procs.wait_for_log(clock, "clock started", timeout=30)
        eight = at.timestamp() - shift  # 08:00 in the zone, on this machine's clock
        if time.time() > eight:
            say(
                f"WARNING: {zone}: the processes were ready {time.time() - eight:.1f} s after 08:00"
            )
        cpu = CpuMeter(
            {
                "worker (main + pool)": lambda: descendants(worker.pid),
                "scheduler": lambda: [clock.pid],
                "redis-server": lambda: [redis_pid],
            }
        )
        load = Path("/proc/loadavg").read_text().split()[:3]
        cpu.start()

        def received() -> int:
            return sum(1 for m in fake.messages if by_phone[m["to"]].zone == k)

        def pending() -> int:
            row = conn.execute(
                "SELECT count(*) FROM notifications n JOIN appointments a"
                " ON a.id = n.appointment_id JOIN locations l ON l.id = a.location_id"
                " WHERE l.time_zone = %s AND n.status <> ALL(%s)",
                (zone, list(FINAL)),
            ).fetchone()
            return int(row[0])

        done = wait_until(
            lambda: received() >= mine or (time.time() > eight and pending() == 0),
            timeout=LEAD_SECONDS + args.timeout,
        )
        used = cpu.stop()
    got = received()
    say(f"{zone}: {got} of {mine} texts received (done: {done}); load {' '.join(load)}")
    return {"eight_epoch": eight, "texts": mine, "received": got, "cpu_seconds": used,
            "loadavg_before": load}  # fmt: skip


def summarize(
    texts: list[Text],
    by_phone: dict[str, Text],
    zones: dict[str, dict[str, Any]],
    received: list[Any],
    refused: dict[str, int],
    statuses: list[tuple[str, str, int]],
) -> tuple[list[Figure], dict[str, Any]]:
    first: dict[str, float] = {}
    copies: Counter[str] = Counter()
    for m in received:
        copies[m["to"]] += 1
        first[m["to"]] = min(first.get(m["to"], m["received_at"]), m["received_at"])
    late: dict[str, list[float]] = defaultdict(list)
    drain: dict[str, float] = {}
    for to, at in first.items():
        t = by_phone[to]
        zone = ZONES[t.zone]
        lateness = at - zones[zone]["eight_epoch"]
        late[t.kind].append(lateness)
        drain[zone] = max(drain.get(zone, 0.0), lateness)
    duplicates = sum(n - 1 for n in copies.values())
    lost = len(texts) - len(first)
    figures = []
    for zone, z in zones.items():
        figures.append(
            Figure(
                f"morning_burst drain, {zone} ({z['texts']:,} texts)",
                drain.get(zone, float("inf")),
                "s",
                target=TARGET_DRAIN_S,
                higher_is_better=False,
                baseline=float(len(MIX) - 1),
                baseline_label=f"floor: {len(MIX)} texts of one sender at 1/s",
            )
        )
    urgent = [x for kind in URGENT for x in late[kind]]
    figures.append(
        Figure(
            "morning_burst urgent (2-hour reminders, staff messages) max lateness",
            max(urgent) if urgent else float("inf"),
            "s",
            target=TARGET_URGENT_S,
            higher_is_better=False,
        )
    )
    for kind in dict.fromkeys(MIX):
        values = late.get(kind) or [float("inf")]
        figures.append(
            Figure(
                f"morning_burst lateness {kind} p99",
                percentile(values, 99),
                "s",
                higher_is_better=False,
                baseline=percentile(values, 50),
                baseline_label="p50",
            )
        )
    figures += [
        Figure("morning_burst 429s received", sum(refused.values()), "answers", target=0,
               higher_is_better=False),
        Figure("morning_burst duplicates", duplicates, "texts", target=0, higher_is_better=False),
        Figure("morning_burst lost", lost, "texts", target=0, higher_is_better=False),
    ]  # fmt: skip
    spreads = {
        kind: [round(percentile(v, 50), 2), round(percentile(v, 99), 2), round(max(v), 2)]
        for kind, v in late.items()
        if v
    }
    stats: dict[str, Any] = {
        "zones": zones,
        "lateness_by_kind_p50_p99_max_s": spreads,
        "refused_429_by_sender": refused,
        "statuses": statuses,
    }
    for kind, spread in spreads.items():
        say(f"lateness {kind}: p50/p99/max {spread} s")
    return figures, stats


if __name__ == "__main__":
    main()
