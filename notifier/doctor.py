"""`notifier doctor`: checks each thing the service needs and says exactly what is wrong; and
the shorter check behind /readyz."""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError

from . import db
from .channels.email import SMTPEmail
from .logs import mask
from .render import Renderer
from .runtime import Runtime
from .settings import Settings
from .store import database

Check = tuple[str, Callable[[], str]]


class NotConfigured(Exception):
    """A provider left unset on purpose: its messages go to the dry-run outbox."""


class Problem(Exception):
    """A failed check, said as what failed where and the likely fix."""


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
    """Writes one line a check: `ok`, `off` (not configured: dry run) or `FAIL`; True unless
    one failed."""
    healthy = True
    for name, check in checks(rt, broker_ping):
        try:
            out.write(f"ok    {name}: {check()}\n")
        except NotConfigured as off:
            out.write(f"off   {name}: not configured (dry run): {off}\n")
        except Exception as exc:  # every failure is reported, none stops the others
            healthy = False
            out.write(f"FAIL  {name}: {mask(str(exc))}\n")
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


def templates_summary(renderer: Renderer) -> str:
    from .templates_check import rows  # which renders with this module's example_context

    found = rows(renderer)
    if not found:
        raise ValueError(f"no SMS templates under {renderer.directory}")
    failed = [f"{row.kind}.{row.lang} ({row.variant})" for row in found if row.over]
    accepted = [f"{row.kind}.{row.lang} ({row.variant})" for row in found if row.accepted]
    long = sorted(set(failed) - set(accepted))
    if long:
        raise ValueError("SMS over one GSM-7 segment: " + ", ".join(long))
    summary = f"{len(found)} SMS texts render, each in one GSM-7 segment"
    return summary + (f" (accepted over: {', '.join(accepted)})" if accepted else "")


def database_state(rt: Runtime) -> str:
    where = rt.engine.url.render_as_string(hide_password=True)
    try:
        with rt.engine.connect() as connection:
            database.ping(connection)
            current = MigrationContext.configure(connection).get_current_revision()
    except OperationalError:
        raise Problem(
            f"cannot reach the database at {where}: is it running, and do the host, user and"
            " password in NOTIFIER_DATABASE_URL match it?"
        ) from None
    head = ScriptDirectory(str(db.MIGRATIONS_DIR)).get_current_head()
    if current != head:
        raise RuntimeError(
            f"{where}: schema at {current}, code wants {head}: run `notifier db upgrade`"
        )
    return f"{where}: schema at {current}"


def _broker(settings: Settings, ping: Callable[[], None] | None) -> str:
    if not settings.broker_url or ping is None:
        return "none: embedded, in-process (notifier serve)"
    where = make_url(settings.broker_url).render_as_string(hide_password=True)
    try:
        ping()
    except Exception:  # kombu's errors differ by transport; the fix does not
        raise Problem(
            f"cannot reach the broker at {where}: is Redis running and reachable from here?"
            " Check NOTIFIER_BROKER_URL"
        ) from None
    return f"{where} reachable"


def _twilio(rt: Runtime) -> str:
    from .channels.sms.twilio import TwilioSMS  # the twilio SDK: not for every `notifier` command

    if not isinstance(rt.sms, TwilioSMS):
        raise NotConfigured(
            f"SMS go to the outbox {rt.settings.outbox_path}; set TWILIO_ACCOUNT_SID,"
            " TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER to send"
        )
    host = urlsplit(rt.settings.twilio_api_base_url).netloc
    try:
        rt.sms.client.messages.list(limit=1)  # fails with 20003 on wrong credentials
    except Exception as exc:
        raise Problem(_twilio_fix(host, exc)) from None
    return f"credentials accepted by {host}"


def _twilio_fix(host: str, exc: Exception) -> str:
    answer = _twilio_answer(exc)
    if answer is None:
        return (
            f"cannot reach {host} ({type(exc).__name__}): check the network, any proxy"
            " (HTTPS_PROXY) and TWILIO_API_BASE_URL"
        )
    status, code = answer
    if code in (20003, 20404) or status == 401:
        return (
            f"{host} refused the credentials (Twilio {code}): check TWILIO_ACCOUNT_SID and"
            " TWILIO_AUTH_TOKEN (the live ones, not the test credentials)"
        )
    return f"{host} answered {status} (Twilio {code}): see twilio.com/docs/errors/{code}"


def _twilio_answer(exc: Exception) -> tuple[int, int | None] | None:
    """(HTTP status, Twilio's code) when Twilio answered; None when no answer came. A list
    raises the SDK's bare "Unable to fetch page" with the response, a create its REST error."""
    from twilio.base.exceptions import TwilioException, TwilioRestException

    if isinstance(exc, TwilioRestException):
        return exc.status, exc.code
    response = exc.args[1] if isinstance(exc, TwilioException) and len(exc.args) > 1 else None
    if response is None or not hasattr(response, "status_code"):
        return None
    try:
        code = json.loads(response.text).get("code")
    except (ValueError, AttributeError):
        code = None
    return int(response.status_code), code


def _smtp(rt: Runtime) -> str:
    if not isinstance(rt.email, SMTPEmail):
        raise NotConfigured(
            f"email goes to the outbox {rt.settings.outbox_path}; set NOTIFIER_SMTP_URL"
            " and NOTIFIER_MAIL_FROM to send"
        )
    server = f"{rt.email.host}:{rt.email.port}"
    try:
        with rt.email.connect() as connection:
            code, _ = connection.noop()
    except Exception as exc:
        raise Problem(_smtp_fix(server, rt.email.timeout, exc)) from None
    if code != 250:
        raise Problem(f"{server} refused NOOP ({code}): is it an SMTP server?")
    return f"{server} answers"


def _smtp_fix(server: str, timeout: float, exc: Exception) -> str:
    """The likely fix for a failed SMTP check, by what failed."""
    if isinstance(exc, socket.gaierror):
        return f"cannot find the host of {server}: check the host name in NOTIFIER_SMTP_URL"
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"{server} refused the connection: is the SMTP server running, and is the port"
            " right (587 with ?starttls=1, 465 with smtps://)?"
        )
    if isinstance(exc, TimeoutError):
        return f"{server} did not answer within {timeout:g} s: a firewall, or the wrong port"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"{server} refused the user name or password in NOTIFIER_SMTP_URL"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"{server} offers no STARTTLS: drop ?starttls=1, or use smtps:// on port 465"
    if isinstance(exc, ssl.SSLError | smtplib.SMTPServerDisconnected):
        return (
            f"TLS with {server} failed ({type(exc).__name__}): smtps:// speaks TLS at once"
            " (port 465); a server that starts in plain text (587) wants ?starttls=1"
        )
    return f"{server} failed the check ({type(exc).__name__}): check NOTIFIER_SMTP_URL"
