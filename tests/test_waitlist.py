"""No-show recovery and the waitlist, end to end: booking events in, texts out through the fake
Twilio, replies signed as Twilio signs them, the claim decided by one conditional update."""

from __future__ import annotations

import argparse
import dataclasses
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import httpx
import pytest
import uvicorn
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from twilio.request_validator import RequestValidator

from notifier import hooks
from notifier.ingest import apply_event
from notifier.models import (
    Appointment,
    Base,
    InboundMessage,
    Notification,
    VisitAction,
    WaitlistEntry,
    WaitlistOffer,
    WaitlistSlot,
    WebhookDelivery,
    WebhookEndpoint,
)
from notifier.plan import Recipient, Visit, plan
from notifier.runtime import Runtime
from notifier.simulate import SimulatedClock, run_until
from notifier.staff import desk
from notifier.staff.commands import add_commands
from notifier.stats import stats
from notifier.track import classify
from notifier.web import create_app
from tests.conftest import NEW_YORK, new_york, provider_settings
from tests.events import event
from tests.fakes import FakeTwilio, SMTPSink
from tests.test_fhir import fixture as fhir_fixture
from tests.test_fhir import integrations_app
from tests.test_staff_web import csrf, log_in, new_staff

SENDER = "+15165550417"  # this file's own Twilio number: rate-limit keys are per sender
PHONE = "+17185550134"
TUESDAY = new_york(2026, 12, 8, 14, 30)  # the slot that will open
WAITING = ["+17185550161", "+17185550162", "+17185550163", "+17185550164"]
_sids = iter(range(1, 1_000_000))


@pytest.fixture
def rt(
    database_url: str,
    fake_twilio: FakeTwilio,
    smtp: SMTPSink,
    clock: SimulatedClock,
    clinic_path: Path,
) -> Iterator[Runtime]:
    settings = provider_settings(database_url, fake_twilio, smtp, clinic_path)
    runtime = Runtime.build(dataclasses.replace(settings, twilio_from_number=SENDER), clock=clock)
    runtime.prepare_database()
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as test_client:
        yield test_client


def apply(rt: Runtime, type_: str, start: Any, **overrides: Any) -> None:
    with rt.sessions() as session:
        apply_event(
            session, rt.clinic, event(type_, start, occurred_at=rt.clock(), **overrides), rt.clock()
        )


def texts_to(twilio: FakeTwilio, phone: str) -> list[str]:
    return [m["body"] for m in twilio.messages if m["to"] == phone]


def rows_of(rt: Runtime, kind: str) -> list[Notification]:
    with rt.sessions() as session:
        query = select(Notification).where(Notification.kind == kind).order_by(Notification.id)
        return list(session.scalars(query))


def test_the_migration_makes_the_tables_the_models_describe(rt: Runtime) -> None:
    mine = {"waitlist_entries", "waitlist_slots", "waitlist_offers", "no_show_at"}
    with rt.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in diffs if mine & set(re.findall(r"\w+", str(d)))] == []


# No-show recovery


def test_a_no_show_gets_one_we_missed_you_text_two_hours_later(
    rt: Runtime, fake_twilio: FakeTwilio, clock: SimulatedClock
) -> None:
    visit = new_york(2026, 12, 3, 10, 0)
    apply(rt, "booked", visit)
    clock.now = new_york(2026, 12, 3, 10, 40)
    apply(rt, "no_show", visit)
    apply(rt, "no_show", visit)  # the booking system says it again: still one
    [row] = rows_of(rt, "no_show_recovery")
    assert (row.channel, row.due_at) == ("sms", new_york(2026, 12, 3, 12, 40))
    run_until(rt, new_york(2026, 12, 6, 12, 0))
    missed = [t for t in texts_to(fake_twilio, PHONE) if "missed you" in t]
    # The number's first text from us (the visit's were moot by now): the opt-out line follows.
    assert missed == [
        "North Shore Skin & Neurology: Ana, we missed you at your visit. To book a new time,"
        " call Forest Hills: (718) 555-0117. Reply STOP to opt out"
    ]
    assert "Botox" not in missed[0]  # minimum necessary


