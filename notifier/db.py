"""Engine, sessions and schema migrations."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from . import models
from .clinic import Clinic

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DB_POOL_SIZE = 10  # connections each process keeps open (PostgreSQL)


def make_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # hide_parameters: a failing statement's message (logged, or shown in a traceback) would
    # otherwise carry its parameters, the patient's name and number among them.
    if not url.startswith("sqlite"):
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=DB_POOL_SIZE,
            max_overflow=20,
            hide_parameters=True,
        )
    engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
    if engine.url.database and engine.url.database != ":memory:":
        private_file(Path(engine.url.database))
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def private_file(path: Path) -> None:
    """Creates the file readable by its owner only, if it is not there yet. The database holds
    patients' names, numbers and messages; SQLite gives its -wal and -shm files the database
    file's mode."""
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web, the clock and the worker threads of `notifier serve` share one file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def upgrade(engine: Engine) -> None:
    """Creates or migrates the schema to the newest revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def sync_clinic(session: Session, clinic: Clinic) -> None:
    """Mirrors the config's locations and treatments into their tables."""
    for loc in clinic.locations:
        session.merge(models.LocationRow(id=loc.id, name=loc.name, time_zone=loc.time_zone))
    for treatment in clinic.treatments:
        session.merge(models.Treatment(id=treatment.id, name=treatment.name))
    session.commit()
