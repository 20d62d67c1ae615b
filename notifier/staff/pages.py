"""The dashboard's Jinja2 environment: templates/staff and how it writes times and numbers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import phonenumbers
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context

from ..assets import asset_function
from ..channels.failure_words import in_plain_words
from ..models import NotificationEvent
from ..runtime import Runtime
from ..states import Status
from .desk import form_token, offered

# What a return to `scheduled` meant, by the detail schedule.py recorded with it.
_SCHEDULED = {
    "planned": "planned",
    "manual": "requested",
    "quiet hours": "held for quiet hours",
}


def templates(rt: Runtime) -> Jinja2Templates:
    return _templates(rt.settings.templates_dir / "staff")


@cache  # one environment per directory, so each template is parsed once, not on every page
def _templates(directory: Path) -> Jinja2Templates:
    pages = Jinja2Templates(directory=directory)
    pages.env.filters.update(
        clock=clock,
        when=when,
        day=day,
        phone=phone,
        percent=percent,
        week_of=week_of,
        opt_out_source=opt_out_source,
        steps=steps,
    )
    pages.env.globals["path"] = path
    pages.env.globals.update(
        form_token=form_token, in_plain_words=in_plain_words, visit_offered=offered
    )
    pages.env.globals["asset"] = asset_function(directory.parent)
    return pages


@pass_context
def path(context: Context, name: str, **params: object) -> str:
    """A page's path, wherever create_app mounted the dashboard (the prefix is not ours to know).
    Each parameter is escaped: an id stored before ids kept to their alphabet may hold a "/",
    which would otherwise stop the whole page from rendering."""
    escaped = {key: quote(str(value), safe=":@") for key, value in params.items()}
    return str(context["request"].url_for(name, **escaped).path)


def clock(moment: datetime, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    return f"{local.hour % 12 or 12}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"


def day(value: date) -> str:
    return f"{value:%a, %b} {value.day}"


def when(moment: datetime, zone: ZoneInfo) -> str:
    return f"{day(moment.astimezone(zone).date())}, {clock(moment, zone)}"


def phone(number: str | None) -> str:
    """(718) 555-0134 for a US number, as staff would dial it; international ones as E.164."""
    if not number:
        return ""
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:  # a short code, say: shown as it came
        return number
    if parsed.country_code == 1:
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def week_of(monday: str) -> str:
    start = date.fromisoformat(monday)
    return f"{start:%b} {start.day}"


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.0%}"


def opt_out_source(source: str) -> str:
    """keyword:STOP → replied STOP; carrier:opted_out → carrier (opted_out); staff:amy → by amy.
    Rows from before providers were told apart say twilio:21610: carrier (21610)."""
    how, _, what = source.partition(":")
    said = {
        "keyword": f"replied {what}",
        "carrier": f"carrier ({what})",
        "twilio": f"carrier ({what})",
        "staff": f"by {what}",
        "link": "one-click button in the mail app" if what == "one-click" else "link in an email",
    }
    return said.get(how, source)


@dataclass(frozen=True)
class Step:
    label: str
    at: datetime
    note: str | None


def steps(history: Iterable[NotificationEvent]) -> list[Step]:
    """A message's history as staff read it: the worker's hand-offs (queued, sending) left out,
    the reason kept wherever something did not go to plan."""
    shown = []
    for event in history:
        if event.status in (Status.QUEUED, Status.SENDING):
            continue
        label, note = event.status, event.detail
        if event.status == Status.SCHEDULED and (note or "").startswith("deferred:"):
            label = "deferred"  # by the message budget; the note says why
        elif event.status == Status.SCHEDULED:
            label = _SCHEDULED.get(note or "", "to retry")
            note = None if note in _SCHEDULED else note
        elif event.status in (Status.SENT, Status.DELIVERED):
            note = None
        shown.append(Step(label, event.at, note))
    return shown
