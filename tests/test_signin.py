"""Signing in, piece by piece on SQLite and PostgreSQL (test_attacks.py attacks the whole of it
in a real process): who is throttled and who is not, a code good once, recovery codes spent
once, a session token new at each sign-in, the headers and the access log, and the start-up
refusal without NOTIFIER_PUBLIC_URL."""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import replace
from datetime import timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient

from notifier.logs import LinkTokenFilter
from notifier.runtime import Runtime
from notifier.settings import Settings
from notifier.simulate import SimulatedClock
from notifier.staff import sessions, twofactor
from notifier.staff.accounts import REFUSED, LoginRefused, authenticate, find
from notifier.web import create_app
from tests.test_processes import NOTIFIER
from tests.test_staff_web import AMY, PASSWORD, csrf, log_in, new_staff

WRONG = "wrong horse battery"


def refused(rt: Runtime, password: str, client: str, device: tuple[int, str] | None = None) -> bool:
    with rt.sessions() as session:
        try:
            authenticate(session, AMY, password, rt.clock(), client, device)
        except LoginRefused as exc:
            assert str(exc) == REFUSED
            return True
    return False


def test_five_wrong_passwords_shut_that_client_out_not_the_account(rt: Runtime) -> None:
    new_staff(rt)
    for _ in range(5):
        assert refused(rt, WRONG, "203.0.113.9")
    assert refused(rt, PASSWORD, "203.0.113.9")  # the right one too, from there
    assert not refused(rt, PASSWORD, "10.0.0.2")  # Amy at her desk
    with rt.sessions() as session:
        amy = find(session, AMY)
        assert amy is not None
    assert not refused(rt, PASSWORD, "203.0.113.9", (amy.id, "her-laptop"))  # a known device
    assert refused(rt, PASSWORD, "203.0.113.9", (amy.id + 1, "someone-elses"))


def test_one_client_trying_many_accounts_is_stopped_at_30(rt: Runtime) -> None:
    new_staff(rt)
    for i in range(30):
        with rt.sessions() as session, pytest.raises(LoginRefused):
            authenticate(session, f"guess{i}@clinic.example", WRONG, rt.clock(), "198.51.100.1")
    assert refused(rt, PASSWORD, "198.51.100.1")
    assert not refused(rt, PASSWORD, "198.51.100.2")


def test_the_count_starts_afresh_15_minutes_after_the_last_try(
    rt: Runtime, clock: SimulatedClock
) -> None:
    new_staff(rt)
    for _ in range(6):
        refused(rt, WRONG, "203.0.113.9")
    clock.now += timedelta(minutes=14)
    assert refused(rt, PASSWORD, "203.0.113.9")  # and this try starts another 15 minutes
    clock.now += timedelta(minutes=15)
    assert not refused(rt, PASSWORD, "203.0.113.9")


def test_a_code_is_good_once_and_a_recovery_code_once(rt: Runtime) -> None:
    new_staff(rt)
    secret, now = twofactor.new_secret(), rt.clock()
    totp = pyotp.TOTP(secret)
    with rt.sessions() as session:
        amy = find(session, AMY)
        assert amy is not None
        wrong = f"{(int(totp.at(now)) + 1) % 10**6:06d}"
        assert twofactor.enrol(session, amy, secret, wrong, now) == []
        codes = twofactor.enrol(session, amy, secret, totp.at(now), now)
        session.commit()
        assert len(set(codes)) == twofactor.RECOVERY_CODES
        assert not twofactor.accept(session, amy, totp.at(now), now)  # the enrolment's code
        later = now + timedelta(seconds=30)
        assert twofactor.accept(session, amy, totp.at(later), later)
        assert not twofactor.accept(session, amy, totp.at(later), later)
        assert twofactor.accept(session, amy, codes[3].upper(), now)
        assert not twofactor.accept(session, amy, codes[3], now)
        assert not twofactor.accept(session, amy, "12345", now)


def test_each_sign_in_makes_a_new_session_and_ends_the_old_one(
    rt: Runtime, clock: SimulatedClock
) -> None:
    new_staff(rt)
    with TestClient(create_app(rt)) as client:
        log_in(client)
        first = client.cookies["notifier_staff"]
        assert log_in(client).status_code == 303
        assert client.cookies["notifier_staff"] != first
        with rt.sessions() as session:
            assert sessions.current(session, first, clock()) is None


