"""Turn a notification's context into SMS or email text with the Jinja2 templates on disk.

Templates live under ``templates/sms/{kind}.{lang}.txt`` and
``templates/email/{kind}.{lang}.{subject.txt,txt,html}``. SMS output is forced into the
GSM-7 alphabet so that each message stays in the cheap 160-character segment.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

FALLBACK_LANGUAGE = "en"

# The file names each channel needs, in the order Renderer.render uses them.
_CHANNEL_FILES: dict[str, tuple[str, ...]] = {
    "sms": ("sms/{kind}.{lang}.txt",),
    "email": (
        "email/{kind}.{lang}.subject.txt",
        "email/{kind}.{lang}.txt",
        "email/{kind}.{lang}.html",
    ),
}

# Links are optional in the app's context; defaulting them here lets templates test them
# with a plain ``{% if links.confirm %}`` even though the environment uses StrictUndefined.
_LINK_NAMES = ("confirm", "reschedule", "unsubscribe")

# GSM 03.38 default alphabet (127 characters: the 128 code points minus the escape code).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: sent as escape + character, so each one costs two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[]~|€")

# Look-alikes for characters that typically sneak in from word processors and names.
# Accented letters are not listed: to_gsm7 strips their accents generically.
_LOOKALIKES = {
    "\u2018": "'",  # left single quote
    "\u2019": "'",  # right single quote / apostrophe
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",  # prime
    "\u201c": '"',  # left double quote
    "\u201d": '"',  # right double quote
    "\u201e": '"',
    "\u201f": '"',
    "\u2033": '"',  # double prime
    "\u00ab": '"',  # Spanish guillemets
    "\u00bb": '"',
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u2012": "-",  # figure dash
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",  # horizontal bar
    "\u2212": "-",  # minus sign
    "\u2026": "...",
    "\t": " ",
    "\u00ad": "",  # soft hyphen
    "\u200b": "",  # zero-width space
    "\u200c": "",  # zero-width non-joiner
    "\u200d": "",  # zero-width joiner
    "\u2060": "",  # word joiner
    "\ufeff": "",  # byte order mark
}

# Latin letters with no decomposition to strip an accent from, and their usual spelling in
# plain Latin letters: "Łucja" goes as "Lucja" in GSM-7 rather than forcing UCS-2. (Ø, ø, Æ,
# æ and ß are GSM-7 already.) Other scripts have no faithful form here: they stay as they are
# and the text goes UCS-2.
_TRANSLITERATIONS = {
    "Ł": "L",
    "ł": "l",
    "Đ": "D",
    "đ": "d",
    "Ð": "D",
    "ð": "d",
    "Ħ": "H",
    "ħ": "h",
    "ı": "i",
    "Œ": "OE",
    "œ": "oe",
    "Þ": "Th",
    "þ": "th",
    "Ŧ": "T",
    "ŧ": "t",
    "Ŀ": "L",
    "ŀ": "l",
    "Ŋ": "N",
    "ŋ": "n",
    "ĸ": "k",
    "ſ": "s",
    "ƒ": "f",
}

# CTIA: the first text to a number, and every marketing text, says how to stop them.
OPT_OUT_LINES = {"en": "Reply STOP to opt out", "es": "Responda STOP para no recibir más"}

_GSM7_SINGLE, _GSM7_MULTI = 160, 153
_UCS2_SINGLE, _UCS2_MULTI = 70, 67


class TemplateMissing(LookupError):
    """No template set exists for a kind/channel, in the requested language or in English."""


@dataclass(frozen=True)
class Rendered:
    subject: str | None  # email only
    text: str
    html: str | None  # email only


@dataclass(frozen=True)
class _Calendar:
    weekdays: tuple[str, ...]
    weekdays_short: tuple[str, ...]
    months: tuple[str, ...]
    months_short: tuple[str, ...]
    day_format: str
    long_format: str
    hour24: bool


# Hand-written tables: the system locale is unknown in production and locale.setlocale is
# process-global, so it cannot be switched per message.
_CALENDARS = {
    "en": _Calendar(
        weekdays=("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
        weekdays_short=("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
        months=(
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ),
        months_short=(
            "Jan",
            "Feb",
            "Mar",
            "Apr",
            "May",
            "Jun",
            "Jul",
            "Aug",
            "Sep",
            "Oct",
            "Nov",
            "Dec",
        ),
        day_format="{weekday}, {month} {day}",
        long_format="{weekday}, {month} {day}",
        hour24=False,
    ),
    "es": _Calendar(
        weekdays=("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
        weekdays_short=("lun", "mar", "mié", "jue", "vie", "sáb", "dom"),
        months=(
            "enero",
            "febrero",
            "marzo",
            "abril",
            "mayo",
            "junio",
            "julio",
            "agosto",
            "septiembre",
            "octubre",
            "noviembre",
            "diciembre",
        ),
        months_short=(
            "ene",
            "feb",
            "mar",
            "abr",
            "may",
            "jun",
            "jul",
            "ago",
            "sep",
            "oct",
            "nov",
            "dic",
        ),
        day_format="{weekday} {day} {month}",
        long_format="{weekday} {day} de {month}",
        # 24-hour time is usual in Spanish and avoids "a. m.", whose spacing varies by writer.
        hour24=True,
    ),
}


def _calendar(lang: str) -> _Calendar:
    try:
        return _CALENDARS[lang]
    except KeyError:
        raise ValueError(f"no date names for language {lang!r}") from None


def format_day(value: date, lang: str) -> str:
    """Short date: "Thu, Dec 3" / "jue 3 dic"."""
    cal = _calendar(lang)
    return cal.day_format.format(
        weekday=cal.weekdays_short[value.weekday()],
        month=cal.months_short[value.month - 1],
        day=value.day,
    )


def format_longdate(value: date, lang: str) -> str:
    """Long date: "Thursday, December 3" / "jueves 3 de diciembre"."""
    cal = _calendar(lang)
    return cal.long_format.format(
        weekday=cal.weekdays[value.weekday()],
        month=cal.months[value.month - 1],
        day=value.day,
    )


def format_clock(value: datetime | time, lang: str) -> str:
    """Time of day: "10:00 AM" / "10:00"; the value is already in the location's zone."""
    if _calendar(lang).hour24:
        return f"{value.hour}:{value.minute:02d}"
    suffix = "AM" if value.hour < 12 else "PM"
    return f"{value.hour % 12 or 12}:{value.minute:02d} {suffix}"


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def to_gsm7(text: str) -> str:
    """Replace characters that would force UCS-2 with GSM-7 look-alikes.

    Why: a single UCS-2 character switches the whole SMS to 70-character segments, so one
    curly apostrophe or "á" can more than double what a message costs. Characters without
    a look-alike (emoji, for one) are kept rather than silently dropped.
    """
    return "".join(_gsm7_char(ch) for ch in text)