def test_a_no_show_late_in_the_evening_is_texted_in_the_morning(
    rt: Runtime, clock: SimulatedClock
) -> None:
    visit = new_york(2026, 12, 3, 18, 0)
    apply(rt, "booked", visit)
    clock.now = new_york(2026, 12, 3, 20, 0)
    apply(rt, "no_show", visit)
    [row] = rows_of(rt, "no_show_recovery")
    assert row.due_at == new_york(2026, 12, 4, 8, 0)


def test_no_recovery_text_when_the_patient_booked_again(
    rt: Runtime, fake_twilio: FakeTwilio, clock: SimulatedClock
) -> None:
    visit = new_york(2026, 12, 3, 10, 0)
    apply(rt, "booked", visit)
    clock.now = new_york(2026, 12, 3, 10, 40)
    apply(rt, "no_show", visit)
    clock.now = new_york(2026, 12, 3, 11, 0)
    apply(rt, "booked", new_york(2026, 12, 10, 10, 0), appointment_id="apt-2")
    run_until(rt, new_york(2026, 12, 4, 12, 0))
    assert not [t for t in texts_to(fake_twilio, PHONE) if "missed you" in t]
    [row] = rows_of(rt, "no_show_recovery")
    assert (row.status, row.reason) == ("suppressed", "already_rebooked")


def test_a_visit_booked_again_before_the_no_show_is_planned_gets_none(
    rt: Runtime, clock: SimulatedClock
) -> None:
    apply(rt, "booked", new_york(2026, 12, 10, 10, 0), appointment_id="apt-2")
    visit = new_york(2026, 12, 3, 10, 0)
    apply(rt, "booked", visit)
    clock.now = new_york(2026, 12, 3, 10, 40)
    apply(rt, "no_show", visit)
    assert rows_of(rt, "no_show_recovery") == []


def test_an_undone_no_show_withdraws_the_text(rt: Runtime, clock: SimulatedClock) -> None:
    visit = new_york(2026, 12, 3, 10, 0)
    apply(rt, "booked", visit)
    clock.now = new_york(2026, 12, 3, 10, 40)
    apply(rt, "no_show", visit)
    clock.now = new_york(2026, 12, 3, 10, 45)
    apply(rt, "completed", visit)  # the desk's undo: the patient came after all
    [row] = rows_of(rt, "no_show_recovery")
    assert (row.status, row.reason) == ("cancelled", "plan_changed")


def test_an_opted_out_number_gets_no_recovery_text(
    rt: Runtime, fake_twilio: FakeTwilio, client: TestClient, clock: SimulatedClock
) -> None:
    visit = new_york(2026, 12, 3, 10, 0)
    apply(rt, "booked", visit)
    reply(client, rt, "STOP", PHONE)
    clock.now = new_york(2026, 12, 3, 10, 40)
    apply(rt, "no_show", visit)
    run_until(rt, new_york(2026, 12, 4, 12, 0))
    assert not [t for t in texts_to(fake_twilio, PHONE) if "missed you" in t]


# The waitlist


def waitlist_entry(n: int, phone: str, **changes: Any) -> dict[str, Any]:
    return {
        "id": f"wl-{n}",
        "patient": {
            "id": f"pat-w{n}",
            "first_name": f"Wai{n}",
            "last_name": "Ting",
            "phone": phone,
            "email": None,
            "language": "en",
            "consent": {"sms": True, "email": False, "marketing": False},
        },
        "location": "forest-hills",
        "treatment": "botox-cosmetic",
        "days": ["mon", "tue", "wed"],
        "earliest": "09:00",
        "latest": "17:00",
        **changes,
    }


AUTH = {"Authorization": "Bearer test-key"}


def put_on_waitlist(client: TestClient, *entries: dict[str, Any]) -> None:
    for entry in entries:
        answer = client.post("/v1/waitlist", json=entry, headers=AUTH)
        assert answer.status_code == 201, answer.text


