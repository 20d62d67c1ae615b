"""Replies in the patient's own words: "Confirmed, thanks!", "Sí, ahí estaré", "can we move it
to Friday?". A pure function of the text, read only after the contract's keywords found nothing.

A wrong confirmation is worse than none: a patient who wrote "yes but can we move it" and is
marked confirmed gets no call. So a reply confirms only when every word in it is one of a
short list of ways to say yes (and thanks, see you then), and a question never confirms.
Asking for another time is read more freely: it only sends the reply to staff, flagged.
"""

from __future__ import annotations

import re
import unicodedata

# Emoji that say yes (thumbs up in any skin tone, check marks, OK hand), and friendly ones that
# add nothing; any other symbol is a word we do not know.
_YES_SIGNS = "\U0001f44d\u2705\u2714\u2611\U0001f44c"
_FRIENDLY_SIGNS = (
    "\U0001f60a\U0001f642\U0001f600\U0001f601\U0001f603\U0001f604\U0001f64f\u2764\u2665"
    "\U0001f495\U0001f497\U0001f917\U0001f44f\u263a\U0001f60d\U0001f970"
)
_MODIFIERS = re.compile("[\U0001f3fb-\U0001f3ff\ufe0f\u200d]")
# Punctuation is dropped; any other character that is not a plain letter or digit (👎, 😡, a
# letter of another script) stands for a word we do not know, so it can never confirm.
_UNKNOWN = re.compile(r"[^a-z0-9\s!-/:-@\[-`{-~¡¿«»…“”‘’–—·]")

_DAYS = (
    "(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow|today|tonight|"
    "lunes|martes|miercoles|jueves|viernes|sabado|domingo|manana|hoy)"
)
# Each is a whole phrase, matched between word boundaries after folding.
_YES = (
    r"yes|yess|yeah|yea|yep|yup|sure|sure thing|ok|okay|okey|confirm|confirmed|"
    r"i confirm|confirming|(?:yes )?(?:i ?ll|i will|we ?ll|we will|will) be there|"
    r"(?:i ?ll|i will) come|(?:i ?m|i am) coming|see you (?:then|there|soon|"
    + _DAYS
    + r")|absolutely|definitely|of course|"
    r"si|claro|claro que si|confirmo|confirmado|confirmada|confirmamos|"
    r"(?:si )?(?:ahi|alli) (?:estare|estaremos|nos vemos)|estare (?:ahi|alli)|alli estare|"
    r"nos vemos(?: el)?(?: " + _DAYS + r")?|de acuerdo|por supuesto|asistire"
)
_POLITE = (
    r"thanks|thank you|thank u|thanks so much|thank you so much|thx|ty|please|great thanks|"
    r"gracias|muchas gracias|mil gracias|por favor|dr|doctor|doctora|ma ?am|sir|"
    r"hi|hello|hey|hola|buenos dias|buenas tardes|buenas|have a good day|bye|adios|"
    r"great|perfect|sounds good|awesome|perfecto|vale|listo|bueno|excelente|"
    r"(?:my|the) (?:appointment|appt|visit)|(?:mi|la) cita"
)
_CONFIRMING = re.compile(rf"^(?:\s*\b(?:{_YES}|{_POLITE})\b\s*)+$")
_SAYS_YES = re.compile(rf"\b(?:{_YES})\b")

_ANOTHER_TIME = re.compile(
    r"\b(?:re ?schedule|resched|reschedul\w*|move (?:it|my|the|our|this)|move to|"
    r"change (?:it|my|the|our|this)|postpone|push (?:it|my|the) back|another (?:time|day|date)|"
    r"different (?:time|day|date)|other (?:time|day|date)|later (?:time|date|day)|"
    r"earlier (?:time|appointment)|can ?t make it|cannot make it|can not make it|"
    r"won ?t make it|will not make it|won ?t be able|will not be able|unable to (?:come|make)|"
    r"can ?t come|cannot come|(?:won ?t|will not|can ?t|cannot) be there|"
    r"cambiar|cambio|cambiarla|cambiarlo|reprogramar|reprogramarla|mover|moverla|posponer|"
    r"otro dia|otra (?:hora|fecha|cita)|no (?:puedo|podre|voy a poder) (?:ir|asistir|llegar|venir)|"
    r"no podre|no voy a poder)\b"
)
_NOT_NEEDED = re.compile(r"\b(?:no need to|don ?t need to|do not need to|no hace falta)\b")


def fold(body: str) -> str:
    """Lower case, accents, apostrophes and punctuation dropped, yes-emoji as "yes", friendly
    ones gone, anything else as "unknown": "Sí, ahí estaré 👍🏽" → "si ahi estare yes"."""
    text = _MODIFIERS.sub("", body)
    text = "".join(
        " yes " if ch in _YES_SIGNS else " " if ch in _FRIENDLY_SIGNS else ch for ch in text
    )
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _UNKNOWN.sub(" unknown ", re.sub(r"['\u2019`]", "", text.lower()))
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def in_own_words(body: str) -> str:
    """`confirm`, `reschedule` or `other`: what a free-text reply asks for, read cautiously."""
    folded = fold(body)
    if _ANOTHER_TIME.search(folded) and not _NOT_NEEDED.search(folded):
        return "reschedule"
    if "?" in body or "\u00bf" in body or not folded:
        return "other"
    if _SAYS_YES.search(folded) and _CONFIRMING.match(folded):
        return "confirm"
    return "other"
