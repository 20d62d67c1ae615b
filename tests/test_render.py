"""Templates and the renderer: every message renders, SMS stay in one GSM-7 segment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError

from notifier.render import (
    GSM7_BASIC,
    Rendered,
    Renderer,
    TemplateMissing,
    format_clock,
    format_day,
    format_longdate,
    is_gsm7,
    sms_segments,
    to_gsm7,
)

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
KINDS = ("confirmation", "reminder", "aftercare", "rebook", "cancellation", "manual")
LANGS = ("en", "es")
# Answers to patients' replies: SMS only.
REPLIES = (
    "reply_confirmed",
    "reply_reschedule",
    "reply_stop",
    "reply_start",
    "reply_help",
    "reply_other",
)
LOCATIONS = {
    "manhasset": {
        "id": "manhasset",
        "name": "Manhasset",
        "phone": "(516) 555-0142",
        "address": "1 Plandome Rd, Manhasset, NY 11030",
    },
    "forest-hills": {
        "id": "forest-hills",
        "name": "Forest Hills",
        "phone": "(718) 555-0117",
        "address": "108-20 Queens Blvd, Forest Hills, NY 11375",
    },
}
EDT = timezone(timedelta(hours=-4))
# Wednesday, September 30 at 10:30: the longest short date and time in both languages.
LONGEST_START = datetime(2026, 9, 30, 10, 30, tzinfo=EDT)
# Matches "Reply CANCEL", "Reply with CANCEL", "Responda CANCELAR"...
REPLY_CANCEL = re.compile(r"\b(reply|respond[ae]?)\b\W+(\w+\W+){0,2}cancel", re.IGNORECASE)


def make_context(
    *,
    lang: str = "en",
    kind: str = "reminder",
    location: str = "forest-hills",
    first_name: str = "Ana",
    ask_confirm: bool = False,
    rescheduled: bool = False,
    links: Mapping[str, str | None] | None = None,
    start: datetime = LONGEST_START,
) -> dict[str, Any]:
    return {
        "lang": lang,
        "practice": {"name": "North Shore Skin & Neurology"},
        "location": LOCATIONS[location],
        "patient": {"first_name": first_name},
        "appointment": {"start": start, "end": start + timedelta(minutes=30), "provider": None},
        "treatment": {"name": "Botox for fine lines", "avoid_hours": 24},
        "notification": {"kind": kind, "ask_confirm": ask_confirm, "rescheduled": rescheduled},
        "links": dict(links or {"confirm": None, "reschedule": None}),
    }


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES_DIR)


def sms(renderer: Renderer, kind: str, lang: str, **context: Any) -> str:
    return renderer.render(kind, "sms", lang, make_context(lang=lang, kind=kind, **context)).text


def test_kinds_on_disk(renderer: Renderer) -> None:
    others = (
        "staff_message",
        "no_show_recovery",
        "waitlist_offer",
        "reply_slot_won",
        "reply_slot_gone",
    )
    assert renderer.kinds() == sorted((*KINDS, *REPLIES, *others))


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", REPLIES)
def test_every_reply_is_one_gsm7_segment(renderer: Renderer, kind: str, lang: str) -> None:
    text = sms(renderer, kind, lang, first_name="Christabelle")
    assert is_gsm7(text) and sms_segments(text) == 1, text


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_sms_and_email(renderer: Renderer, kind: str, lang: str) -> None:
    context = make_context(lang=lang, kind=kind)
    text = renderer.render(kind, "sms", lang, context)
    email = renderer.render(kind, "email", lang, context)

    assert text.subject is None and text.html is None
    assert email.subject and email.text and email.html
    for body in (text.text, email.text, email.html):
        assert "North Shore Skin" in body
        assert "(718) 555-0117" in body
    assert "\n" not in email.subject
    assert "108-20 Queens Blvd" in email.text


@pytest.mark.parametrize("flags", [False, True], ids=["plain", "confirm+rescheduled"])
@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", KINDS)
def test_sms_is_one_gsm7_segment(
    renderer: Renderer, kind: str, lang: str, location: str, flags: bool
) -> None:
    text = sms(
        renderer,
        kind,
        lang,
        location=location,
        first_name="Christabelle",
        ask_confirm=flags,
        rescheduled=flags,
    )
    assert is_gsm7(text), text
    assert sms_segments(text) == 1, (len(text), text)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", KINDS)
def test_sms_never_names_the_treatment(renderer: Renderer, kind: str, lang: str) -> None:
    text = sms(renderer, kind, lang, ask_confirm=True, rescheduled=True)
    assert "botox" not in text.lower()
    assert "fine lines" not in text.lower()


def test_no_sms_asks_to_reply_cancel(renderer: Renderer) -> None:
    for path in (TEMPLATES_DIR / "sms").glob("*.txt"):
        assert not REPLY_CANCEL.search(path.read_text(encoding="utf-8")), path.name
    for kind in KINDS:
        for lang in LANGS:
            assert not REPLY_CANCEL.search(sms(renderer, kind, lang, ask_confirm=True))


def test_reply_cancel_pattern_catches_the_phrasing() -> None:
    assert REPLY_CANCEL.search("Reply CANCEL to cancel")
    assert REPLY_CANCEL.search("Responda CANCELAR")
    assert not REPLY_CANCEL.search("Reply C to confirm. Your visit was cancelled.")


@pytest.mark.parametrize("kind", ["reminder", "manual"])
@pytest.mark.parametrize(("lang", "phrase"), [("en", "Reply C"), ("es", "Responda C")])
def test_reminder_asks_to_confirm_only_when_told(
    renderer: Renderer, kind: str, lang: str, phrase: str
) -> None:
    assert phrase in sms(renderer, kind, lang, ask_confirm=True)
    assert phrase not in sms(renderer, kind, lang, ask_confirm=False)


@pytest.mark.parametrize(
    ("lang", "moved_to", "new_time", "when"),
    [
        ("en", "moved to", "new time is", "Wed, Sep 30 10:30 AM"),
        ("es", "pasa al", "nueva hora es", "mié 30 sep 10:30"),
    ],
)
def test_rescheduled_confirmation_gives_the_new_time(
    renderer: Renderer, lang: str, moved_to: str, new_time: str, when: str
) -> None:
    moved = sms(renderer, "confirmation", lang, rescheduled=True)
    assert moved_to in moved and when in moved
    assert moved_to not in sms(renderer, "confirmation", lang, rescheduled=False)

    context = make_context(lang=lang, kind="confirmation", rescheduled=True)
    email = renderer.render("confirmation", "email", lang, context)
    assert email.html is not None
    assert new_time in email.text and new_time in email.html


def test_aftercare_gives_the_hours(renderer: Renderer) -> None:
    assert "24 hours" in sms(renderer, "aftercare", "en")
    assert "24 horas" in sms(renderer, "aftercare", "es")


def test_cancellation_names_the_slot(renderer: Renderer) -> None:
    text = sms(renderer, "cancellation", "en")
    assert "Wed, Sep 30 10:30 AM" in text and "cancelled" in text


def test_first_name_is_escaped_in_html_only(renderer: Renderer) -> None:
    context = make_context(first_name="<b>Ana</b>")
    email = renderer.render("reminder", "email", "en", context)
    text = renderer.render("reminder", "sms", "en", context).text

    assert email.html is not None and email.subject is not None
    assert "&lt;b&gt;Ana&lt;/b&gt;" in email.html and "<b>Ana</b>" not in email.html
    assert "<b>Ana</b>" in email.text and "<b>Ana</b>" in text
    assert "Skin & Neurology" in email.subject
    assert "Skin &amp; Neurology" in email.html


@pytest.mark.parametrize("kind", ["reminder", "manual"])
@pytest.mark.parametrize("lang", LANGS)
def test_reminder_email_shows_links_as_buttons(renderer: Renderer, kind: str, lang: str) -> None:
    links = {"confirm": "https://example.test/c?t=1&u=2", "reschedule": "https://example.test/r"}
    with_links = renderer.render(kind, "email", lang, make_context(lang=lang, links=links))
    assert with_links.html is not None
    assert 'href="https://example.test/c?t=1&amp;u=2"' in with_links.html
    assert 'href="https://example.test/r"' in with_links.html
    assert "https://example.test/r" in with_links.text

    context = make_context(lang=lang)
    del context["links"]
    without = renderer.render(kind, "email", lang, context)
    assert without.html is not None and "href=" not in without.html


def test_sms_whitespace_is_collapsed(renderer: Renderer) -> None:
    text = sms(renderer, "confirmation", "en", rescheduled=True)
    assert text == text.strip() and "  " not in text and "\n" not in text


def write(root: Path, name: str, content: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")


def test_missing_language_falls_back_to_english(tmp_path: Path) -> None:
    write(tmp_path, "sms/reminder.en.txt", "Hi {{ patient.first_name }}, {{ start | day(lang) }}")
    write(tmp_path, "email/reminder.en.subject.txt", "Reminder")
    write(tmp_path, "email/reminder.en.txt", "Hi")
    write(tmp_path, "email/reminder.en.html", "<p>Hi</p>")
    # A Spanish email missing its HTML part must not come out half Spanish.
    write(tmp_path, "email/reminder.es.subject.txt", "Recordatorio")
    write(tmp_path, "email/reminder.es.txt", "Hola")
    renderer = Renderer(tmp_path)
    context = {"patient": {"first_name": "Ana"}, "start": LONGEST_START}

    assert renderer.render("reminder", "sms", "es", context).text == "Hi Ana, Wed, Sep 30"
    assert renderer.render("reminder", "email", "es", context) == Rendered(
        subject="Reminder", text="Hi", html="<p>Hi</p>"
    )
    assert renderer.kinds() == ["reminder"]


def test_unknown_kind_or_channel_is_a_clear_error(renderer: Renderer) -> None:
    context = make_context()
    with pytest.raises(TemplateMissing, match="'birthday'"):
        renderer.render("birthday", "sms", "es", context)
    with pytest.raises(TemplateMissing, match="unknown channel 'fax'"):
        renderer.render("reminder", "fax", "en", context)
    assert issubclass(TemplateMissing, LookupError)


def test_missing_context_key_is_an_error(renderer: Renderer) -> None:
    context = make_context()
    del context["patient"]
    with pytest.raises(UndefinedError, match="patient"):
        renderer.render("reminder", "sms", "en", context)


# --- date filters -----------------------------------------------------------------------

THURSDAY = datetime(2026, 12, 3, 10, 0, tzinfo=timezone(timedelta(hours=-5)))


@pytest.mark.parametrize(
    ("lang", "day", "longdate"),
    [
        ("en", "Thu, Dec 3", "Thursday, December 3"),
        ("es", "jue 3 dic", "jueves 3 de diciembre"),
    ],
)
def test_date_filters(lang: str, day: str, longdate: str) -> None:
    assert format_day(THURSDAY, lang) == day
    assert format_longdate(THURSDAY, lang) == longdate


@pytest.mark.parametrize(
    ("hour", "minute", "en", "es"),
    [
        (10, 0, "10:00 AM", "10:00"),
        (0, 5, "12:05 AM", "0:05"),
        (12, 0, "12:00 PM", "12:00"),
        (13, 45, "1:45 PM", "13:45"),
    ],
)
def test_clock_filter(hour: int, minute: int, en: str, es: str) -> None:
    value = THURSDAY.replace(hour=hour, minute=minute)
    assert format_clock(value, "en") == en
    assert format_clock(value, "es") == es
    assert is_gsm7(format_clock(value, "es"))


def test_filters_reject_unknown_language() -> None:
    with pytest.raises(ValueError, match="'fr'"):
        format_day(THURSDAY, "fr")


# --- GSM-7 ------------------------------------------------------------------------------


def test_gsm7_basic_table_has_127_characters() -> None:
    assert len(GSM7_BASIC) == 127


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\u2018hi\u2019 \u201cyou\u201d", "'hi' \"you\""),
        ("3\u20134 months \u2014 ok", "3-4 months - ok"),
        ("wait\u2026", "wait..."),
        ("a\u00a0b\u2009c\u202fd", "a b c d"),
        ("María Ángela Ramírez Muñoz", "Maria Angela Ramirez Muñoz"),
        ("áéíóú ÁÉÍÓÚ", "aéiou AÉIOU"),
        ("ñÑüÜ¿¡é€", "ñÑüÜ¿¡é€"),
        ("François", "Francois"),
        ("zero\u200bwidth", "zerowidth"),
    ],
)
def test_to_gsm7(raw: str, expected: str) -> None:
    assert to_gsm7(raw) == expected
    assert is_gsm7(expected)


def test_to_gsm7_keeps_characters_without_a_lookalike() -> None:
    assert to_gsm7("ok \U0001f600") == "ok \U0001f600"


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 0),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters cost two septets
        ("€" * 81, 2),
        ("a" * 159 + "[", 2),
        # The escape pair is not split: 152 + (2) overflows the first 153-septet segment.
        ("a" * 152 + "€" + "a" * 152, 3),
        ("á" * 70, 1),  # one non-GSM character makes it UCS-2
        ("á" * 71, 2),
        ("a" * 69 + "á", 1),
        ("á" * 134, 2),
        ("á" * 135, 3),
        ("\U0001f600" * 35, 1),  # emoji are two UTF-16 code units each
        ("\U0001f600" * 36, 2),
        ("a" * 69 + "\U0001f600", 2),
    ],
)
def test_sms_segments(text: str, segments: int) -> None:
    assert sms_segments(text) == segments


def test_is_gsm7() -> None:
    assert is_gsm7("Hola ¿qué tal? ¡Si! ñ ü é [x] {y} €5")
    assert not is_gsm7("canción")
    assert not is_gsm7("\u2019")