def reply(client: TestClient | httpx.Client, rt: Runtime, body: str, sender: str) -> str:
    """A text as Twilio posts it, signed for the public URL; the TwiML answer's text."""
    form = {"MessageSid": f"SM{next(_sids):032d}", "From": sender, "To": SENDER, "Body": body}
    url = rt.settings.public_url + "/twilio/inbound"
    signature = RequestValidator(rt.settings.twilio_auth_token or "").compute_signature(url, form)
    answer = client.post(
        "/twilio/inbound",
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert answer.status_code == 200, answer.text
    said = ElementTree.fromstring(answer.text).find("Message")
    return "" if said is None else said.text or ""


def test_the_api_puts_a_patient_on_the_waitlist_once(client: TestClient, rt: Runtime) -> None:
    entry = waitlist_entry(1, "+1 718 555 0161")
    first = client.post("/v1/waitlist", json=entry, headers=AUTH)
    again = client.post("/v1/waitlist", json=entry, headers=AUTH)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["days"] == ["mon", "tue", "wed"]
    with rt.sessions() as session:
        [row] = session.scalars(select(WaitlistEntry)).all()
        assert (row.patient.phone, row.earliest, row.latest) == ("+17185550161", "09:00", "17:00")
    gone = client.delete("/v1/waitlist/wl-1", headers=AUTH)
    assert gone.json()["status"] == "removed"
    assert client.delete("/v1/waitlist/wl-9", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"location": "brooklyn"}, "location"),
        ({"days": ["someday"]}, "days"),
        ({"earliest": "18:00"}, ""),
        ({"earliest": "25:00"}, "earliest"),
        ({"earliest": "09:00:00Z"}, "earliest"),
        ({"id": "bad id!"}, "id"),
    ],
)
def test_a_bad_waitlist_entry_is_refused_with_its_field(
    client: TestClient, changes: dict[str, Any], field: str
) -> None:
    answer = client.post("/v1/waitlist", json=waitlist_entry(1, PHONE, **changes), headers=AUTH)
    assert answer.status_code == 422
    assert field in str(answer.json())


@pytest.mark.parametrize("body", ["[]", "null", '{"id": 5}', "\x00", "{" * 5000])
def test_hostile_waitlist_bodies_are_refused_not_crashed(client: TestClient, body: str) -> None:
    answer = client.post("/v1/waitlist", content=body, headers=AUTH)
    assert answer.status_code in (413, 422)


def test_the_waitlist_needs_a_key(client: TestClient) -> None:
    assert client.post("/v1/waitlist", json=waitlist_entry(1, PHONE)).status_code == 401


def test_one_is_no_contract_keyword_and_the_keywords_keep_their_meaning() -> None:
    assert classify("1", opted_out=False) == "other"
    assert classify("YES", opted_out=False) == "confirm"
    assert classify("STOP", opted_out=False) == "stop"


def test_a_one_from_a_number_without_an_offer_is_an_ordinary_text(
    client: TestClient, rt: Runtime
) -> None:
    apply(rt, "booked", new_york(2026, 12, 3, 10, 0))
    reply(client, rt, "1", PHONE)
    with rt.sessions() as session:
        [message] = session.scalars(select(InboundMessage)).all()
        assert (message.intent, message.needs_staff) == ("other", True)


def open_the_slot(rt: Runtime, client: TestClient, clock: SimulatedClock) -> None:
    """Four waitlisted patients who suit Tuesday 2:30 PM, one who does not, then the cancel."""
    put_on_waitlist(
        client,
        *(waitlist_entry(i, phone) for i, phone in enumerate(WAITING, 1)),
        waitlist_entry(5, "+17185550165", days=["fri"]),
    )
    apply(rt, "booked", TUESDAY)
    clock.now = new_york(2026, 12, 7, 9, 0)
    apply(rt, "cancelled", TUESDAY)


