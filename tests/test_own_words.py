"""Replies as patients write them, and what the service reads in each. A wrong confirmation is
worse than none: anything doubtful must come out `other` (it goes to the worklist)."""

from __future__ import annotations

import pytest

from notifier.own_words import fold
from notifier.track import classify

CONFIRM, RESCHEDULE, OTHER, STOP, START, HELP = (
    "confirm",
    "reschedule",
    "other",
    "stop",
    "start",
    "help",
)

REPLIES: list[tuple[str, str]] = [
    # The contract's keywords, exactly as DESIGN.md lists them.
    ("C", CONFIRM),
    ("y", CONFIRM),
    ("YES", CONFIRM),
    ("Confirm", CONFIRM),
    ("confirmed.", CONFIRM),
    ("Ok!", CONFIRM),
    ("si", CONFIRM),
    ("Sí", CONFIRM),
    ("¡SÍ!", CONFIRM),
    ("R", RESCHEDULE),
    ("Reschedule", RESCHEDULE),
    ("n", RESCHEDULE),
    ("No.", RESCHEDULE),
    ("STOP", STOP),
    ("cancel", STOP),
    ("Unsubscribe", STOP),
    ("quit", STOP),
    ("HELP", HELP),
    ("info", HELP),
    # Confirmations in English.
    ("Confirmed, thanks!", CONFIRM),
    ("yes I'll be there", CONFIRM),
    ("Yes I’ll be there!", CONFIRM),
    ("👍", CONFIRM),
    ("👍🏽", CONFIRM),
    ("✅", CONFIRM),
    ("Yes, thank you", CONFIRM),
    ("yes please", CONFIRM),
    ("Yep see you then", CONFIRM),
    ("Yeah I will be there", CONFIRM),
    ("Will be there, thanks 🙂", CONFIRM),
    ("OK thanks!!", CONFIRM),
    ("Okay, see you Thursday", CONFIRM),
    ("I confirm", CONFIRM),
    ("Hi yes confirmed", CONFIRM),
    ("Yes, absolutely. Thanks Dr", CONFIRM),
    ("Sure thing!", CONFIRM),
    ("CONFIRMED 👍", CONFIRM),
    ("Great, I'll be there", CONFIRM),
    ("of course, see you tomorrow", CONFIRM),
    # Confirmations in Spanish.
    ("Sí, ahí estaré", CONFIRM),
    ("si ahi estare", CONFIRM),
    ("Confirmo, gracias", CONFIRM),
    ("Sí, gracias 🙏", CONFIRM),
    ("Claro que sí", CONFIRM),
    ("Confirmada, muchas gracias", CONFIRM),
    ("Perfecto, nos vemos el jueves", CONFIRM),
    ("Allí estaré", CONFIRM),
    ("De acuerdo, gracias", CONFIRM),
    ("Hola, sí confirmo", CONFIRM),
    ("Confirmo mi cita", CONFIRM),
    ("I confirm my appointment, thank you", CONFIRM),
    # Asking for another time, in English and Spanish.
    ("can we move it to Friday?", RESCHEDULE),
    ("Can I reschedule?", RESCHEDULE),
    ("yes but can we move it", RESCHEDULE),
    ("no I can't make it", RESCHEDULE),
    ("I cannot make it tomorrow, sorry", RESCHEDULE),
    ("Need to change my appointment", RESCHEDULE),
    ("Is there another time next week?", RESCHEDULE),
    ("I won't be able to come", RESCHEDULE),
    ("Can we push it back an hour", RESCHEDULE),
    ("I need to postpone", RESCHEDULE),
    ("¿Podemos cambiar la cita?", RESCHEDULE),
    ("No puedo ir el jueves", RESCHEDULE),
    ("Necesito otra fecha por favor", RESCHEDULE),
    ("¿Se puede reprogramar para el lunes?", RESCHEDULE),
    ("sí pero necesito cambiar la hora", RESCHEDULE),
    ("No voy a poder, lo siento", RESCHEDULE),
    ("I won't be there", RESCHEDULE),
    ("No puedo venir mañana", RESCHEDULE),
    # Not confidently either: staff read them.
    ("is it confirmed?", OTHER),
    ("not sure yet", OTHER),
    # The contract's YES and OK: surrounding punctuation is ignored, as DESIGN.md says.
    ("Yes?", CONFIRM),
    ("Ok?", CONFIRM),
    ("Thanks", OTHER),
    ("thank you!", OTHER),
    ("yes I'll be there but running 10 min late", OTHER),
    ("I think so", OTHER),
    ("maybe", OTHER),
    ("Yes, can I bring my daughter?", OTHER),
    ("What time is it again", OTHER),
    ("who is this", OTHER),
    ("Please stop texting me", OTHER),
    ("cancel my appointment", OTHER),
    ("No thanks", OTHER),
    ("no need to reschedule, see you then", OTHER),
    ("👎", OTHER),
    ("yes please 👎", OTHER),
    ("👍😡", OTHER),
    ("ok thanks 不", OTHER),
    ("🤔", OTHER),
    ("yes if I can get a ride", OTHER),
    ("¿Está confirmada?", OTHER),
    ("No estoy segura todavía", OTHER),
    ("Si puedo voy", OTHER),
    ("Gracias", OTHER),
    ("¿Quién es?", OTHER),
    ("Confirmed for Friday", OTHER),
    ("See you tomorrow at 10", OTHER),
    ("Yes please cancel", OTHER),
    ("👍 but I'll be late", OTHER),
    ("ok cool", OTHER),
    ("No, I'll be there", OTHER),
    ("", OTHER),
    ("   ", OTHER),
]


@pytest.mark.parametrize(("body", "expected"), REPLIES, ids=[b or "(empty)" for b, _ in REPLIES])
def test_a_reply_means_what_the_patient_meant(body: str, expected: str) -> None:
    assert classify(body, opted_out=False) == expected


def test_the_table_is_large_and_covers_both_languages() -> None:
    assert len(REPLIES) >= 60
    outcomes = {expected for _, expected in REPLIES}
    assert {CONFIRM, RESCHEDULE, OTHER} <= outcomes


@pytest.mark.parametrize(
    ("body", "expected"), [("YES", START), ("Sí", CONFIRM), ("yes I'll be there", CONFIRM)]
)
def test_to_a_number_that_said_stop_only_a_bare_yes_is_twilios_opt_in(
    body: str, expected: str
) -> None:
    assert classify(body, opted_out=True) == expected


def test_the_providers_keyword_match_wins_over_the_words() -> None:
    assert classify("yes I'll be there", opted_out=False, opt_out="STOP") == STOP


def test_folding_drops_case_accents_apostrophes_and_marks() -> None:
    assert fold("Sí, ahí estaré 👍🏽") == "si ahi estare yes"
    assert fold("I’LL be THERE!!") == "ill be there"
    assert fold("¿OK? 😊 👎") == "ok unknown"
