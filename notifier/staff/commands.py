"""The staff's side of the `notifier` command: accounts, CSV import, an appointment's plan,
and template previews. cli.py adds these to its parser."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from .. import audit, runtime
from ..csv_import import ImportFileError, import_csv
from ..doctor import example_context
from ..render import TemplateMissing, sms_segments
from ..runtime import Runtime
from ..waitlist_csv import import_waitlist
from .accounts import (
    ROLES,
    AccountError,
    create_staff,
    reset_two_factor,
    set_active,
    set_password,
    set_role,
)
from .models import StaffUser
from .timeline import Entry, Timeline, UnknownAppointment, timeline


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`staff create|password|role|disable|enable`, `import`, `waitlist import` and `plan`."""
    _add_staff(commands)
    help = "import booking rows from a CSV file (columns: docs/staff.md)"
    importing = commands.add_parser("import", help=help, description=help)
    importing.add_argument("file", type=Path, help="the CSV export (columns: docs/staff.md)")
    importing.set_defaults(run=import_file)
    help = "the waitlist: import entries from a CSV file (columns: docs/staff.md)"
    waitlist = commands.add_parser("waitlist", help=help, description=help)
    waitlist_actions = waitlist.add_subparsers(required=True, metavar="ACTION")
    importing = waitlist_actions.add_parser("import", help=help, description=help)
    importing.add_argument("file", type=Path, help="the CSV file (columns: docs/staff.md)")
    importing.set_defaults(run=import_waitlist_file)
    help = "every message of an appointment, and the text of those still ahead"
    plan = commands.add_parser("plan", help=help, description=help)
    plan.add_argument("appointment_id", help="the booking system's appointment id")
    plan.set_defaults(run=show_plan)