def test_a_cancelled_visit_is_offered_three_at_a_time_ten_minutes_apart(
    client: TestClient, rt: Runtime, fake_twilio: FakeTwilio, clock: SimulatedClock
) -> None:
    open_the_slot(rt, client, clock)
    offers = rows_of(rt, "waitlist_offer")
    assert [(o.patient_id, o.due_at) for o in offers] == [
        ("pat-w1", clock.now),
        ("pat-w2", clock.now),
        ("pat-w3", clock.now),
        ("pat-w4", clock.now + timedelta(minutes=10)),
    ]
    run_until(rt, clock.now + timedelta(minutes=1))
    assert texts_to(fake_twilio, WAITING[0]) == [
        "North Shore Skin & Neurology: A 2:30 PM slot opened Tue, Dec 8 in Forest Hills."
        " Reply 1 to take it. Reply STOP to opt out"
    ]
    assert texts_to(fake_twilio, WAITING[3]) == []
    assert texts_to(fake_twilio, "+17185550165") == []
    assert reply(client, rt, "1", WAITING[1]).startswith("North Shore Skin & Neurology: The slot")
    run_until(rt, clock.now + timedelta(minutes=30))
    assert texts_to(fake_twilio, WAITING[3]) == []  # the next wave is withdrawn: it is taken
    assert [(o.patient_id, o.status) for o in rows_of(rt, "waitlist_offer")][3] == (
        "pat-w4",
        "cancelled",
    )


def test_the_slot_booked_again_withdraws_its_offers(
    client: TestClient, rt: Runtime, fake_twilio: FakeTwilio, clock: SimulatedClock
) -> None:
    open_the_slot(rt, client, clock)
    clock.now += timedelta(minutes=1)
    apply(rt, "booked", TUESDAY)
    run_until(rt, clock.now + timedelta(minutes=30))
    assert all(texts_to(fake_twilio, phone) == [] for phone in WAITING)


def test_offers_wait_out_the_night_and_close_before_the_slot(
    client: TestClient, rt: Runtime, clock: SimulatedClock
) -> None:
    put_on_waitlist(client, waitlist_entry(1, WAITING[0]))
    apply(rt, "booked", TUESDAY)
    clock.now = new_york(2026, 12, 7, 22, 30)
    apply(rt, "cancelled", TUESDAY)
    [offer] = rows_of(rt, "waitlist_offer")
    assert offer.due_at == new_york(2026, 12, 8, 8, 0)
    assert offer.expires_at == TUESDAY - timedelta(hours=2)


def test_a_visit_freed_too_late_is_not_offered(
    client: TestClient, rt: Runtime, clock: SimulatedClock
) -> None:
    put_on_waitlist(client, waitlist_entry(1, WAITING[0]))
    apply(rt, "booked", TUESDAY)
    clock.now = TUESDAY - timedelta(minutes=90)
    apply(rt, "cancelled", TUESDAY)
    assert rows_of(rt, "waitlist_offer") == []


def test_an_opted_out_waitlisted_patient_is_not_offered(
    client: TestClient, rt: Runtime, fake_twilio: FakeTwilio, clock: SimulatedClock
) -> None:
    put_on_waitlist(client, waitlist_entry(1, WAITING[0]), waitlist_entry(2, WAITING[1]))
    reply(client, rt, "STOP", WAITING[0])
    apply(rt, "booked", TUESDAY)
    clock.now = new_york(2026, 12, 7, 9, 0)
    apply(rt, "cancelled", TUESDAY)
    run_until(rt, clock.now + timedelta(minutes=30))
    assert texts_to(fake_twilio, WAITING[0]) == []
    assert len(texts_to(fake_twilio, WAITING[1])) == 1


