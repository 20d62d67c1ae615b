"""The table of moves is the law: every allowed move happens, every other one raises before the
database is touched, and the single statements of the hot path move only what the table allows."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from notifier import db, models, states
from notifier.models import (
    Appointment,
    LocationRow,
    Notification,
    NotificationEvent,
    Patient,
    Treatment,
)
from notifier.states import (
    CONFIRMATION_MOVES,
    MOVES,
    STATEMENTS,
    Confirmation,
    ForbiddenMove,
    Status,
    set_confirmation,
    transition,
)

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    with Session(engine) as session:
        session.merge(LocationRow(id="loc", name="Main St", time_zone="America/New_York"))
        session.merge(Treatment(id="cleaning", name="Cleaning"))
        session.add_all(
            [
                Patient(id="pat", first_name="Ana", phone="+15551230000", updated_at=NOW),
                Appointment(
                    id="apt",
                    patient_id="pat",
                    location_id="loc",
                    treatment_id="cleaning",
                    start_at=NOW + timedelta(days=2),
                    end_at=NOW + timedelta(days=2, hours=1),
                    status="booked",
                    booked_at=NOW,
                    last_event_at=NOW,
                    created_at=NOW,
                    updated_at=NOW,
                ),
            ]
        )
        session.commit()
    yield engine
    engine.dispose()


def plant(session: Session, status: Status) -> int:
    """A notification in `status`, due an hour ago, with the one history event of its state."""
    n = Notification(
        appointment_id="apt",
        patient_id="pat",
        kind="reminder",
        channel="sms",
        slot=f"{status}-{session.scalar(select(func.count()).select_from(Notification))}",
        planned_for=NOW - timedelta(hours=1),
        due_at=NOW - timedelta(hours=1),
        expires_at=NOW + timedelta(days=2),
        status=status,
        attempts=0,
        created_at=NOW - timedelta(days=1),
        updated_at=NOW - timedelta(days=1),
    )
    session.add(n)
    session.flush()
    states.record(session, [n.id], status, n.updated_at, "planted")
    session.commit()
    return n.id


def row(session: Session, nid: int) -> tuple[str, datetime, int]:
    """What a move changes: the status, when, and how long the history is."""
    session.expire_all()
    n = session.get(Notification, nid)
    assert n is not None
    events = select(func.count()).where(NotificationEvent.notification_id == nid)
    return n.status, n.updated_at, session.scalar(events) or 0


class Statements:
    """Counts the statements sent to the database."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1


@pytest.mark.parametrize("source", list(Status))
def test_transition_makes_every_allowed_move_and_refuses_every_other(
    engine: Engine, source: Status
) -> None:
    statements = Statements(engine)
    with Session(engine) as session:
        for to in Status:
            nid = plant(session, source)
            before = row(session, nid)
            if to in MOVES[source]:
                assert transition(session, [nid], [source], to, NOW, "test") == [nid]
                session.commit()
                assert row(session, nid) == (to, NOW, before[2] + 1), f"{source} → {to}"
                continue
            sent = statements.count
            with pytest.raises(ForbiddenMove, match=f"from {source} to {to}"):
                transition(session, [nid], [source], to, NOW, "test")
            assert statements.count == sent, f"{source} → {to} reached the database"
            session.rollback()
            assert row(session, nid) == before, f"{source} → {to}"


def test_a_move_allowed_from_one_source_and_not_another_is_refused_whole(engine: Engine) -> None:
    with Session(engine) as session:
        nid = plant(session, Status.QUEUED)
        before = row(session, nid)
        with pytest.raises(ForbiddenMove, match="from scheduled to sending"):
            transition(session, [nid], [Status.QUEUED, Status.SCHEDULED], Status.SENDING, NOW)
        session.rollback()
        assert row(session, nid) == before


def run_statement(name: str, session: Session, nid: int) -> None:
    """Calls the named single statement as its caller does, for the row `nid`."""
    calls: dict[str, Callable[[], object]] = {
        "claim": lambda: states.claim(session, NOW, "clock", 1000, timedelta(minutes=5)),
        "defer": lambda: states.defer(session, {nid: NOW + timedelta(seconds=3)}, NOW),
        "hold": lambda: states.hold(session, {nid: "Hello"}, NOW, "worker", NOW),
        "record_sent": lambda: states.record_sent(
            session, [{"nid": nid, "pid": f"SM{nid:032x}", "at": NOW}]
        ),
    }
    calls[name]()
    session.commit()


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_the_single_statements_move_only_what_the_table_allows(engine: Engine, name: str) -> None:
    move = STATEMENTS[name]
    assert all(move.to in MOVES[s] for s in move.sources), f"{name} is not in the table"
    with Session(engine) as session:
        for source in Status:
            nid = plant(session, source)
            before = row(session, nid)
            run_statement(name, session, nid)
            status, at, _ = row(session, nid)
            if source in move.sources:
                assert (status, at) == (move.to, NOW), f"{name} did not move {source}"
            else:
                assert row(session, nid) == before, f"{name} moved {source}"


@pytest.mark.parametrize("source", list(Confirmation))
def test_a_confirmation_makes_every_allowed_move_and_refuses_every_other(
    source: Confirmation,
) -> None:
    for to in Confirmation:
        appointment = Appointment(confirmation=source, confirmation_at=None)
        if to in CONFIRMATION_MOVES[source]:
            set_confirmation(appointment, to, NOW)
            assert (appointment.confirmation, appointment.confirmation_at) == (to, NOW)
        else:
            with pytest.raises(ForbiddenMove):
                set_confirmation(appointment, to, NOW)
            assert (appointment.confirmation, appointment.confirmation_at) == (source, None)


def test_the_final_states_have_no_way_out_and_every_other_state_has_one() -> None:
    final = {Status.CANCELLED, Status.SUPPRESSED, Status.DELIVERED, Status.UNDELIVERED}
    assert final == states.FINAL
    assert MOVES[Status.FAILED] == {Status.SCHEDULED}  # only a staff retry
    assert all(MOVES[s] for s in Status if s not in final)


def test_the_in_flight_index_covers_the_in_flight_states() -> None:
    assert re.findall(r"'(\w+)'", models.IN_FLIGHT) == list(states.IN_FLIGHT)


def test_the_architecture_doc_holds_the_tables_the_code_prints() -> None:
    doc = DOC.read_text()
    found = re.search(r"<!-- python -m notifier\.states -->\n(.*?)<!-- end -->", doc, re.S)
    assert found, "docs/architecture.md has no table of moves"
    assert found.group(1) == states.markdown(), "run `python -m notifier.states` into the doc"