def _add_staff(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    staff = commands.add_parser("staff", help="staff accounts for the dashboard")
    actions = staff.add_subparsers(required=True, metavar="ACTION")
    for name, run, help in (
        ("create", staff_create, "create a dashboard account (the password is asked for)"),
        ("password", staff_password, "set a new password; the account's sessions end"),
    ):
        sub = actions.add_parser(name, help=help, description=help)
        sub.add_argument("email", help="the staff member's sign-in address")
        sub.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
        if run is staff_create:
            sub.add_argument(
                "--role",
                choices=ROLES,
                help="admin or staff (default: admin for the clinic's first account, else staff)",
            )
        sub.set_defaults(run=run)
    help = "make an account admin (accounts, API keys, audit log) or staff (the daily work)"
    role = actions.add_parser("role", help=help, description=help)
    role.add_argument("email", help="the staff member's sign-in address")
    role.add_argument("role", choices=ROLES, help="admin or staff")
    role.set_defaults(run=staff_role)
    for name, help in (
        ("disable", "close an account: it cannot sign in and its sessions end"),
        ("enable", "open a closed account again"),
    ):
        sub = actions.add_parser(name, help=help, description=help)
        sub.add_argument("email", help="the staff member's sign-in address")
        sub.set_defaults(run=staff_access, active=name == "enable")
    help = "turn off an account's two-factor sign-in (a lost phone); its sessions end"
    reset = actions.add_parser("reset-2fa", help=help, description=help)
    reset.add_argument("email", help="the staff member's sign-in address")
    reset.set_defaults(run=staff_reset_two_factor)


def add_template_commands(templates: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`templates preview`, beside cli.py's `templates check` in the same group."""
    help = "render a template with an example appointment and count its SMS segments"
    preview = templates.add_parser("preview", help=help, description=help)
    preview.add_argument("kind", help="reminder, confirmation, aftercare, …")
    preview.add_argument("--channel", choices=["sms", "email"], default="sms", help="default sms")
    preview.add_argument("--lang", choices=["en", "es"], default="en", help="default en")
    preview.set_defaults(run=preview_template)


def _fail(message: object, code: int = 1) -> int:
    print(f"notifier: {message}", file=sys.stderr)
    return code


def _at_terminal() -> bool:
    return sys.stdin.isatty()


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not _at_terminal():  # under `docker exec` or a script: nobody to ask
        raise AccountError("no terminal to ask for the password: pipe it in with --password-stdin")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Same password again: ") != password:
        raise AccountError("the two passwords differ")
    return password


def staff_create(args: argparse.Namespace) -> int:
    return _account(
        lambda s, now: create_staff(s, args.email, _password(args.password_stdin), now, args.role),
        "staff account created: {email} ({role})",
        "staff.create",
    )


def staff_password(args: argparse.Namespace) -> int:
    return _account(
        lambda s, now: set_password(s, args.email, _password(args.password_stdin)),
        "password changed: {email} (signed out everywhere)",
        "staff.password",
    )


def staff_access(args: argparse.Namespace) -> int:
    return _account(
        lambda s, now: set_active(s, args.email, args.active),
        "{email} can " + ("now" if args.active else "no longer") + " sign in",
        "staff.enable" if args.active else "staff.disable",
    )


def staff_role(args: argparse.Namespace) -> int:
    return _account(
        lambda s, now: set_role(s, args.email, args.role), "{email} is now {role}", "staff.role"
    )


def staff_reset_two_factor(args: argparse.Namespace) -> int:
    return _account(
        lambda s, now: reset_two_factor(s, args.email),
        "two-factor sign-in reset: {email} sets it up again at the next sign-in"
        " (signed out everywhere)",
        "staff.reset_2fa",
    )


def _account(change: Callable[[Session, datetime], StaffUser], done: str, action: str) -> int:
    rt = runtime.from_env()
    try:
        with rt.sessions() as session:
            user = change(session, rt.clock())
            audit.record(
                session, rt.clock(), audit.cli_actor(), action, f"staff:{user.email}",
                address="local", detail=f"role: {user.role}",
            )  # fmt: skip
    except AccountError as exc:
        return _fail(exc)
    print(done.format(email=user.email, role=user.role))
    return 0


def import_file(args: argparse.Namespace) -> int:
    rt = runtime.from_env()
    try:
        report = import_csv(rt, args.file, progress=sys.stderr.isatty())
    except ImportFileError as exc:
        return _fail(exc, 2)
    for error in report.errors:
        column = f" {error.column}:" if error.column else ""
        print(f"{args.file}:{error.line}:{column} {error.reason}", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1


def import_waitlist_file(args: argparse.Namespace) -> int:
    rt = runtime.from_env()
    try:
        report = import_waitlist(rt, args.file)
    except ImportFileError as exc:
        return _fail(exc, 2)
    for error in report.errors:
        column = f" {error.column}:" if error.column else ""
        print(f"{args.file}:{error.line}:{column} {error.reason}", file=sys.stderr)
    print(report.summary())
    return 0 if report.ok else 1


def show_plan(args: argparse.Namespace) -> int:
    rt = runtime.from_env()
    with rt.sessions() as session:
        try:
            plan = timeline(rt, session, args.appointment_id, rt.clock())
        except UnknownAppointment as exc:
            return _fail(exc)
        print_plan(plan, sys.stdout)
    return 0


def print_plan(plan: Timeline, out: TextIO) -> None:
    a, zone = plan.appointment, plan.location.zone
    start = a.start_at.astimezone(zone)
    out.write(
        f"{a.id}: {a.patient.first_name} {a.patient.last_name}, {start:%a %b %d %Y %H:%M %Z}"
        f" at {plan.location.name}; {a.status}, {a.confirmation.replace('_', ' ')}\n"
    )
    for entry in plan.entries:
        _print_entry(entry, zone, out)
    for skipped in plan.left_out:
        due = skipped.due_at.astimezone(zone)
        label = f"{skipped.kind} {skipped.slot}"
        out.write(f"  {due:%a %b %d %H:%M}  {label:<18} not planned: {skipped.reason}\n")


def _print_entry(entry: Entry, zone: ZoneInfo, out: TextIO) -> None:
    n = entry.notification
    due = n.due_at.astimezone(zone)
    why = f" ({n.reason})" if n.reason else ""
    out.write(f"  {due:%a %b %d %H:%M}  {n.kind:<12} {n.channel:<5} {n.status}{why}\n")
    if entry.preview is None:
        return
    if entry.preview.subject:
        out.write(f"      Subject: {entry.preview.subject}\n")
    for line in entry.preview.text.splitlines():
        out.write(f"      {line}\n" if line.strip() else "\n")
    if entry.preview.segments is not None:
        out.write(f"      ({_length(entry.preview.text)})\n")


def _length(text: str) -> str:
    segments = sms_segments(text)
    return f"{len(text)} characters, {segments} SMS segment{'s' * (segments != 1)}"


def preview_template(args: argparse.Namespace) -> int:
    rt = runtime.from_env()
    if args.kind not in rt.renderer.kinds():
        return _fail(f"no templates for {args.kind!r}; kinds: {', '.join(rt.renderer.kinds())}")
    try:
        rendered = rt.renderer.render(args.kind, args.channel, args.lang, _example(rt, args))
    except TemplateMissing as exc:
        return _fail(exc)
    if rendered.subject:
        print(f"Subject: {rendered.subject}\n")
    print(rendered.text)
    if args.channel == "sms":
        print(f"\n({_length(rendered.text)})")
    return 0


def _example(rt: Runtime, args: argparse.Namespace) -> dict[str, Any]:
    """The clinic's own names in the worst case for length: its longest location name and
    treatment wording, a long first name and a long date."""
    location = max(rt.clinic.locations, key=lambda loc: len(loc.name))
    wording = max((t.wording(args.lang) for t in rt.clinic.treatments), key=len)
    context = example_context(args.kind, args.lang)
    context["practice"] = {"name": rt.clinic.practice.name}
    context["location"] = location.for_templates()
    context["treatment"] = {**context["treatment"], "name": wording}
    return context
