"""`notifier templates check`: worst-case names, segments and encoding counted honestly, and a
template that outgrows one GSM-7 segment named and failed."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from notifier.cli import main
from notifier.render import Renderer, is_gsm7, sms_segments, to_gsm7
from notifier.templates_check import ACCEPTED, NAMES, report, rows

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def test_every_template_is_rendered_with_every_worst_case_name() -> None:
    found = rows(Renderer(TEMPLATES))
    kinds = {row.kind for row in found}
    assert {"confirmation", "reminder", "rebook", "reply_help"} <= kinds
    for row in found:
        assert [r.name_kind for r in row.renderings] == [kind for kind, _ in NAMES]
        for rendering in row.renderings:
            # Counted as a carrier counts: the text's own alphabet decides.
            assert rendering.segments == sms_segments(rendering.text)
            assert rendering.encoding == ("GSM-7" if is_gsm7(rendering.text) else "UCS-2")
        long, accented, cyrillic, chinese, emoji = row.renderings
        # Replies, staff's own words and waitlist offers (a slot, not a visit) name no one.
        nameless = row.kind.startswith("reply_") or row.kind in ("staff_message", "waitlist_offer")
        assert "Malgorzata-Zoe" in accented.text or nameless
        if not nameless:
            assert "Александра" in cyrillic.text and cyrillic.encoding == "UCS-2"
            assert "王秀英" in chinese.text and chinese.encoding == "UCS-2"
            assert emoji.encoding == "UCS-2" and emoji.segments >= 2
        assert long.encoding == accented.encoding == "GSM-7"
        line = long.text.endswith(("Reply STOP to opt out", "Responda STOP para no recibir mas"))
        assert line == (row.variant == "first")


def test_only_the_accepted_texts_go_over_one_segment() -> None:
    found = rows(Renderer(TEMPLATES))
    over = {(row.kind, row.lang, row.variant) for row in found if row.over}
    assert over == set(ACCEPTED)
    out = io.StringIO()
    assert report(found, out)
    assert "accepted: reminder.es (first) over one segment" in out.getvalue()


def test_the_command_prints_a_row_per_template_and_language(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["templates", "check"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == [
        "template", "lang", "variant", "long", "accented", "cyrillic", "chinese", "emoji",
    ]  # fmt: skip
    (confirmation,) = [
        line for line in out.splitlines() if line.split()[:3] == ["confirmation", "en", "first"]
    ]
    assert confirmation.split()[4:6] == ["1", "GSM-7"]


def test_a_template_over_one_segment_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "templates"
    shutil.copytree(TEMPLATES, copy)
    aftercare = copy / "sms" / "aftercare.en.txt"
    aftercare.write_text(aftercare.read_text().rstrip() + " Thank you!\n")
    monkeypatch.setenv("NOTIFIER_TEMPLATES", str(copy))
    assert main(["templates", "check"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: aftercare.en (first) is 2 segments GSM-7 with the long name" in out
    assert "FAIL: aftercare.en (later)" not in out


@pytest.mark.parametrize(
    ("name", "sent"),
    [
        ("Łucja Małgorzata", "Lucja Malgorzata"),
        ("Þórunn Đorđević", "Thorunn Dordevic"),
        ("Œdipe", "OEdipe"),
        ("Zoë Brontë", "Zoe Bronte"),
        ("Øystein Ærø Strauß", "Øystein Ærø Strauß"),  # GSM-7 as they are
        ("José Núñez Güell", "José Nuñez Güell"),  # é, ñ, ü are GSM-7: kept
        ("¿Qué? ¡Sí!", "¿Qué? ¡Si!"),
    ],
)
def test_latin_names_keep_to_gsm7_in_their_nearest_form(name: str, sent: str) -> None:
    assert to_gsm7(name) == sent and is_gsm7(sent)


@pytest.mark.parametrize("name", ["Александра", "王秀英", "فاطمة", "Ana 🌸"])
def test_names_with_no_faithful_latin_form_stay_and_make_the_text_ucs2(name: str) -> None:
    text = to_gsm7(f"North Shore Skin & Neurology: {name}, see you Thu, Dec 3 10:00 AM")
    assert name in text and not is_gsm7(text)
    assert sms_segments(text) == 1 + (len(text.encode("utf-16-le")) // 2 > 70)