def test_once_two_factor_is_required_a_password_alone_opens_nothing(rt: Runtime) -> None:
    new_staff(rt)
    with TestClient(create_app(rt)) as client:
        assert log_in(client).status_code == 303  # before: signed in with a password
        required = replace(rt, settings=replace(rt.settings, staff_two_factor=True))
        with TestClient(create_app(required)) as after:
            after.cookies = client.cookies
            board = after.get("/staff", follow_redirects=False)
            assert board.headers["location"].startswith("/staff/login")
            answer = log_in(after)
            assert answer.headers["location"] == "/staff/login/enrol"
            assert after.get("/staff", follow_redirects=False).status_code == 303
            page = after.get("/staff/login/enrol")
            assert 'src="data:image/svg+xml;base64,' in page.text
            wrong = after.post("/staff/login/enrol", data={"code": "x", "csrf": csrf(page)})
            assert wrong.status_code == 401 and "That code did not work" in wrong.text


def test_headers_leave_static_files_cacheable_and_docs_unpoliced(rt: Runtime) -> None:
    with TestClient(create_app(rt)) as client:
        script = client.get("/static/staff.js")
        assert script.status_code == 200 and "cache-control" not in script.headers
        assert script.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" not in client.get("/docs").headers
        login = client.get("/staff/login")
        policy = login.headers["content-security-policy"]
        assert "style-src 'self';" in policy and "nonce" not in policy
        assert "'unsafe-inline'" not in policy.replace("style-src-attr 'unsafe-inline'", "")
        # No inline style or script: the page's stylesheet comes from /static, cacheable.
        assert not re.search(r"<style\b", login.text)
        assert not re.search(r"<script(?![^>]*\bsrc=)", login.text)
        [sheet] = re.findall(r'<link rel="stylesheet" href="([^"]+)"', login.text)
        styles = client.get(sheet)
        assert styles.status_code == 200 and "cache-control" not in styles.headers


def test_the_access_log_keeps_no_link_token() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/links/eyJhIjoiYXB0LTEi.sig?x=1", "1.1", 200), None,
    )  # fmt: skip
    assert LinkTokenFilter().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /links/•••?x=1 HTTP/1.1" 200'


def test_sending_without_a_public_url_is_a_start_up_error(tmp_path: object) -> None:
    twilio = {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t"}
    with pytest.raises(ValueError, match="NOTIFIER_PUBLIC_URL is not set"):
        Settings.from_env(twilio)
    with pytest.raises(ValueError, match="NOTIFIER_PUBLIC_URL is not set"):
        Settings.from_env({"NOTIFIER_SMTP_URL": "smtp://mail:25"})
    public = {**twilio, "NOTIFIER_PUBLIC_URL": "https://reminders.clinic.example/"}
    assert Settings.from_env(public).public_url == "https://reminders.clinic.example"
    assert Settings.from_env({}).public_url == "http://127.0.0.1:8000"  # dry-run
    env = {"PATH": "/usr/bin:/bin", **twilio, "NOTIFIER_SECRET_KEY": "k"}
    done = subprocess.run([*NOTIFIER, "web"], env=env, capture_output=True, text=True)
    assert (done.returncode, done.stderr.count("\n")) == (2, 1)
    assert done.stderr.startswith("notifier: NOTIFIER_PUBLIC_URL is not set")


def test_a_signed_in_staff_member_turns_two_factor_on_by_choice(
    rt: Runtime, clock: SimulatedClock
) -> None:
    new_staff(rt)
    with TestClient(create_app(rt)) as client:
        log_in(client)
        page = client.get("/staff/two-factor")
        key = re.search(r'class="secret">([^<]+)<', page.text)
        token = re.search(r'name="secret" value="([^"]+)"', page.text)
        assert key and token, page.text
        totp = pyotp.TOTP(key[1].replace(" ", ""))
        form = {"csrf": csrf(page), "secret": token[1]}
        wrong = client.post("/staff/two-factor", data=form | {"code": "12345x"})
        assert wrong.status_code == 401
        forged = form | {"secret": token[1][:-2] + "xx", "code": totp.at(clock())}
        assert client.post("/staff/two-factor", data=forged).url.path == "/staff/two-factor"
        shown = client.post("/staff/two-factor", data=form | {"code": totp.at(clock())})
        first = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", shown.text)
        assert len(first) == twofactor.RECOVERY_CODES
        on = client.get("/staff/two-factor")
        assert "Two-factor sign-in is on" in on.text
        renewed = client.post("/staff/two-factor/recovery-codes", data={"csrf": csrf(on)})
        second = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", renewed.text)
        assert len(second) == twofactor.RECOVERY_CODES and not set(first) & set(second)
        client.post("/staff/logout", data={"csrf": csrf(on)})
        assert log_in(client).headers["location"] == "/staff/login/code"
