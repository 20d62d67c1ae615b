"""`notifier doctor`: checks each thing the service needs and says exactly what is wrong; and
the shorter check behind /readyz."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from . import db
from .channels.email import SMTPEmail
from .render import Renderer, sms_segments
from .runtime import Runtime
from .settings import Settings
from .store import database

Check = tuple[str, Callable[[], str]]


def checks(rt: Runtime, broker_ping: Callable[[], None] | None) -> Iterator[Check]:
    yield "clinic config", lambda: _clinic(rt)
    yield "templates", lambda: templates_summary(rt.renderer)
    yield "database", lambda: database_state(rt)
    yield "broker", lambda: _broker(rt.settings, broker_ping)
    yield "twilio", lambda: _twilio(rt)
    yield "smtp", lambda: _smtp(rt)


def readiness(rt: Runtime, broker_ping: Callable[[], None] | None) -> dict[str, str]:
    """What /readyz answers: "ok" or "error: <why>" for the database, and for the broker when
    there is one to ping."""
    probes = {"database": lambda: _ping_database(rt)}
    if broker_ping is not None:
        probes["broker"] = broker_ping
    return {name: _probed(probe) for name, probe in probes.items()}


def _ping_database(rt: Runtime) -> None:
    with rt.engine.connect() as connection:
        database.ping(connection)


def _probed(probe: Callable[[], None]) -> str:
    try:
        probe()
    except Exception as exc:  # any failure means "not ready", and the reason is the answer
        return f"error: {exc}"
    return "ok"


def _clinic(rt: Runtime) -> str:
    clinic = rt.clinic
    return (
        f"{rt.settings.config_path}: {len(clinic.locations)} locations,"
        f" {len(clinic.treatments)} treatments"
    )


def run(rt: Runtime, broker_ping: Callable[[], None] | None, out: Any) -> bool:
    healthy = True
    for name, check in checks(rt, broker_ping):
        try:
            out.write(f"ok    {name}: {check()}\n")
        except Exception as exc:  # every failure is reported, none stops the others
            healthy = False
            out.write(f"FAIL  {name}: {exc}\n")
    return healthy


def example_context(kind: str, lang: str) -> dict[str, Any]:
    """A worst case for length: a long first name, the longer location, a long date."""
    start = datetime(2026, 9, 30, 10, 30, tzinfo=UTC)
    return {
        "lang": lang,
        "practice": {"name": "North Shore Skin & Neurology"},
        "location": {"id": "forest-hills", "name": "Forest Hills", "phone": "(718) 555-0117",
                     "address": "108-20 Queens Blvd, Forest Hills, NY 11375"},
        "patient": {"first_name": "Christabelle"},
        "appointment": {"start": start, "end": start + timedelta(minutes=30), "provider": None},
        "treatment": {"name": "Botox for fine lines", "avoid_hours": 4},
        "notification": {"kind": kind, "ask_confirm": True, "rescheduled": True},
        "links": {"confirm": None, "reschedule": None},
        "staff_message": "Yes, Friday at 2:30 PM works. See you then!",
    }  # fmt: skip


def sms_template_segments(renderer: Renderer) -> list[tuple[str, str, int, int]]:
    """(kind, language, characters, segments) of every SMS template, rendered at its longest."""
    rows = []
    for kind in renderer.kinds():
        for lang in ("en", "es"):
            text_ = renderer.render(kind, "sms", lang, example_context(kind, lang)).text
            rows.append((kind, lang, len(text_), sms_segments(text_)))
    return rows


def templates_summary(renderer: Renderer) -> str:
    rows = sms_template_segments(renderer)
    if not rows:
        raise ValueError(f"no SMS templates under {renderer.directory}")
    long = [
        f"{kind}.{lang} ({segments} segments)" for kind, lang, _, segments in rows if segments > 1
    ]
    if long:
        raise ValueError("SMS over one segment: " + ", ".join(long))
    return f"{len(rows)} SMS templates render, each in one segment"


def database_state(rt: Runtime) -> str:
    with rt.engine.connect() as connection:
        database.ping(connection)
        current = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory(str(db.MIGRATIONS_DIR)).get_current_head()
    where = rt.engine.url.render_as_string(hide_password=True)
    if current != head:
        raise RuntimeError(
            f"{where}: schema at {current}, code wants {head}: run `notifier db upgrade`"
        )
    return f"{where}: schema at {current}"


def _broker(settings: Settings, ping: Callable[[], None] | None) -> str:
    if not settings.broker_url or ping is None:
        return "none: embedded, in-process (notifier serve)"
    ping()
    return "reachable"


def _twilio(rt: Runtime) -> str:
    from .channels.sms.twilio import TwilioSMS  # the twilio SDK: not for every `notifier` command

    if not isinstance(rt.sms, TwilioSMS):
        return f"not configured: SMS go to the dry-run outbox {rt.settings.outbox_path}"
    rt.sms.client.messages.list(limit=1)  # fails with 20003 on wrong credentials
    return f"credentials accepted by {rt.settings.twilio_api_base_url}"


def _smtp(rt: Runtime) -> str:
    if not isinstance(rt.email, SMTPEmail):
        return f"not configured: email goes to the dry-run outbox {rt.settings.outbox_path}"
    with rt.email.connect() as connection:
        code, _ = connection.noop()
    if code != 250:
        raise smtplib.SMTPResponseException(code, b"NOOP refused")
    return f"{rt.email.host}:{rt.email.port} answers"
