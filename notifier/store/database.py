"""The database as a whole, not one subject: whether it answers."""

from __future__ import annotations

from sqlalchemy import Connection, text


def ping(connection: Connection) -> None:
    """Raises if the database does not answer."""
    connection.execute(text("SELECT 1"))
