"""Staff surfaces: the dashboard under /staff, staff accounts, and the staff CLI commands.

Importing the package registers the staff tables (models) with the shared metadata.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .models import StaffSession, StaffUser

if TYPE_CHECKING:
    from fastapi import APIRouter

    from ..runtime import Runtime

__all__ = ["StaffSession", "StaffUser", "router"]


def router(rt: Runtime) -> APIRouter:
    """The dashboard's routes, for web.py to mount under /staff."""
    # Imported on call: the CLI imports this package too, and needs no FastAPI.
    from .routes import router as routes

    return routes(rt)
