"""HIPAA minimum necessary: no patient-facing text names the treatment (texts, email subjects,
previews and bodies, calendar titles and descriptions) unless the clinic opts in for it."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import cast

import pytest
from icalendar import Calendar

from notifier.clinic import Clinic, Treatment, load_clinic
from notifier.compose import compose
from notifier.ingest import apply_event
from notifier.models import Appointment, Notification, Patient
from notifier.runtime import Runtime
from notifier.settings import Settings
from notifier.simulate import run_until
from tests.conftest import EXAMPLE_CLINIC, new_york
from tests.events import event
from tests.fakes import FakeTwilio, SMTPSink

VISIT = new_york(2026, 12, 3, 10, 0)
NOW = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
KINDS = ("confirmation", "reminder", "manual", "aftercare", "rebook", "cancellation")
LANGS = ("en", "es")


def plain(text: str) -> str:
    """Lower case without accents: texts go through GSM-7, which strips most of them."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def distinctive(treatment: Treatment) -> set[str]:
    """The treatment's names, whole, and each of their words of five letters or more."""
    names = {treatment.name, *treatment.patient_wording.values()}
    words = {w for name in names for w in re.findall(r"\w{5,}", plain(name))}
    return {plain(name) for name in names} | words


def leaks(text: str, treatments: tuple[Treatment, ...]) -> set[str]:
    found = plain(text)
    return {
        term
        for t in treatments
        for term in distinctive(t)
        if re.search(rf"(?<!\w){re.escape(term)}(?!\w)", found)
    }


def test_the_leak_finder_finds_names_and_words() -> None:
    clinic = load_clinic(EXAMPLE_CLINIC)
    assert leaks("Your Botox visit", clinic.treatments) == {"botox"}
    assert leaks("para espasmos musculares", clinic.treatments) == {"espasmos", "musculares"}
    assert leaks("Líneas de expresión", clinic.treatments) == {"lineas", "expresion"}
    assert leaks("See you at Forest Hills", clinic.treatments) == set()


def runtime(tmp_path: Path, clinic_text: str) -> Runtime:
    config = tmp_path / "clinic.toml"
    config.write_text(clinic_text)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'unused.db'}",
        config_path=config,
        secret_key="test-secret",
        mail_from="North Shore Skin & Neurology <reminders@northshore.example>",
    )
    return Runtime.build(settings)


def notification(
    clinic: Clinic, treatment: Treatment, kind: str, channel: str, lang: str
) -> Notification:
    patient = Patient(
        id="pat-1", first_name="Ana", phone="+17185550134", email="ana@example.org", language=lang
    )
    start = VISIT.astimezone(UTC)
    appointment = Appointment(
        id="apt-1",
        patient=patient,
        location_id=clinic.locations[0].id,
        treatment_id=treatment.id,
        start_at=start,
        end_at=start + timedelta(minutes=30),
        status="cancelled" if kind == "cancellation" else "booked",
        confirmation="unconfirmed",
        booked_at=NOW,
        rescheduled=True,
        calendar_sequence=3,
    )
    return Notification(
        id=7,
        appointment=appointment,
        patient=appointment.patient,
        kind=kind,
        channel=channel,
        ask_confirm=True,
        slot="",
    )


def artefacts(rt: Runtime, treatment: Treatment) -> Iterator[tuple[str, str]]:
    """Every patient-facing text of every kind, channel and language: (where, text)."""
    for kind in KINDS:
        for lang in LANGS:
            for channel in ("sms", "email"):
                for texted in (False, True):
                    n = notification(rt.clinic, treatment, kind, channel, lang)
                    message = compose(rt, n, NOW, texted)
                    where = f"{kind}.{lang}.{channel}"
                    yield f"{where} text", message.text
                    yield f"{where} subject", message.subject or ""
                    yield f"{where} html", message.html or ""
                    for item in message.attachments:
                        yield f"{where} {item.filename}", item.data.decode("utf-8")


