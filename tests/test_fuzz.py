"""Property-based fuzzing of the HTTP API from its own OpenAPI schema, in process (ASGI).

Every operation in /openapi.json gets valid and invalid requests, with the test API key: none
may answer 5xx, and every answer must be one the schema documents, in the shape it documents.
Bounded so that both databases together take well under two minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from notifier.runtime import Runtime
from notifier.settings import Settings
from notifier.web import create_app
from tests.conftest import new_york
from tests.events import event
from tests.fakes import FakeTwilio, SMTPSink

AUTH = {"Authorization": "Bearer test-key"}
EXAMPLES = 200  # per operation and database; each is one request


@pytest.fixture
def fuzzed(
    rt: Runtime, fake_twilio: FakeTwilio, smtp: SMTPSink, clinic_path: Path
) -> Iterator[Runtime]:
    """The test runtime with Cal.com configured, and one booking for the ids to find."""
    settings = replace(rt.settings, calcom_secret="calcom-secret", api_rate=1e6)
    runtime = Runtime.build(settings, clock=rt.clock)
    visit = new_york(2026, 12, 3, 10, 0)
    booked = event("booked", visit, occurred_at=new_york(2026, 11, 30, 8, 55))
    with runtime.sessions() as session:
        from notifier.ingest import apply_event

        apply_event(session, runtime.clinic, booked, runtime.clock())
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def app(fuzzed: Runtime) -> FastAPI:
    return create_app(fuzzed)


def _openapi() -> dict[str, Any]:
    """The schema as the app serves it; building the app touches no database."""
    settings = Settings(database_url="sqlite://", api_keys=("test-key",))
    return create_app(Runtime.build(settings)).openapi()


schema = schemathesis.openapi.from_dict(_openapi())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_makes_the_api_fail_or_answer_off_its_schema(
    case: schemathesis.Case, app: FastAPI
) -> None:
    # A schema cannot say every rule (a mobile number, an end after the start, a location of
    # the clinic, a link's signature): a schema-valid request may still be refused, with 4xx.
    excluded: list[Any] = [positive_data_acceptance]
    case.call_and_validate(headers=AUTH, excluded_checks=excluded, app=app)
