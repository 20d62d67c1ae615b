"""Email unsubscribe, the message budget and retention, on the real pipeline: the twilio SDK
against the fake Twilio, smtplib against a real SMTP server, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from notifier import cli
from notifier.clinic import Policy
from notifier.db import make_engine
from notifier.ingest import apply_event
from notifier.models import EmailOptOut, InboundMessage, Notification
from notifier.plan import Recipient, Visit, plan_with_skips
from notifier.retention import purge
from notifier.runtime import Runtime
from notifier.simulate import run_until
from notifier.web import create_app
from tests.conftest import NEW_YORK, new_york
from tests.events import event
from tests.fakes import FakeTwilio, SMTPSink

MANHASSET = "manhasset"
MARKETING = {"sms": False, "email": True, "marketing": True}
VISIT = new_york(2026, 12, 3, 10, 0)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as test_client:
        yield test_client


def post(rt: Runtime, payload: dict) -> None:
    with rt.sessions() as session:
        apply_event(session, rt.clinic, payload, rt.clock())


def rows(rt: Runtime, kind: str | None = None) -> list[Notification]:
    with rt.sessions() as session:
        query = select(Notification).order_by(Notification.id)
        if kind:
            query = query.where(Notification.kind == kind)
        return list(session.scalars(query))


def visit_and_rebook(rt: Runtime, apt: str, start: datetime) -> None:
    """A marketing-consenting, email-only patient books, comes, and the nudge falls due."""
    post(rt, event("booked", start, occurred_at=rt.clock(), appointment_id=apt, consent=MARKETING))
    run_until(rt, start + timedelta(hours=1))
    done = start + timedelta(hours=1)
    post(rt, event("completed", start, occurred_at=done, appointment_id=apt, consent=MARKETING))
    run_until(rt, start + timedelta(days=92))


# --- email unsubscribe ---------------------------------------------------------------------


def test_rebook_email_one_click_unsubscribe_suppresses_the_next_marketing_email(
    rt: Runtime, smtp: SMTPSink, client: TestClient
) -> None:
    visit_and_rebook(rt, "apt-1", VISIT)
    (nudge,) = [m for m in smtp.messages if "next visit" in str(m["Subject"])]
    header = str(nudge["List-Unsubscribe"])
    assert nudge["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.fullmatch(r"<(https://reminders\.clinic\.example/unsubscribe/\S+)>", header)
    assert url is not None
    text = nudge.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = nudge.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert url[1] in text and url[1] in html  # visible too, not only in the header

    path = url[1].removeprefix("https://reminders.clinic.example")
    answer = client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200 and "unsubscribed" in answer.text
    with rt.sessions() as session:
        (opted,) = session.scalars(select(EmailOptOut))
        assert (opted.address, opted.scope, opted.source) == (
            "ana@example.org",
            "marketing",
            "link:one-click",
        )
        assert opted.opted_out_at == rt.clock()

    sent_before = len(smtp.messages)
    visit_and_rebook(rt, "apt-2", rt.clock() + timedelta(days=14))
    second = rows(rt, "rebook")[-1]
    assert (second.appointment_id, second.status, second.reason) == (
        "apt-2",
        "suppressed",
        "unsubscribed",
    )
    # The marketing opt-out leaves the visit's own emails alone.
    kinds = [n.kind for n in rows(rt) if n.appointment_id == "apt-2" and n.status == "sent"]
    assert "confirmation" in kinds and "aftercare" in kinds
    assert len(smtp.messages) > sent_before


def test_transactional_emails_say_how_to_stop_and_stopping_all_suppresses_them(
    rt: Runtime, smtp: SMTPSink, client: TestClient
) -> None:
    post(rt, event("booked", VISIT, occurred_at=rt.clock()))
    run_until(rt, rt.clock())
    (confirmation,) = smtp.messages
    assert confirmation["List-Unsubscribe"] is None  # the one-click header is for marketing
    text = confirmation.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r"To stop emails from us: (\S+)", text)
    assert link is not None
    path = link[1].removeprefix("https://reminders.clinic.example")

    page = client.get(path)  # a mail scanner opening the link changes nothing
    assert page.status_code == 200 and "Stop all emails" in page.text
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(EmailOptOut)) == 0
    assert client.post(path).status_code == 200  # the page's button

    run_until(rt, VISIT + timedelta(hours=3))
    emails = [n for n in rows(rt) if n.channel == "email" and n.kind != "confirmation"]
    assert emails and {(n.status, n.reason) for n in emails} == {("suppressed", "unsubscribed")}
    texts = [n for n in rows(rt) if n.channel == "sms"]
    assert texts and all(n.status == "sent" for n in texts)  # texts are another matter
    with rt.sessions() as session:
        (opted,) = session.scalars(select(EmailOptOut))
        assert (opted.scope, opted.source) == ("all", "link:page")


@pytest.mark.parametrize(
    "token",
    ["x", "a" * 5000, "%00", "..%2F..%2Fetc", "eyJlIjoiYUBiLmMiLCJzIjoiYWxsIn0.forged", "é✓"],
)
def test_a_hostile_unsubscribe_link_is_refused_politely(
    rt: Runtime, client: TestClient, token: str
) -> None:
    for answer in (client.get(f"/unsubscribe/{token}"), client.post(f"/unsubscribe/{token}")):
        assert answer.status_code in (400, 404)
        assert "not valid" in answer.text or answer.status_code == 404
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(EmailOptOut)) == 0


def test_a_huge_one_click_body_is_not_read_to_the_end(
    rt: Runtime, client: TestClient, smtp: SMTPSink
) -> None:
    post(rt, event("booked", VISIT, occurred_at=rt.clock()))
    run_until(rt, rt.clock())
    text = smtp.messages[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r"To stop emails from us: https://reminders\.clinic\.example(\S+)", text)
    assert link is not None
    answer = client.post(link[1], content=b"x" * 2_000_000)
    assert answer.status_code == 200


# --- the message budget --------------------------------------------------------------------


def test_a_booking_made_30_hours_ahead_gets_no_48_hour_reminder(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    start = rt.clock() + timedelta(hours=30)
    post(rt, event("booked", start, occurred_at=rt.clock()))
    run_until(rt, start + timedelta(hours=3))
    sent = [(n.kind, n.slot, n.channel) for n in rows(rt) if n.status == "sent"]
    assert ("reminder", "2h", "sms") in sent
    assert not [s for s in sent if s[1] == "48h"]


def test_a_booking_60_hours_ahead_skips_the_48_hour_reminder_and_says_why(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    # The 48 h reminder would come 12 h after the confirmation: under the 24 h gap.
    start = rt.clock() + timedelta(hours=60)
    post(rt, event("booked", start, occurred_at=rt.clock()))
    run_until(rt, start)
    assert not [n for n in rows(rt) if n.slot == "48h"]
    assert [n.slot for n in rows(rt, "reminder")] == ["2h"]


def test_a_booking_three_hours_ahead_gets_the_confirmation_alone(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    start = rt.clock() + timedelta(hours=3, minutes=15)
    post(rt, event("booked", start, occurred_at=rt.clock()))
    run_until(rt, start)
    assert [m["body"][:60] for m in fake_twilio.messages if "see you" in m["body"]] == []
    assert len(fake_twilio.messages) == 1  # the confirmation names the time already


def test_same_day_visits_share_one_reminder_naming_both_times(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    post(rt, event("booked", VISIT, occurred_at=rt.clock(), appointment_id="apt-1"))
    later = VISIT + timedelta(minutes=75)
    post(
        rt,
        event("booked", later, occurred_at=rt.clock(), appointment_id="apt-2", location=MANHASSET),
    )
    run_until(rt, VISIT)
    reminders = [m["body"] for m in fake_twilio.messages if "see you" in m["body"]]
    assert len(reminders) == 2  # the 48 h one and the 2 h one, each for both visits
    assert all("Also at 11:15 AM in Manhasset." in body for body in reminders)
    second = [n for n in rows(rt, "reminder") if n.appointment_id == "apt-2"]
    assert second == []  # merged into the first visit's reminders, by the plan


def test_a_visit_that_moves_away_gets_its_own_reminders_back(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    post(rt, event("booked", VISIT, occurred_at=rt.clock(), appointment_id="apt-1"))
    later = VISIT + timedelta(minutes=75)
    post(rt, event("booked", later, occurred_at=rt.clock(), appointment_id="apt-2"))
    assert not [n for n in rows(rt, "reminder") if n.appointment_id == "apt-2"]
    post(rt, event("cancelled", VISIT, occurred_at=rt.clock(), appointment_id="apt-1"))
    mine = [n for n in rows(rt, "reminder") if n.appointment_id == "apt-2"]
    slots = sorted(n.slot for n in mine if n.status == "scheduled")
    assert slots == ["2h", "48h", "48h"]  # 48 h by text and email, 2 h by text


def test_at_most_one_marketing_message_a_week(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    for apt, start in (("apt-1", VISIT), ("apt-2", VISIT + timedelta(days=2))):
        now = rt.clock()
        booked = event("booked", start, occurred_at=now, appointment_id=apt, consent=MARKETING)
        post(rt, booked)
    for apt, start in (("apt-1", VISIT), ("apt-2", VISIT + timedelta(days=2))):
        run_until(rt, start + timedelta(hours=1))
        done = start + timedelta(hours=1)
        post(rt, event("completed", start, occurred_at=done, appointment_id=apt, consent=MARKETING))
    run_until(rt, VISIT + timedelta(days=100))
    nudges = [(n.appointment_id, n.status, n.reason) for n in rows(rt, "rebook")]
    assert nudges == [("apt-1", "sent", None), ("apt-2", "suppressed", "budget")]


def test_aftercare_waits_out_the_spacing_and_a_reminder_after_staff_text_merges(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    from notifier.remind import remind

    texts_only = {"sms": True, "email": False, "marketing": False}
    visit = new_york(2026, 12, 3, 11, 0)
    post(rt, event("booked", visit, occurred_at=rt.clock(), consent=texts_only))
    run_until(rt, new_york(2026, 12, 3, 8, 30))
    with rt.sessions() as session:  # staff text the patient at 08:30: the 09:00 one is moot
        remind(session, rt.clinic, "apt-1", ["sms"], "amy", rt.clock())
        session.commit()
    run_until(rt, new_york(2026, 12, 3, 11, 40))
    # At 11:40, just after the visit, the patient books the next one: its confirmation goes.
    later = visit + timedelta(days=14)
    post(
        rt,
        event("booked", later, occurred_at=rt.clock(), appointment_id="apt-2", consent=texts_only),
    )
    run_until(rt, visit + timedelta(hours=6))
    by_kind = {(n.kind, n.slot): n for n in rows(rt) if n.appointment_id == "apt-1"}
    two_hour = by_kind[("reminder", "2h")]
    assert (two_hour.status, two_hour.reason) == ("suppressed", "budget")
    aftercare = by_kind[("aftercare", "")]
    assert aftercare.status == "sent" and aftercare.sent_at is not None
    # Due 12:30 (an hour after the visit), it waited for 13:40, two hours after that text.
    assert aftercare.sent_at.astimezone(NEW_YORK).strftime("%H:%M") == "13:40"
    with rt.sessions() as session:
        history = session.get_one(Notification, two_hour.id).history
        assert "merged: a text went 30 min before" in [e.detail for e in history]
        history = session.get_one(Notification, aftercare.id).history
        assert "deferred: a text went 50 min before" in [e.detail for e in history]


def test_two_texts_claimed_at_once_do_not_both_go(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    from notifier.remind import remind

    texts_only = {"sms": True, "email": False, "marketing": False}
    post(rt, event("booked", VISIT, occurred_at=rt.clock(), consent=texts_only))
    run_until(rt, new_york(2026, 12, 3, 7, 30))
    with rt.sessions() as session:  # held for quiet hours: due at 08:00 with the 2 h reminder
        remind(session, rt.clinic, "apt-1", ["sms"], "amy", rt.clock())
        session.commit()
    run_until(rt, VISIT)
    (two_hour,) = [n for n in rows(rt, "reminder") if n.slot == "2h"]
    assert (two_hour.status, two_hour.reason) == ("suppressed", "budget")
    sent = [n.kind for n in rows(rt) if n.status == "sent"]
    assert sent == ["confirmation", "reminder", "manual"]  # the 48 h reminder, then staff's
    assert len(fake_twilio.messages) == 3


def test_a_reminder_right_after_a_text_about_the_same_visit_is_merged() -> None:
    from notifier.budget import hold_back

    policy = Policy()
    now = VISIT - timedelta(hours=2)
    merged = hold_back("reminder", "sms", now, now - timedelta(minutes=30), True, None, policy)
    assert merged is not None and merged.until is None and "merged" in merged.reason
    deferred = hold_back("aftercare", "sms", now, now - timedelta(minutes=30), False, None, policy)
    assert deferred is not None and deferred.until == now + timedelta(minutes=90)
    urgent = hold_back("confirmation", "sms", now, now - timedelta(minutes=1), True, None, policy)
    assert urgent is None
    off = policy.model_copy(update={"sms_spacing_minutes": 0})
    assert hold_back("aftercare", "sms", now, now - timedelta(minutes=1), False, None, off) is None


def test_the_plan_says_why_a_reminder_was_left_out() -> None:
    booked = VISIT - timedelta(hours=62)  # 20:00 the evening before the 48 h reminder's day
    visit = Visit("booked", VISIT, VISIT + timedelta(minutes=30), booked, id="a")
    who = Recipient(NEW_YORK, sms=True, email=True, marketing=False)
    from notifier.clinic import Treatment

    botox = Treatment(id="b", name="B", patient_wording={"en": "b"})
    kept, skipped = plan_with_skips(visit, who, botox, Policy(), booked)
    assert [s.slot for s in skipped] == ["48h"]
    assert "confirmation went 14 h before" in skipped[0].reason
    assert {(p.kind, p.slot) for p in kept} >= {("reminder", "2h")}
    looser = Policy(confirmation_gap_hours=6)
    kept, skipped = plan_with_skips(visit, who, botox, looser, booked)
    assert skipped == [] and ("reminder", "48h") in {(p.kind, p.slot) for p in kept}


# --- retention -----------------------------------------------------------------------------


def test_purge_blanks_old_bodies_and_keeps_the_counts(
    rt: Runtime,
    fake_twilio: FakeTwilio,
    smtp: SMTPSink,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
) -> None:
    post(rt, event("booked", VISIT, occurred_at=rt.clock()))
    run_until(rt, VISIT + timedelta(hours=3))
    with rt.sessions() as session:
        session.add(
            InboundMessage(
                provider_id="SM-old-reply",
                from_number="+17185550134",
                to_number="+15165550100",
                body="C see you then",
                received_at=rt.clock() - timedelta(days=2),
                intent="confirm",
            )
        )
        session.commit()
    before = [(n.id, n.kind, n.status, n.sent_at) for n in rows(rt)]
    assert all(n.body for n in rows(rt) if n.status == "sent")

    later = rt.clock() + timedelta(days=401)
    assert purge(rt, rt.clock()).bodies == 0  # nothing is old yet
    dry = purge(rt, later, dry_run=True)
    assert (dry.bodies, dry.replies) == (len([b for b in before if b[2] == "sent"]), 1)
    assert all(n.body for n in rows(rt) if n.status == "sent")  # a dry run blanks nothing

    done = purge(rt, later)
    assert (done.bodies, done.replies) == (dry.bodies, dry.replies)
    assert [(n.id, n.kind, n.status, n.sent_at) for n in rows(rt)] == before
    assert all(n.body is None for n in rows(rt))
    with rt.sessions() as session:
        (reply,) = session.scalars(select(InboundMessage))
        assert reply.body == "" and reply.intent == "confirm"
    assert purge(rt, later, dry_run=True).bodies == 0


def test_notifier_purge_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The real clock: rows sent "now" are not old, so the dry run finds nothing, and says so.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", f"sqlite:///{tmp_path / 'n.db'}")
    assert cli.main(["purge", "--dry-run"]) == 1  # no schema yet: one line, no traceback
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("notifier: purge: the database did not answer") and "db upgrade" in line
    assert cli.main(["db", "upgrade"]) in (0, None)
    capsys.readouterr()
    assert cli.main(["purge", "--dry-run"]) in (0, None)
    out = capsys.readouterr().out
    assert "would blank 0 message bodies and 0 reply texts older than" in out
    assert "(400 days)" in out
    assert cli.main(["purge"]) in (0, None)
    assert "blanked 0 message bodies" in capsys.readouterr().out


def test_the_clock_runs_the_purge_daily() -> None:
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    from notifier.dispatch import schedule_ticks

    clock = BackgroundScheduler(timezone="UTC")
    rt = SimpleNamespace(clock=lambda: new_york(2026, 12, 1, 9, 0))
    schedule_ticks(clock, rt, lambda ids: None)  # type: ignore[arg-type]
    job = clock.get_job("purge")
    assert job is not None and isinstance(job.trigger, CronTrigger)
    assert str(job.trigger.fields[5]) == "8"  # hour


def test_embedded_data_files_are_private(tmp_path: Path) -> None:
    from notifier.channels import Message
    from notifier.channels.outbox import Outbox

    old = os.umask(0o022)
    try:
        engine = make_engine(f"sqlite:///{tmp_path / 'notifier.db'}")
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT x FROM t").all()
            names = sorted(p.name for p in tmp_path.iterdir())
            assert names == ["notifier.db", "notifier.db-shm", "notifier.db-wal"]
            for path in tmp_path.iterdir():
                assert path.stat().st_mode & 0o777 == 0o600, path.name
        engine.dispose()
        outbox = tmp_path / "outbox.txt"
        Outbox(outbox, "sms").send(Message(1, "+17185550134", "hello"))
        assert outbox.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


# --- what staff see ------------------------------------------------------------------------


def test_staff_see_unsubscribes_and_what_the_budget_left_out(
    rt: Runtime, client: TestClient, smtp: SMTPSink, capsys: pytest.CaptureFixture[str]
) -> None:
    from notifier.staff.commands import print_plan
    from notifier.staff.timeline import timeline
    from tests.test_staff_web import log_in, new_staff

    start = rt.clock() + timedelta(hours=58)  # the 48 h reminder would follow the confirmation
    post(rt, event("booked", start, occurred_at=rt.clock()))
    run_until(rt, rt.clock())
    text = smtp.messages[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r"To stop emails from us: https://reminders\.clinic\.example(\S+)", text)
    assert link is not None
    client.post(link[1])

    new_staff(rt)
    assert log_in(client).status_code == 303
    page = client.get("/staff/opt-outs").text
    assert "ana@example.org" in page and "all email" in page and "link in an email" in page
    shown = client.get("/staff/appointments/apt-1").text
    assert "Left out by the message budget" in shown
    assert "skipped: the confirmation went 10 h before it" in shown

    with rt.sessions() as session:
        print_plan(timeline(rt, session, "apt-1", rt.clock()), sys.stdout)
    assert "reminder 48h" in capsys.readouterr().out


def test_the_migration_makes_the_opt_out_table_the_model_describes(rt: Runtime) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from notifier.models import Base

    with rt.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in diffs if "email_opt_outs" in str(d)] == []


# --- the templates -------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "es"])
def test_a_shared_reminder_names_the_other_visit_and_keeps_its_lines_apart(lang: str) -> None:
    from notifier.render import Renderer
    from tests.test_render import TEMPLATES_DIR, make_context

    renderer = Renderer(TEMPLATES_DIR)
    context = make_context(lang=lang)
    context["notification"]["ask_confirm"] = True
    alone = renderer.render("reminder", "sms", lang, context).text
    context["appointment"]["also"] = [
        {"start": new_york(2026, 9, 30, 11, 15), "location": "Manhasset"}
    ]
    shared = renderer.render("reminder", "sms", lang, context).text
    also = "Also at 11:15 AM in Manhasset." if lang == "en" else "También a las 11:15 en Manhasset."
    confirm = "Reply C to confirm." if lang == "en" else "Responda C para confirmar."
    assert f"Forest Hills{'!' if lang == 'en' else '.'} {also} {confirm}" in shared
    assert shared.replace(f" {also}", "") == alone
    email = renderer.render("reminder", "email", lang, context)
    assert f". {also}" in email.text and f">{also}</p>" in (email.html or "")


@pytest.mark.parametrize("lang", ["en", "es"])
@pytest.mark.parametrize(
    "kind", ["confirmation", "reminder", "aftercare", "cancellation", "manual", "rebook"]
)
def test_every_email_says_how_to_stop_emails(kind: str, lang: str) -> None:
    from notifier.render import Renderer
    from tests.test_render import TEMPLATES_DIR, make_context

    context = make_context(lang=lang, kind=kind, links={"unsubscribe": "https://u.example/t"})
    email = Renderer(TEMPLATES_DIR).render(kind, "email", lang, context)
    offers = kind == "rebook"
    line = {
        ("en", True): "To unsubscribe from offers by email: https://u.example/t",
        ("en", False): "To stop emails from us: https://u.example/t",
        ("es", True): "Para no recibir más ofertas por email: https://u.example/t",
        ("es", False): "Para no recibir más emails nuestros: https://u.example/t",
    }[(lang, offers)]
    assert email.text.rstrip().endswith(line)
    assert 'href="https://u.example/t"' in (email.html or "")
