"""Exactly once under chaos, at CI size: 2,000 due texts out of a network of 50 clinic
locations, each sender number at the default 1 text a second, and 500 due emails, through two
clocks and two Celery workers while processes are SIGKILLed, Redis is crashed and the provider
errs, hangs and drops. The long run is benchmarks/chaos.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from tests.chaos import ChaosPlan, ServiceMissing, run
from tests.fakes import FakeTwilio, wait_until

# 40 texts per sender: 40 s at 1 a second, leaving the rest of the chaos time for the leases.
CI_PLAN = ChaosPlan(n=2000, emails=500, senders=50, chaos_seconds=90, settle_seconds=60)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_texts_and_emails_from_a_network_of_clinics_go_out_once_under_chaos(
    tmp_path: Path,
) -> None:
    try:
        report = run(CI_PLAN, tmp_path)
    except ServiceMissing as exc:
        pytest.fail(str(exc))
    print(report.summary())
    where = f"{report.summary()}\nprocess logs: {tmp_path}"
    assert report.sms_per_second == 1.0, "the run must keep the clinic's default sender rate"
    assert (report.duplicates, report.lost, report.pending) == (0, 0, 0), where
    assert report.mismatched == 0, where
    assert (report.emails_lost, report.email_foreign_ids) == (0, 0), where
    assert report.email_duplicates <= report.email_duplicates_allowed, where
    assert report.kills and report.redis_restarts and report.faults, "the chaos never happened"


def _client(fake: FakeTwilio) -> Client:
    client = Client(fake.account_sid, fake.auth_token, http_client=TwilioHttpClient(timeout=0.3))
    client.api.base_url = fake.url
    return client


def _create(client: Client, to: str) -> str:
    try:
        return str(client.messages.create(to=to, from_="+15165550100", body="Hi").sid)
    except TwilioRestException as exc:
        return f"error {exc.status} {exc.code}"
    except OSError as exc:  # requests' timeouts and dropped connections
        return type(exc).__name__


def test_chaos_mode_deals_errors_hangs_and_drops_at_the_rates_asked() -> None:
    with FakeTwilio() as fake:
        fake.chaos(error_rate=0.3, hang_rate=0.1, drop_rate=0.1, hang_seconds=0.5, seed=4)
        client = _client(fake)
        answers = [_create(client, f"+1718555{i:04d}") for i in range(100)]
        faults = fake.faults_injected
        hangs = faults["hang"]
        # Hung requests are accepted after their sleep, although the client stopped waiting.
        assert wait_until(
            lambda: len(fake.messages) == 100 - faults["error_500"] - faults["error_429"], 2
        )
    assert set(faults) == {"error_500", "error_429", "hang", "drop"}
    assert 20 <= faults["error_500"] + faults["error_429"] <= 40 and 3 <= hangs <= 20
    assert sum(a.startswith("error 429 20429") for a in answers) == faults["error_429"]
    assert sum(a == "ReadTimeout" for a in answers) == hangs
    assert max(len(sids) for sids in fake.sids_by_recipient().values()) == 1


def test_chaos_mode_ends_and_reset_forgets_it() -> None:
    with FakeTwilio() as fake:
        fake.chaos(error_rate=1.0, hang_rate=0, drop_rate=0, seed=1)
        client = _client(fake)
        assert _create(client, "+17185550001").startswith("error")
        fake.chaos(0, 0, 0)
        assert _create(client, "+17185550002").startswith("SM")
        fake.chaos(error_rate=1.0, hang_rate=0, drop_rate=0)
        fake.reset()
        assert _create(client, "+17185550003").startswith("SM")
        assert fake.faults_injected == {}
        with pytest.raises(ValueError):
            fake.chaos(error_rate=0.8, hang_rate=0.3)