def test_no_template_nor_calendar_names_a_treatment_by_default(tmp_path: Path) -> None:
    rt = runtime(tmp_path, EXAMPLE_CLINIC.read_text())
    calendars = 0
    for treatment in rt.clinic.treatments:
        for where, text in artefacts(rt, treatment):
            assert not leaks(text, rt.clinic.treatments), (where, text)
            calendars += where.endswith(".ics")
    assert calendars == 2 * 2 * 2 * len(rt.clinic.treatments)  # confirmation and cancellation


def test_a_clinic_can_let_one_treatment_be_named(tmp_path: Path) -> None:
    opted_in = EXAMPLE_CLINIC.read_text().replace(
        "rebook_after_days = 84\n", "rebook_after_days = 84\nname_in_messages = true\n", 1
    )
    rt = runtime(tmp_path, opted_in)
    cosmetic, spasm = rt.clinic.treatments
    assert cosmetic.name_in_messages and not spasm.name_in_messages
    for where, text in artefacts(rt, spasm):
        assert not leaks(text, rt.clinic.treatments), (where, text)
    named = dict(artefacts(rt, cosmetic))
    calendar = Calendar.from_ical(named["confirmation.en.email appointment.ics"])
    assert str(calendar.walk("VEVENT")[0]["summary"]) == (
        "Botox for fine lines at North Shore Skin & Neurology"
    )
    assert "Treatment: Botox for fine lines" in named["confirmation.en.email text"]
    # Texts and subjects still say where and when only.
    for where, text in named.items():
        if where.endswith((" subject",)) or ".sms " in where:
            assert not leaks(text, rt.clinic.treatments), (where, text)


def test_the_calendar_title_says_where_not_what(tmp_path: Path) -> None:
    rt = runtime(tmp_path, EXAMPLE_CLINIC.read_text())
    named = dict(artefacts(rt, rt.clinic.treatments[0]))
    for lang, title in (("en", "Appointment at"), ("es", "Cita en")):
        calendar = Calendar.from_ical(named[f"confirmation.{lang}.email appointment.ics"])
        (vevent,) = calendar.walk("VEVENT")
        assert str(vevent["summary"]) == f"{title} North Shore Skin & Neurology"
        assert str(vevent["description"]) == "Manhasset: (516) 555-0142"


def test_the_email_preview_is_set_and_says_no_treatment(tmp_path: Path) -> None:
    rt = runtime(tmp_path, EXAMPLE_CLINIC.read_text())
    named = dict(artefacts(rt, rt.clinic.treatments[0]))
    for kind in KINDS:
        html = named[f"{kind}.en.email html"]
        preheader = re.search(r'<div style="display:none;[^>]*>(.*?)&zwnj;', html)
        assert preheader is not None, kind
        assert (
            preheader.group(1)
            == "North Shore Skin &amp; Neurology &middot; Manhasset &middot; (516) 555-0142"
        )


def mail_texts(mail: EmailMessage) -> Iterator[str]:
    yield str(mail["Subject"])
    for part in mail.walk():
        if part.get_content_maintype() != "multipart":
            yield cast(bytes, part.get_payload(decode=True)).decode("utf-8")


@pytest.mark.parametrize(
    ("sms", "texts", "emails"),
    [(True, 5, 3), (False, 0, 4)],  # without texts, the rebook nudge goes by email
    ids=["texts", "email-only"],
)
@pytest.mark.parametrize("treatment", ["botox-cosmetic", "botox-spasm"])
def test_a_patients_whole_course_names_no_treatment(
    rt: Runtime,
    fake_twilio: FakeTwilio,
    smtp: SMTPSink,
    treatment: str,
    sms: bool,
    texts: int,
    emails: int,
) -> None:
    consent = {"sms": sms, "email": True, "marketing": True}
    with rt.sessions() as session:
        booked = event(
            "booked", VISIT, occurred_at=rt.clock(), treatment=treatment, consent=consent
        )
        apply_event(session, rt.clinic, booked, rt.clock())
    run_until(rt, VISIT + timedelta(days=100))
    bodies = [m["body"] for m in fake_twilio.messages]
    mails = [text for mail in smtp.messages for text in mail_texts(mail)]
    assert (len(bodies), len(smtp.messages)) == (texts, emails)
    for text in bodies + mails:
        assert not leaks(text, rt.clinic.treatments), text
