"""Webhooks out: events in the outbox, signed deliveries, retries, order, dead letters."""

from __future__ import annotations

import json
import re

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from notifier import hooks
from notifier.models import Base, WebhookDelivery, WebhookEndpoint
from notifier.runtime import Runtime
from notifier.store import webhooks
from tests.conftest import new_york

NOW = new_york(2026, 11, 30, 9, 0)


def add_endpoint(rt: Runtime, url: str, events: str = ",".join(hooks.EVENTS)) -> int:
    with rt.sessions() as session:
        endpoint = WebhookEndpoint(
            url=url, events=events, secret=hooks.new_secret(), created_at=NOW
        )
        session.add(endpoint)
        session.commit()
        return endpoint.id


def test_the_migration_makes_the_tables_the_models_describe(rt: Runtime) -> None:
    mine = {"webhook_endpoints", "webhook_deliveries"}
    with rt.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in diffs if mine & set(re.findall(r"\w+", str(d)))] == []


def test_an_event_waits_in_the_outbox_once_per_subscribed_endpoint(rt: Runtime) -> None:
    both = add_endpoint(rt, "http://127.0.0.1:9/a")
    failed_only = add_endpoint(rt, "http://127.0.0.1:9/b", "message.failed")
    with rt.sessions() as session:
        hooks.emit(session, "appointment.confirmed", {"appointment_id": "apt-1"}, NOW)
        hooks.emit(session, "message.failed", {"message_id": 7}, NOW)
        session.commit()
        rows = session.query(WebhookDelivery).order_by(WebhookDelivery.id).all()
    assert [(r.endpoint_id, r.event, r.status) for r in rows] == [
        (both, "appointment.confirmed", "pending"),
        (both, "message.failed", "pending"),
        (failed_only, "message.failed", "pending"),
    ]
    assert rows[1].message_id == rows[2].message_id != rows[0].message_id
    sent = json.loads(rows[0].payload)
    assert sent == {
        "type": "appointment.confirmed",
        "timestamp": NOW.isoformat(),
        "data": {"appointment_id": "apt-1"},
    }


def test_an_event_rolled_back_leaves_nothing_to_deliver(rt: Runtime) -> None:
    add_endpoint(rt, "http://127.0.0.1:9/a")
    with rt.sessions() as session:
        hooks.emit(session, "patient.opted_out", {"patient_ids": ["pat-1"]}, NOW)
        session.rollback()
        assert webhooks.claim(session, NOW, NOW, 10) == []


def test_an_unknown_event_is_a_mistake_in_the_code(rt: Runtime) -> None:
    with rt.sessions() as session, pytest.raises(hooks.UnknownEvent):
        hooks.emit(session, "appointment.exploded", {}, NOW)
