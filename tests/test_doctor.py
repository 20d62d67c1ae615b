"""`notifier doctor`: a provider left unset is said to be a dry run, not "ok"; a failure names
the host that failed and the likely fix, never an exception's raw text."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable

import pytest

from notifier import db
from notifier.cli import main
from notifier.doctor import run
from notifier.runtime import Runtime, email_channel, sms_channel
from tests.fakes import FakeTwilio, SMTPSink, free_port


def doctor(rt: Runtime, broker_ping: Callable[[], None] | None = None) -> tuple[bool, str]:
    out = io.StringIO()
    healthy = run(rt, broker_ping, out)
    return healthy, out.getvalue()


def line(output: str, name: str) -> str:
    [found] = [text for text in output.splitlines() if text[6:].startswith(f"{name}:")]
    return found


def with_settings(rt: Runtime, **changes: object) -> Runtime:
    settings = dataclasses.replace(rt.settings, **changes)  # type: ignore[arg-type]
    return dataclasses.replace(
        rt,
        settings=settings,
        sms=sms_channel(settings, rt.clinic),
        email=email_channel(settings),
    )


def raw_text_shown(output: str) -> bool:
    return any(word in output for word in ("Traceback", "Errno", "HTTP Error", "<", "Exception"))


def test_unset_providers_are_a_dry_run_not_ok(rt: Runtime) -> None:
    healthy, output = doctor(with_settings(rt, twilio_account_sid=None, smtp_url=None))
    assert healthy
    assert line(output, "twilio").startswith("off   twilio: not configured (dry run): SMS go")
    assert "TWILIO_ACCOUNT_SID" in line(output, "twilio")
    assert line(output, "smtp").startswith("off   smtp: not configured (dry run): email goes")
    assert "NOTIFIER_SMTP_URL" in line(output, "smtp")
    assert "ok    twilio" not in output and "ok    smtp" not in output


def test_the_cli_says_so_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", f"sqlite:///{tmp_path}/doctor.db")
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "NOTIFIER_SMTP_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["db", "upgrade"]) == 0
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "off   twilio: not configured (dry run)" in out
    assert "off   smtp: not configured (dry run)" in out


def test_wrong_twilio_credentials_name_the_host_and_the_variables(
    rt: Runtime, fake_twilio: FakeTwilio
) -> None:
    healthy, output = doctor(with_settings(rt, twilio_auth_token="wrong"))
    assert not healthy
    host = fake_twilio.url.split("//")[1].rstrip("/")
    assert line(output, "twilio") == (
        f"FAIL  twilio: {host} refused the credentials (Twilio 20003): check TWILIO_ACCOUNT_SID"
        " and TWILIO_AUTH_TOKEN (the live ones, not the test credentials)"
    )


def test_twilio_out_of_reach_names_the_host_and_the_network(rt: Runtime) -> None:
    port = free_port()
    healthy, output = doctor(with_settings(rt, twilio_api_base_url=f"http://127.0.0.1:{port}"))
    assert not healthy
    twilio = line(output, "twilio")
    assert twilio.startswith(f"FAIL  twilio: cannot reach 127.0.0.1:{port} (")
    assert "TWILIO_API_BASE_URL" in twilio and not raw_text_shown(twilio)


def test_an_smtp_server_that_refuses_names_host_port_and_ports_to_try(rt: Runtime) -> None:
    port = free_port()
    healthy, output = doctor(with_settings(rt, smtp_url=f"smtp://127.0.0.1:{port}"))
    assert not healthy
    assert line(output, "smtp") == (
        f"FAIL  smtp: 127.0.0.1:{port} refused the connection: is the SMTP server running, and"
        " is the port right (587 with ?starttls=1, 465 with smtps://)?"
    )


def test_an_smtp_host_that_does_not_exist(rt: Runtime) -> None:
    healthy, output = doctor(with_settings(rt, smtp_url="smtp://mail.no-such-host.invalid:587"))
    assert not healthy
    assert line(output, "smtp") == (
        "FAIL  smtp: cannot find the host of mail.no-such-host.invalid:587: check the host name"
        " in NOTIFIER_SMTP_URL"
    )


def test_starttls_asked_of_a_server_without_it(rt: Runtime, smtp: SMTPSink) -> None:
    healthy, output = doctor(with_settings(rt, smtp_url=smtp.url + "?starttls=1"))
    assert not healthy
    assert f"FAIL  smtp: 127.0.0.1:{smtp.port} offers no STARTTLS" in line(output, "smtp")


def test_smtps_against_a_plain_server(rt: Runtime, smtp: SMTPSink) -> None:
    healthy, output = doctor(with_settings(rt, smtp_url=f"smtps://127.0.0.1:{smtp.port}"))
    assert not healthy
    smtp_line = line(output, "smtp")
    assert smtp_line.startswith(f"FAIL  smtp: TLS with 127.0.0.1:{smtp.port} failed (")
    assert "?starttls=1" in smtp_line


def test_a_broker_out_of_reach(rt: Runtime) -> None:
    def refused() -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    down = with_settings(rt, broker_url="redis://:secret@127.0.0.1:9/0")
    healthy, output = doctor(down, refused)
    assert not healthy
    assert line(output, "broker") == (
        "FAIL  broker: cannot reach the broker at redis://:***@127.0.0.1:9/0: is Redis running"
        " and reachable from here? Check NOTIFIER_BROKER_URL"
    )


def test_a_database_out_of_reach(rt: Runtime) -> None:
    down = dataclasses.replace(rt, engine=db.make_engine("postgresql://nobody@127.0.0.1:9/none"))
    healthy, output = doctor(down)
    assert not healthy
    assert line(output, "database") == (
        "FAIL  database: cannot reach the database at postgresql+psycopg://nobody@127.0.0.1:9/none:"
        " is it running, and do the host, user and password in NOTIFIER_DATABASE_URL match it?"
    )


def test_a_good_setup_is_ok_throughout(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink
) -> None:
    healthy, output = doctor(rt)
    assert healthy, output
    assert all(text.startswith("ok    ") for text in output.splitlines()), output
