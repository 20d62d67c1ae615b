"""`notifier templates check`: every SMS template rendered with the names that test it hardest,
its length, segments and encoding, and whether it keeps to one GSM-7 segment.

The rule: with a first name of up to 15 Latin letters (accents and all: they are
transliterated), every text fits one GSM-7 segment, the opt-out line of a number's first text
included. A name in another script, or with an emoji, makes the text UCS-2: it is counted as
such and reported, never a failure. The exceptions to the rule are named in `ACCEPTED`, each
with its reason, and reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

from .doctor import example_context
from .render import Renderer, is_gsm7, sms_segments

# Each a first name a booking system may send; the first two must keep a text to one segment.
NAMES: tuple[tuple[str, str], ...] = (
    ("long", "Alexandrina-Mae"),  # 15 letters: the longest name the rule holds for
    ("accented", "Małgorzata-Zoë"),  # ł and ë have faithful GSM-7 forms
    ("cyrillic", "Александра"),
    ("chinese", "王秀英"),
    ("emoji", "Ana 🌸"),
)
MUST_FIT = frozenset({"long", "accented"})
REPLIES_PREFIX = "reply_"
LANGUAGES = ("en", "es")

# Texts allowed over one segment in the worst case, and why.
ACCEPTED = {
    ("reminder", "es", "first"): "Responda C para confirmar plus the opt-out line: a number's"
    " first text is its confirmation unless the number changed or SMS consent came later",
    ("manual", "es", "first"): "as reminder.es: a staff reminder is rarely a number's first text",
}


@dataclass(frozen=True)
class Rendering:
    name_kind: str
    text: str

    @property
    def encoding(self) -> str:
        return "GSM-7" if is_gsm7(self.text) else "UCS-2"

    @property
    def segments(self) -> int:
        return sms_segments(self.text)

    def cell(self) -> str:
        return f"{len(self.text):>3} {self.segments} {self.encoding}"


@dataclass(frozen=True)
class Row:
    """One template, language and variant ("first": as a number's first text, with the
    opt-out line; "later": without it; "reply": an answer to a patient's text)."""

    kind: str
    lang: str
    variant: str
    renderings: tuple[Rendering, ...]

    @property
    def over(self) -> list[Rendering]:
        """The renderings that break the rule."""
        return [
            r
            for r in self.renderings
            if r.name_kind in MUST_FIT and (r.encoding != "GSM-7" or r.segments > 1)
        ]

    @property
    def accepted(self) -> str | None:
        return ACCEPTED.get((self.kind, self.lang, self.variant)) if self.over else None


def rows(renderer: Renderer) -> list[Row]:
    """Every SMS template in both languages, at its longest (asking to confirm, rescheduled)."""
    found = []
    for kind in renderer.kinds():
        variants = ("reply",) if kind.startswith(REPLIES_PREFIX) else ("first", "later")
        for lang in LANGUAGES:
            for variant in variants:
                found.append(Row(kind, lang, variant, _renderings(renderer, kind, lang, variant)))
    return found


def _renderings(renderer: Renderer, kind: str, lang: str, variant: str) -> tuple[Rendering, ...]:
    renderings = []
    for name_kind, name in NAMES:
        context: dict[str, Any] = example_context(kind, lang)
        context["patient"] = {"first_name": name}
        context["notification"]["opt_out_line"] = variant == "first"
        text = renderer.render(kind, "sms", lang, context).text
        renderings.append(Rendering(name_kind, text))
    return tuple(renderings)


def report(found: list[Row], out: TextIO) -> bool:
    """Writes the table and the verdict; True when every text keeps the rule or is accepted."""
    header = ["template", "lang", "variant", *(name for name, _ in NAMES)]
    out.write(f"{header[0]:<17} {header[1]:<4} {header[2]:<7} ")
    out.write(" ".join(f"{h:<13}" for h in header[3:]).rstrip() + "\n")
    for row in found:
        cells = " ".join(f"{r.cell():<13}" for r in row.renderings).rstrip()
        out.write(f"{row.kind:<17} {row.lang:<4} {row.variant:<7} {cells}\n")
    out.write(
        "\n(characters, segments, encoding) for each first name. A name outside GSM-7 makes the"
        " text UCS-2: 70 characters a segment.\n"
    )
    failed = [row for row in found if row.over and row.accepted is None]
    for row in found:
        if row.accepted:
            out.write(f"accepted: {row.kind}.{row.lang} ({row.variant}) over one segment:")
            out.write(f" {row.accepted}\n")
    for row in failed:
        worst = max(row.over, key=lambda r: r.segments)
        out.write(
            f"FAIL: {row.kind}.{row.lang} ({row.variant}) is {worst.segments} segments"
            f" {worst.encoding} with the {worst.name_kind} name: {worst.text}\n"
        )
    if not failed:
        out.write(
            f"ok: all {len(found)} texts fit one GSM-7 segment with a first name of up to 15"
            " Latin letters, but those accepted above\n"
            if any(row.accepted for row in found)
            else f"ok: all {len(found)} texts fit one GSM-7 segment with a first name of up to"
            " 15 Latin letters\n"
        )
    return not failed