@pytest.fixture
def web(rt: Runtime) -> Iterator[str]:
    """The app served by uvicorn on a loopback port: concurrent requests are real ones."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


class Receiver:
    """A booking system's webhook endpoint on loopback: it keeps each body whose Standard
    Webhooks signature the `standardwebhooks` library accepts, and answers 401 to the rest."""

    def __init__(self, secret: str) -> None:
        self.verified: list[dict[str, Any]] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    event = Webhook(secret).verify(body, dict(self.headers.items()))
                except WebhookVerificationError:
                    receiver.refused += 1
                    self.send_response(401)
                else:
                    receiver.verified.append(event)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_replies_at_once_make_exactly_one_winner(
    client: TestClient, rt: Runtime, fake_twilio: FakeTwilio, clock: SimulatedClock, web: str
) -> None:
    secret = hooks.new_secret()
    receiver = Receiver(secret)
    with rt.sessions() as session:
        session.add(
            WebhookEndpoint(
                url=receiver.url,
                events="waitlist.slot_claimed",
                secret=secret,
                created_at=clock.now,
            )
        )
        session.commit()
    open_the_slot(rt, client, clock)
    run_until(rt, clock.now + timedelta(minutes=1))
    assert all(len(texts_to(fake_twilio, phone)) == 1 for phone in WAITING[:3])

    answers: dict[str, str] = {}
    start = threading.Barrier(2)

    def take_it(phone: str) -> None:
        with httpx.Client(base_url=web, timeout=10) as http:
            start.wait()
            answers[phone] = reply(http, rt, "1", phone)

    racers = [threading.Thread(target=take_it, args=(p,)) for p in WAITING[1:3]]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()

    won = [p for p, said in answers.items() if "The slot is yours" in said]
    gone = [p for p, said in answers.items() if "just taken" in said]
    assert len(won) == 1 and len(gone) == 1, answers
    with rt.sessions() as session:
        [slot] = session.scalars(select(WaitlistSlot)).all()
        assert slot.status == "claimed"
        assert slot.claimed_entry is not None and slot.claimed_entry.patient.phone == won[0]
        offers = {o.phone: o.answer for o in session.scalars(select(WaitlistOffer))}
        assert offers == {WAITING[0]: None, won[0]: "won", gone[0]: "too_late", WAITING[3]: None}
        [delivery] = session.scalars(select(WebhookDelivery)).all()
        assert delivery.event == "waitlist.slot_claimed"
        assert '"start": "2026-12-08T19:30:00Z"' in delivery.payload.replace('":"', '": "')

    # A third "1" later is told it is gone; the winner asking again is told it is theirs.
    assert "just taken" in reply(client, rt, "1", WAITING[0])
    assert "The slot is yours" in reply(client, rt, "1", won[0])
    with rt.sessions() as session:
        assert len(session.scalars(select(WebhookDelivery)).all()) == 1
    try:
        hooks.deliver_due(rt)
        hooks.deliver_due(rt)  # a second beat finds nothing more to send
    finally:
        receiver.server.shutdown()
    assert receiver.refused == 0
    [told] = receiver.verified
    assert told["type"] == "waitlist.slot_claimed"
    assert told["data"]["slot"]["start"] == "2026-12-08T19:30:00Z"
    assert (
        told["data"]["patient"]["id"] == {p: f"pat-w{i}" for i, p in enumerate(WAITING, 1)}[won[0]]
    )


def test_the_desk_adds_a_patient_sees_the_claim_on_the_worklist_and_books_it(
    client: TestClient, rt: Runtime, fake_twilio: FakeTwilio, clock: SimulatedClock
) -> None:
    new_staff(rt)
    assert log_in(client).status_code == 303
    page = client.get("/staff/waitlist")
    form = {
        "csrf": csrf(page), "phone": "(718) 555-0166", "first_name": "Rosa",
        "last_name": "Diaz", "language": "es", "location": "forest-hills",
        "treatment": "botox-cosmetic", "day_tue": "1", "earliest": "13:00", "latest": "16:00",
    }  # fmt: skip
    refused = client.post("/staff/waitlist", data=form)
    assert "agreed" in refused.text or "tick the box" in refused.text
    added = client.post("/staff/waitlist", data={**form, "agreed": "1"})
    assert "Rosa Diaz" in added.text and "Tue · 13:00–16:00" in added.text
    apply(rt, "booked", TUESDAY)
    clock.now = new_york(2026, 12, 7, 9, 0)
    apply(rt, "cancelled", TUESDAY)
    run_until(rt, clock.now + timedelta(minutes=1))
    [offer] = texts_to(fake_twilio, "+17185550166")
    assert offer.startswith("North Shore Skin & Neurology: Hay una cita libre el mar 8 dic")
    assert reply(client, rt, "1", "+17185550166").startswith(
        "North Shore Skin & Neurology: La cita es suya"
    )
    assert log_in(client).status_code == 303  # a week on: the session ended
    worklist = client.get("/staff/worklist")
    assert "Slot claimed — book it" in worklist.text and "Rosa" in worklist.text
    slot_id = re.search(r"/staff/waitlist/slots/(\d+)/booked", worklist.text)
    assert slot_id
    client.post(f"/staff/waitlist/slots/{slot_id[1]}/booked", data={"csrf": csrf(worklist)})
    assert "Slot claimed" not in client.get("/staff/worklist").text
    assert "took it" in client.get("/staff/waitlist").text


def test_stats_count_the_no_shows_rebooked_within_two_weeks(
    rt: Runtime, clock: SimulatedClock
) -> None:
    monday, tuesday = new_york(2026, 11, 30, 10, 0), new_york(2026, 12, 1, 11, 0)
    apply(rt, "booked", monday)
    apply(rt, "booked", tuesday, appointment_id="apt-b", patient_id="pat-b", phone=WAITING[0])
    clock.now = new_york(2026, 12, 1, 12, 0)
    apply(rt, "no_show", monday)
    apply(rt, "no_show", tuesday, appointment_id="apt-b", patient_id="pat-b", phone=WAITING[0])
    clock.now = new_york(2026, 12, 10, 9, 0)  # nine days on, Ana books again; pat-b does not
    apply(rt, "booked", new_york(2026, 12, 20, 10, 0), appointment_id="apt-2")
    clock.now = new_york(2026, 12, 30, 9, 0)  # and pat-b only after the fortnight
    apply(rt, "booked", new_york(2027, 1, 5, 10, 0), appointment_id="apt-b2", patient_id="pat-b")
    with rt.sessions() as session:
        numbers = stats(session, rt.clinic, new_york(2026, 12, 2, 9, 0))
    [forest_hills] = [loc for loc in numbers["locations"] if loc["id"] == "forest-hills"]
    week = forest_hills["weeks"][-1]
    assert (week["no_shows"], week["no_shows_rebooked"], week["no_show_rebook_rate"]) == (
        2,
        1,
        0.5,
    )


def test_a_fhir_waitlist_appointment_puts_the_patient_on_the_waitlist(rt: Runtime) -> None:
    resource = fhir_fixture("appointment-booked.json") | {
        "id": "wish-1",
        "status": "waitlist",
        "requestedPeriod": [
            {"start": "2026-12-08T13:00:00-05:00", "end": "2026-12-08T17:00:00-05:00"},
            {"start": "2026-12-10T09:00:00-05:00", "end": "2026-12-10T12:00:00-05:00"},
        ],
    }
    anytime = {k: v for k, v in resource.items() if k != "requestedPeriod"} | {"id": "wish-2"}
    with TestClient(integrations_app(rt)) as fhir:
        first = fhir.post("/v1/fhir/Appointment", json=resource, headers=AUTH)
        again = fhir.post("/v1/fhir/Appointment", json=resource, headers=AUTH)
        timeless = fhir.post("/v1/fhir/Appointment", json=anytime, headers=AUTH)
    assert (first.status_code, again.status_code) == (201, 200), first.text
    assert first.json()["waitlist"] | {"created_at": None} == {
        "id": "fhir-wish-1", "patient": "pat-1", "location": "forest-hills",
        "treatment": "botox-cosmetic", "days": ["tue", "thu"], "earliest": "09:00",
        "latest": "17:00", "status": "waiting", "created_at": None,
    }  # fmt: skip
    assert timeless.status_code == 201
    assert timeless.json()["waitlist"]["days"] == ["mon", "tue", "wed", "thu", "fri"]
    with rt.sessions() as session:
        assert session.scalars(select(Appointment)).all() == []  # no visit booked, nothing sent
        assert session.scalars(select(Notification)).all() == []


def test_the_waitlist_csv_import_adds_each_row_once_and_names_bad_cells(
    rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", rt.settings.database_url)
    monkeypatch.setenv("NOTIFIER_CONFIG", str(rt.settings.config_path))
    path = tmp_path / "waitlist.csv"
    path.write_text(
        "waitlist_id,patient_id,first_name,last_name,phone,location,treatment,days,earliest,latest\n"
        "wl-1,pat-w1,Rosa,Diaz,(718) 555-0161,forest-hills,botox-cosmetic,tue thu,13:00,17:00\n"
        "wl-2,pat-w2,Li,Wong,(718) 555-0162,brooklyn,botox-cosmetic,,,\n"
    )
    parser = argparse.ArgumentParser(prog="notifier")
    add_commands(parser.add_subparsers(required=True))
    args = parser.parse_args(["waitlist", "import", str(path)])
    assert args.run(args) == 1
    out, err = capsys.readouterr()
    assert err == f"{path}:3: location: unknown location\n"
    assert out == "2 rows: 1 added, 0 unchanged, 1 failed\n"
    assert args.run(args) == 1
    assert capsys.readouterr().out == "2 rows: 0 added, 1 unchanged, 1 failed\n"
    with rt.sessions() as session:
        [entry] = session.scalars(select(WaitlistEntry)).all()
        assert (entry.days, entry.earliest, entry.latest, entry.source) == (
            "tue,thu",
            "13:00",
            "17:00",
            "csv",
        )


def test_the_desk_marking_a_no_show_plans_the_text_and_its_undo_withdraws_it(
    rt: Runtime, clock: SimulatedClock
) -> None:
    visit = new_york(2026, 11, 30, 15, 0)
    apply(rt, "booked", visit)
    clock.now = visit + timedelta(minutes=10)
    with rt.sessions() as session:
        desk.act(session, rt.clinic, "apt-1", "no_show", "t" * 32, "amy@clinic.example", clock.now)
    [row] = rows_of(rt, "no_show_recovery")
    assert (row.status, row.due_at) == ("scheduled", visit + timedelta(hours=2, minutes=10))
    with rt.sessions() as session:
        [done] = session.scalars(select(VisitAction)).all()
        desk.undo(session, rt.clinic, "apt-1", done.id, "u" * 32, "amy@clinic.example", clock.now)
    [row] = rows_of(rt, "no_show_recovery")
    assert (row.status, row.reason) == ("cancelled", "plan_changed")


def test_a_patient_without_texts_gets_the_we_missed_you_by_email(
    rt: Runtime, smtp: SMTPSink, fake_twilio: FakeTwilio, clock: SimulatedClock
) -> None:
    visit = new_york(2026, 12, 3, 10, 0)
    emailed = {"sms": False, "email": True, "marketing": False}
    apply(rt, "booked", visit, consent=emailed, language="es")
    clock.now = new_york(2026, 12, 3, 10, 40)
    apply(rt, "no_show", visit, consent=emailed, language="es")
    run_until(rt, new_york(2026, 12, 4, 12, 0))
    missed = [m for m in smtp.messages if "echamos de menos" in str(m["Subject"])]
    assert len(missed) == 1
    text = missed[0].get_body(("plain",))
    assert text is not None and "(718) 555-0117" in text.get_content()
    assert "Botox" not in text.get_content()
    assert not [m for m in fake_twilio.messages if m["to"] == PHONE]


@pytest.mark.parametrize(
    "changes",
    [
        {"phone": "not a phone"},
        {"phone": "+44 20 7946 0958" * 40},
        {"location": "nowhere", "treatment": "\\x00"},
        {"earliest": "17:00", "latest": "09:00"},
        {"earliest": "", "latest": "nonsense"},
        {"day_tue": "", "day_mon": ""},
        {"language": "xx-" * 50},
    ],
)
def test_hostile_desk_waitlist_forms_get_an_answer_not_a_500(
    client: TestClient, rt: Runtime, changes: dict[str, str]
) -> None:
    new_staff(rt)
    assert log_in(client).status_code == 303
    page = client.get("/staff/waitlist")
    form = {
        "csrf": csrf(page), "phone": "(718) 555-0166", "first_name": "Rosa", "language": "en",
        "location": "forest-hills", "treatment": "botox-cosmetic", "day_tue": "1",
        "earliest": "13:00", "latest": "16:00", "agreed": "1", **changes,
    }  # fmt: skip
    answer = client.post("/staff/waitlist", data=form)
    assert answer.status_code == 200
    assert "Not added" in answer.text
    with rt.sessions() as session:
        assert session.scalars(select(WaitlistEntry)).all() == []
    for path in ("/staff/waitlist/99999999999999999999/remove", "/staff/waitlist/slots/0/booked"):
        assert client.post(path, data={"csrf": csrf(page)}).status_code in (200, 404, 422)


def test_the_policy_plans_one_we_missed_you_unless_rebooked_or_turned_off(rt: Runtime) -> None:
    marked = new_york(2026, 12, 3, 20, 30)
    visit = Visit(
        "no_show",
        marked - timedelta(hours=3),
        marked,
        marked - timedelta(days=5),
        no_show_at=marked,
    )
    who = Recipient(zone=NEW_YORK, sms=True, email=True, marketing=False)
    treatment, policy = rt.clinic.treatments[0], rt.clinic.policy
    [planned] = plan(visit, who, treatment, policy, marked)
    # Due 22:30, inside quiet hours: the text waits for 08:00 and stays useful for two days.
    assert (planned.kind, planned.channel) == ("no_show_recovery", "sms")
    assert planned.due_at == new_york(2026, 12, 4, 8, 0)
    assert planned.expires_at == marked + timedelta(hours=2, days=2)
    assert plan(dataclasses.replace(visit, rebooked=True), who, treatment, policy, marked) == []
    off = policy.model_copy(update={"no_show_recovery_hours": 0})
    assert plan(visit, who, treatment, off, marked) == []
    no_texts = dataclasses.replace(who, sms=False)
    assert [p.channel for p in plan(visit, no_texts, treatment, policy, marked)] == ["email"]


def test_the_staff_see_the_offers_of_a_freed_visit_on_its_page(
    client: TestClient, rt: Runtime, clock: SimulatedClock
) -> None:
    open_the_slot(rt, client, clock)
    new_staff(rt)
    assert log_in(client).status_code == 303
    page = client.get("/staff/appointments/apt-1")
    assert page.status_code == 200
    assert page.text.count("Waitlist offer to Wai") == 4


def test_a_no_show_recorded_while_the_visit_is_still_ahead_frees_it_for_the_waitlist(
    client: TestClient, rt: Runtime, clock: SimulatedClock
) -> None:
    put_on_waitlist(client, waitlist_entry(1, WAITING[0]))
    apply(rt, "booked", TUESDAY)
    apply(rt, "booked", TUESDAY, appointment_id="apt-late", patient_id="pat-late")
    clock.now = new_york(2026, 12, 8, 9, 0)  # the patient said they will not come at 2:30
    apply(rt, "no_show", TUESDAY)
    [offer] = rows_of(rt, "waitlist_offer")
    assert (offer.patient_id, offer.due_at) == ("pat-w1", clock.now)
    clock.now = new_york(2026, 12, 8, 14, 40)
    apply(rt, "no_show", TUESDAY, appointment_id="apt-late", patient_id="pat-late")
    assert len(rows_of(rt, "waitlist_offer")) == 1  # a visit already under way frees nothing
