"""The staff's commands: `staff create|password`, `plan`, `templates preview`, run as the
`notifier` command runs them (a runtime built from the environment), on both databases."""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable

import pyotp
import pytest
from sqlalchemy import delete, select

from notifier import cli, runtime
from notifier.ingest import apply_event
from notifier.models import Notification
from notifier.runtime import Runtime
from notifier.simulate import run_until
from notifier.staff import sessions, twofactor
from notifier.staff.accounts import LoginRefused, authenticate
from notifier.staff.commands import add_commands, add_template_commands
from notifier.staff.models import StaffSession, StaffUser
from tests.conftest import new_york
from tests.events import event

Run = Callable[..., tuple[int, str, str]]


def parser() -> argparse.ArgumentParser:
    """cli.parser()'s shape: the staff commands, and `preview` in the `templates` group."""
    top = argparse.ArgumentParser(prog="notifier")
    commands = top.add_subparsers(required=True)
    add_commands(commands)
    add_template_commands(commands.add_parser("templates").add_subparsers(required=True))
    return top


@pytest.fixture
def notifier(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """Runs a command line against the test database; answers (exit code, stdout, stderr)."""
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", rt.settings.database_url)
    monkeypatch.setenv("NOTIFIER_CONFIG", str(rt.settings.config_path))
    with rt.sessions() as session:  # PostgreSQL keeps staff rows from test to test
        session.execute(delete(StaffSession))
        session.execute(delete(StaffUser))
        session.commit()

    def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        args = parser().parse_args(argv)
        code = args.run(args)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_staff_create_stores_an_argon2_hash_that_logs_in(rt: Runtime, notifier: Run) -> None:
    code, out, _ = notifier(
        "staff", "create", "Amy@Clinic.example", "--password-stdin", stdin="correct horse 9\n"
    )
    assert (code, out) == (0, "staff account created: amy@clinic.example (admin)\n")
    with rt.sessions() as session:
        user = session.scalars(select(StaffUser)).one()
        assert user.password_hash.startswith("$argon2id$")
        assert "correct horse" not in user.password_hash
        assert authenticate(session, "amy@clinic.example", "correct horse 9", rt.clock()) == user


def test_staff_create_asks_twice_without_stdin(
    notifier: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["correct horse 9", "correct horse 8"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    monkeypatch.setattr("notifier.staff.commands._at_terminal", lambda: True)
    code, _, err = notifier("staff", "create", "amy@clinic.example")
    assert (code, err) == (1, "notifier: the two passwords differ\n")


def test_staff_create_without_a_terminal_points_to_password_stdin(notifier: Run) -> None:
    code, _, err = notifier("staff", "create", "amy@clinic.example")
    assert code == 1 and "--password-stdin" in err


@pytest.mark.parametrize(
    ("email", "password", "error"),
    [
        ("amy@clinic.example", "short", "the password needs at least 10 characters"),
        ("amy", "correct horse 9", "not an email address: 'amy'"),
    ],
)
def test_staff_create_refuses_what_would_be_a_poor_account(
    notifier: Run, email: str, password: str, error: str
) -> None:
    code, _, err = notifier("staff", "create", email, "--password-stdin", stdin=password)
    assert (code, err) == (1, f"notifier: {error}\n")


def test_one_account_per_address_and_a_new_password_signs_out(rt: Runtime, notifier: Run) -> None:
    notifier("staff", "create", "amy@clinic.example", "--password-stdin", stdin="first pass 1")
    code, _, err = notifier(
        "staff", "create", "AMY@clinic.example", "--password-stdin", stdin="other pass 2"
    )
    assert code == 1 and "amy@clinic.example already has an account" in err
    with rt.sessions() as session:
        user = authenticate(session, "amy@clinic.example", "first pass 1", rt.clock())
        token = sessions.start(session, user, rt.clock())
    code, out, _ = notifier(
        "staff", "password", "amy@clinic.example", "--password-stdin", stdin="second pass 2"
    )
    assert (code, out) == (0, "password changed: amy@clinic.example (signed out everywhere)\n")
    with rt.sessions() as session:
        assert sessions.current(session, token, rt.clock()) is None
        with pytest.raises(LoginRefused):
            authenticate(session, "amy@clinic.example", "first pass 1", rt.clock())


def test_a_disabled_account_cannot_sign_in_until_enabled(rt: Runtime, notifier: Run) -> None:
    notifier(
        "staff", "create", "amy@clinic.example", "--role", "staff", "--password-stdin",
        stdin="first pass 1",
    )  # fmt: skip
    with rt.sessions() as session:
        user = authenticate(session, "amy@clinic.example", "first pass 1", rt.clock())
        token = sessions.start(session, user, rt.clock())
    assert notifier("staff", "disable", "amy@clinic.example") == (
        0, "amy@clinic.example can no longer sign in\n", "",
    )  # fmt: skip
    with rt.sessions() as session:
        assert sessions.current(session, token, rt.clock()) is None
        with pytest.raises(LoginRefused, match="Wrong email or password"):
            authenticate(session, "amy@clinic.example", "first pass 1", rt.clock())
    assert notifier("staff", "enable", "amy@clinic.example")[1] == (
        "amy@clinic.example can now sign in\n"
    )
    assert notifier("staff", "disable", "bob@clinic.example") == (
        1, "", "notifier: no staff account for bob@clinic.example\n",
    )  # fmt: skip


def test_reset_2fa_turns_off_the_second_factor_and_signs_out(rt: Runtime, notifier: Run) -> None:
    notifier("staff", "create", "amy@clinic.example", "--password-stdin", stdin="first pass 1")
    secret, now = twofactor.new_secret(), rt.clock()
    with rt.sessions() as session:
        user = authenticate(session, "amy@clinic.example", "first pass 1", now)
        codes = twofactor.enrol(session, user, secret, pyotp.TOTP(secret).at(now), now)
        session.commit()
        token = sessions.start(session, user, now)
    assert notifier("staff", "reset-2fa", "amy@clinic.example") == (
        0,
        "two-factor sign-in reset: amy@clinic.example sets it up again at the next sign-in"
        " (signed out everywhere)\n",
        "",
    )
    with rt.sessions() as session:
        assert sessions.current(session, token, now) is None
        user = authenticate(session, "amy@clinic.example", "first pass 1", now)
        assert user.totp_secret is None
        assert not twofactor.accept(session, user, codes[0], now)


def test_plan_shows_what_went_and_the_text_of_what_is_ahead(rt: Runtime, notifier: Run) -> None:
    with rt.sessions() as session:
        booked = event("booked", new_york(2026, 12, 3, 10, 0), occurred_at=rt.clock())
        apply_event(session, rt.clinic, booked, rt.clock())
    run_until(rt, rt.clock())  # the confirmations go out at once
    code, out, _ = notifier("plan", "apt-1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        "apt-1: Ana Ruiz, Thu Dec 03 2026 10:00 EST at Forest Hills; booked, unconfirmed"
    )
    assert lines[1:4] == [
        "  Mon Nov 30 09:00  confirmation sms   sent",
        "  Mon Nov 30 09:00  confirmation email sent",
        "  Tue Dec 01 10:00  reminder     sms   scheduled",
    ]
    assert lines[4:6] == [
        "      North Shore Skin & Neurology: Ana, see you Thu, Dec 3 10:00 AM in Forest"
        " Hills! Reply C to confirm. Changes? (718) 555-0117",
        "      (123 characters, 1 SMS segment)",
    ]
    assert "      Subject: Reminder: your appointment on Thu, Dec 3 at 10:00 AM" in out
    assert "  Thu Dec 03 11:30  aftercare    sms   scheduled" in lines


def test_plan_of_an_unknown_appointment(notifier: Run) -> None:
    assert notifier("plan", "apt-404") == (1, "", "notifier: no appointment 'apt-404'\n")


def test_templates_preview_prints_the_text_and_its_segments(notifier: Run) -> None:
    code, out, _ = notifier("templates", "preview", "reminder", "--lang", "es")
    assert code == 0
    text, count = out.rstrip("\n").split("\n\n")
    assert text.startswith("North Shore Skin & Neurology: Christabelle,")
    assert "Forest Hills" in text
    assert count == f"({len(text)} characters, 1 SMS segment)"


def test_templates_preview_of_an_email_has_its_subject(notifier: Run) -> None:
    code, out, _ = notifier("templates", "preview", "aftercare", "--channel", "email")
    assert code == 0
    assert out.startswith("Subject: Caring for yourself after today's visit")
    assert "segment" not in out


def test_templates_preview_names_the_kinds_there_are(notifier: Run) -> None:
    code, _, err = notifier("templates", "preview", "reminders")
    assert code == 1
    assert err.startswith("notifier: no templates for 'reminders'; kinds: aftercare, ")


def test_remind_refuses_a_second_reminder_within_10_minutes_unless_forced(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(runtime, "from_env", lambda settings=None: rt)  # on simulated time
    with rt.sessions() as session:
        booked = event("booked", new_york(2026, 12, 3, 10, 0), occurred_at=rt.clock())
        apply_event(session, rt.clinic, booked, rt.clock())

    def remind(*argv: str) -> tuple[int, str, str]:
        args = cli.parser().parse_args(["remind", "apt-1", *argv])
        code = args.run(args)
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = remind("--staff", "amy")
    assert code == 0 and out.endswith(" by sms due now\n")
    refused = "notifier: not sent again: amy sent an SMS reminder just now (--force sends another)"
    assert remind() == (1, "", refused + "\n")
    code, out, _ = remind("--force")
    assert code == 0 and out.endswith(" by sms due now\n")
    with rt.sessions() as session:
        manual = session.scalars(
            select(Notification).where(Notification.kind == "manual").order_by(Notification.id)
        )
        assert [n.staff for n in manual] == ["amy", "cli"]


def test_roles_from_the_command_line(rt: Runtime, notifier: Run) -> None:
    notifier("staff", "create", "amy@clinic.example", "--password-stdin", stdin="first pass 1")
    code, out, _ = notifier(
        "staff", "create", "ben@clinic.example", "--password-stdin", stdin="second pass 2"
    )
    assert out == "staff account created: ben@clinic.example (staff)\n"
    assert notifier("staff", "disable", "amy@clinic.example") == (
        1, "", "notifier: amy@clinic.example is the only admin: make another account admin first\n",
    )  # fmt: skip
    assert notifier("staff", "role", "ben@clinic.example", "admin") == (
        0, "ben@clinic.example is now admin\n", "",
    )  # fmt: skip
    assert notifier("staff", "role", "amy@clinic.example", "staff")[0] == 0
    with rt.sessions() as session:
        roles = dict(session.execute(select(StaffUser.email, StaffUser.role)).tuples().all())
    assert roles == {"amy@clinic.example": "staff", "ben@clinic.example": "admin"}
