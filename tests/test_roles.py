"""Roles: an admin manages staff accounts, API keys and the audit log; a staff member does the
daily work and reaches no admin page or button. Every admin route is found in the app's own
route table, so a route added later is checked without anyone remembering to."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, delete, select, text

from notifier import api_keys, db
from notifier.models import ApiKey, AuditEntry, Base
from notifier.runtime import Runtime
from notifier.staff import accounts
from notifier.staff.accounts import AccountError, create_staff, set_active, set_role
from notifier.staff.admin import admin_only
from notifier.staff.models import StaffSession, StaffUser
from notifier.web import create_app
from tests.conftest import POSTGRES_ADMIN_URL
from tests.test_staff_web import AMY, PASSWORD, csrf, flash

BEN = "ben@clinic.example"


def two_accounts(rt: Runtime) -> None:
    """Amy, the clinic's first account (so its admin), and Ben, staff."""
    with rt.sessions() as session:
        session.execute(delete(StaffSession))
        session.execute(delete(StaffUser))
        create_staff(session, AMY, PASSWORD, rt.clock())
        create_staff(session, BEN, PASSWORD, rt.clock())


def signed_in(app: FastAPI, email: str) -> TestClient:
    client = TestClient(app)
    form = client.get("/staff/login")
    data = {"email": email, "password": PASSWORD, "csrf": csrf(form)}
    assert client.post("/staff/login", data=data, follow_redirects=False).status_code == 303
    return client


@pytest.fixture
def app(rt: Runtime) -> FastAPI:
    two_accounts(rt)
    return create_app(rt)


@pytest.fixture
def amy(app: FastAPI) -> Iterator[TestClient]:
    with signed_in(app, AMY) as client:
        yield client


@pytest.fixture
def ben(app: FastAPI) -> Iterator[TestClient]:
    with signed_in(app, BEN) as client:
        yield client


def needs_admin(dependant: Dependant) -> bool:
    return any(d.call is admin_only or needs_admin(d) for d in dependant.dependencies)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    name: str