def _gsm7_char(ch: str) -> str:
    if ch in GSM7_BASIC or ch in GSM7_EXTENSION:
        return ch
    if ch in _LOOKALIKES:
        return _LOOKALIKES[ch]
    if ch in _TRANSLITERATIONS:
        return _TRANSLITERATIONS[ch]
    if unicodedata.category(ch) == "Zs":  # non-breaking, thin, ideographic... spaces
        return " "
    # "á" decomposes to "a" + combining accent; keep the base letter(s) when they are GSM-7.
    stripped = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    return stripped if stripped and is_gsm7(stripped) else ch


def sms_segments(text: str) -> int:
    """How many SMS segments a carrier bills for ``text`` (0 for an empty text).

    GSM-7: 160 septets in one segment, else 153 per segment; extension characters cost 2.
    Anything outside GSM-7 makes it UCS-2: 70 UTF-16 code units, else 67 per segment.
    """
    if is_gsm7(text):
        sizes = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return _count_segments(sizes, _GSM7_SINGLE, _GSM7_MULTI)
    sizes = [len(ch.encode("utf-16-le")) // 2 for ch in text]
    return _count_segments(sizes, _UCS2_SINGLE, _UCS2_MULTI)


def _count_segments(sizes: list[int], single: int, multi: int) -> int:
    if sum(sizes) <= single:
        return 1 if sizes else 0
    # Packed greedily because encoders never split an escape pair or a surrogate pair
    # across two segments; a plain division would undercount in those cases.
    segments, used = 1, 0
    for size in sizes:
        if used + size > multi:
            segments, used = segments + 1, 0
        used += size
    return segments


class Renderer:
    """Renders notification templates; one instance (and Jinja2 cache) per process."""

    def __init__(self, templates_dir: Path) -> None:
        self.directory = Path(templates_dir)
        self._env = Environment(
            loader=FileSystemLoader(self.directory),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters.update(day=format_day, longdate=format_longdate, clock=format_clock)

    def render(
        self, kind: str, channel: str, language: str, context: Mapping[str, Any]
    ) -> Rendered:
        lang, names = self._resolve(kind, channel, language)
        # The fallback language wins for dates too, so an English text never says "jue 3 dic".
        values = {**context, "lang": lang, "links": _with_default_links(context.get("links"))}
        parts = [self._env.get_template(name).render(values) for name in names]
        if channel == "sms":
            # Collapsed after the GSM-7 pass so a dropped zero-width character leaves no gap.
            text = _collapse(to_gsm7(parts[0]))
            if values.get("notification", {}).get("opt_out_line"):
                text = to_gsm7(with_opt_out_line(text, lang))
            return Rendered(subject=None, text=text, html=None)
        subject, text, html = parts
        return Rendered(subject=_collapse(subject), text=text.strip(), html=html.strip())

    def kinds(self) -> list[str]:
        """Kinds with at least one template on disk (helpers like base.html are skipped)."""
        files = (
            path for channel in _CHANNEL_FILES for path in (self.directory / channel).glob("*.*.*")
        )
        return sorted({path.name.split(".")[0] for path in files})

    def _resolve(self, kind: str, channel: str, language: str) -> tuple[str, list[str]]:
        """The language actually used and its template names, falling back to English."""
        if channel not in _CHANNEL_FILES:
            expected = ", ".join(_CHANNEL_FILES)
            raise TemplateMissing(f"unknown channel {channel!r}; expected one of: {expected}")
        for lang in dict.fromkeys((language, FALLBACK_LANGUAGE)):
            names = [pattern.format(kind=kind, lang=lang) for pattern in _CHANNEL_FILES[channel]]
            # All parts must come from one language: an email is never half Spanish.
            if all((self.directory / name).is_file() for name in names):
                return lang, names
        raise TemplateMissing(
            f"no {channel} templates for kind {kind!r} in {language!r} or {FALLBACK_LANGUAGE!r} "
            f"under {self.directory}"
        )


def with_opt_out_line(text: str, lang: str) -> str:
    """The text, ending with how to stop texts (in English for a language without a line)."""
    line = OPT_OUT_LINES.get(lang, OPT_OUT_LINES[FALLBACK_LANGUAGE])
    if not text:
        return line
    return text + (" " if text[-1] in ".!?" else ". ") + line


def _with_default_links(links: Mapping[str, str | None] | None) -> dict[str, str | None]:
    return {**dict.fromkeys(_LINK_NAMES), **(links or {})}


def _collapse(text: str) -> str:
    return " ".join(text.split())