def every_route(app: FastAPI) -> Iterator[tuple[Route, APIRoute]]:
    """Each method of each route, at its full path (routers are included lazily)."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path_format:
            for method in sorted(context.methods or ()):
                yield Route(method, context.path_format, str(context.name)), route


def admin_routes(app: FastAPI) -> list[Route]:
    return [found for found, route in every_route(app) if needs_admin(route.dependant)]


def concrete(route: Route, params: dict[str, str]) -> str:
    return re.sub(r"{(\w+)}", lambda m: params[m[1]], route.path)


def test_the_first_account_is_the_admin_and_later_ones_staff(rt: Runtime) -> None:
    two_accounts(rt)
    with rt.sessions() as session:
        roles = dict(session.execute(select(StaffUser.email, StaffUser.role)).tuples().all())
        assert roles == {AMY: "admin", BEN: "staff"}
        carl = create_staff(session, "carl@clinic.example", PASSWORD, rt.clock(), role="admin")
        assert carl.role == "admin"
        with pytest.raises(AccountError, match="no role 'owner'"):
            create_staff(session, "dora@clinic.example", PASSWORD, rt.clock(), role="owner")


def test_the_last_admin_cannot_be_demoted_or_disabled(rt: Runtime) -> None:
    two_accounts(rt)
    with rt.sessions() as session:
        with pytest.raises(AccountError, match="only admin"):
            set_role(session, AMY, "staff")
        with pytest.raises(AccountError, match="only admin"):
            set_active(session, AMY, False)
        set_role(session, BEN, "admin")
        set_role(session, AMY, "staff")  # Ben is admin now: Amy may step down
        assert accounts.find(session, AMY).role == "staff"  # type: ignore[union-attr]


def test_every_admin_route_refuses_staff_and_works_for_an_admin(
    rt: Runtime, app: FastAPI, amy: TestClient, ben: TestClient
) -> None:
    key = api_keys.issue(rt, "booking system", ["events"])
    with rt.sessions() as session:
        ben_id = session.scalars(select(StaffUser.id).where(StaffUser.email == BEN)).one()
        key_id = session.scalars(select(ApiKey.id)).one()
    params = {"user_id": str(ben_id), "key_id": str(key_id), "endpoint_id": "1"}
    params["delivery_id"] = "1"
    routes = admin_routes(app)
    names = {route.name for route in routes}
    assert names >= {
        "staff_admin_accounts", "staff_admin_role", "staff_admin_access", "staff_admin_keys",
        "staff_admin_revoke", "staff_admin_audit", "staff_admin_audit_csv",
    }  # fmt: skip
    # Nothing under /staff/admin escapes the check, and nothing else needs it.
    under_admin = {found for found, _ in every_route(app) if found.path.startswith("/staff/admin")}
    assert under_admin == set(routes)

    ben_csrf = csrf(ben.get("/staff"))
    for route in routes:
        form = {"csrf": ben_csrf, "role": "admin", "active": "0"}
        answer = ben.request(route.method, concrete(route, params), data=form)
        assert answer.status_code == 403, (route, answer.status_code)
        assert "admins" in answer.text
    with rt.sessions() as session:
        ben_row = session.scalars(select(StaffUser).where(StaffUser.email == BEN)).one()
        assert (ben_row.role, ben_row.active) == ("staff", True)
        assert session.scalars(select(ApiKey.revoked_at)).one() is None
        denied = session.scalars(
            select(AuditEntry.actor).where(AuditEntry.action == "admin.denied")
        ).all()
        assert denied == [f"staff:{BEN}"] * len(routes)
    assert api_keys.issued(rt, key) is not None

    amy_csrf = csrf(amy.get("/staff"))
    for route in routes:
        answer = amy.request(
            route.method,
            concrete(route, params),
            data={"csrf": amy_csrf, "role": "admin", "active": "1"},
            follow_redirects=False,
        )
        expected = 200 if route.method == "GET" else 303
        assert answer.status_code == expected, (route, answer.text)


def test_admin_buttons_change_accounts_and_revoke_keys(
    rt: Runtime, amy: TestClient, ben: TestClient
) -> None:
    key = api_keys.issue(rt, "booking system", ["events", "read"])
    page = amy.get("/staff/admin/staff")
    assert BEN in page.text and "Make admin" in page.text
    with rt.sessions() as session:
        ben_id = session.scalars(select(StaffUser.id).where(StaffUser.email == BEN)).one()
        amy_id = session.scalars(select(StaffUser.id).where(StaffUser.email == AMY)).one()
    token = csrf(page)
    refused = amy.post(f"/staff/admin/staff/{amy_id}/role", data={"csrf": token, "role": "staff"})
    assert flash(refused).startswith(f"Not changed: {AMY} is the only admin")
    made = amy.post(f"/staff/admin/staff/{ben_id}/role", data={"csrf": token, "role": "admin"})
    assert flash(made) == f"{BEN} is now admin."
    assert ben.get("/staff/admin/audit").status_code == 200  # at once, no new sign-in
    closed = amy.post(f"/staff/admin/staff/{ben_id}/access", data={"csrf": token, "active": "0"})
    assert flash(closed) == f"{BEN} can no longer sign in."
    assert ben.get("/staff", follow_redirects=False).status_code == 303  # signed out

    keys = amy.get("/staff/admin/api-keys")
    assert "booking system" in keys.text and ">events<" in keys.text and key not in keys.text
    with rt.sessions() as session:
        key_id = session.scalars(select(ApiKey.id)).one()
    revoked = amy.post(f"/staff/admin/api-keys/{key_id}/revoke", data={"csrf": token})
    assert flash(revoked) == "Revoked: booking system. Calls with it get 401 now."
    assert api_keys.issued(rt, key) is None
    again = amy.post(f"/staff/admin/api-keys/{key_id}/revoke", data={"csrf": token})
    assert flash(again) == "This key is unknown or already revoked."


def test_only_admins_see_the_admin_link(amy: TestClient, ben: TestClient) -> None:
    assert 'href="/staff/admin/staff"' in amy.get("/staff").text
    assert 'href="/staff/admin/staff"' not in ben.get("/staff").text


def test_hostile_admin_input_gets_no_500(amy: TestClient) -> None:
    token = csrf(amy.get("/staff"))
    for path in (
        "/staff/admin/audit?since=9999-12-31&until=0001-01-01",
        "/staff/admin/audit?before=99999999999999999999",
        "/staff/admin/audit?actor=%00%27%22&subject=%25_",
        "/staff/admin/audit.csv?until=9999-12-31",
    ):
        assert amy.get(path).status_code in (200, 422), path
    for path, data in (
        ("/staff/admin/staff/99999/role", {"role": "admin"}),
        ("/staff/admin/staff/1/role", {"role": "owner"}),
        ("/staff/admin/staff/99999999999999999999/access", {"active": "1"}),
        ("/staff/admin/api-keys/0/revoke", {}),
    ):
        answer = amy.post(path, data={"csrf": token, **data}, follow_redirects=False)
        assert answer.status_code in (303, 422), (path, answer.status_code)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_migration_makes_the_oldest_active_account_admin(database: str, tmp_path: Path) -> None:
    """An install from before roles: its first active account becomes admin, the rest staff,
    and issued keys keep every scope."""
    if database == "sqlite":
        url, cleanup = f"sqlite:///{tmp_path}/old.db", lambda: None
    else:
        url, cleanup = _fresh_postgres("notifier_roles_migration")
    engine = db.make_engine(url)
    try:
        config = Config()
        config.set_main_option("script_location", str(db.MIGRATIONS_DIR))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0006")
            connection.execute(
                text(
                    "INSERT INTO staff_users (email, password_hash, active, created_at,"
                    " failed_logins) VALUES ('gone@x.example', 'h', false, '2025-01-01', 0),"
                    " ('first@x.example', 'h', true, '2025-02-01', 0),"
                    " ('second@x.example', 'h', true, '2025-03-01', 0)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO api_keys (name, key_sha256, created_at)"
                    " VALUES ('old', 'abc', '2025-01-01')"
                )
            )
        db.upgrade(engine)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT email, role FROM staff_users"))
            roles = dict(rows.tuples().all())
            scopes = connection.execute(text("SELECT scopes FROM api_keys")).scalar_one()
        assert roles == {
            "gone@x.example": "staff", "first@x.example": "admin", "second@x.example": "staff"
        }  # fmt: skip
        assert scopes == "events,read,remind"
    finally:
        engine.dispose()
        cleanup()


def _fresh_postgres(name: str) -> tuple[str, Callable[[], None]]:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin.url.set(database=name).render_as_string(hide_password=False), drop


def test_the_migration_makes_the_tables_the_models_describe(rt: Runtime) -> None:
    mine = {"staff_users", "api_keys", "audit_log"}
    with rt.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in diffs if mine & set(re.findall(r"\w+", str(d)))] == []
