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
    """The dashboard's routes, for callers that still mount `router(rt)` under /staff. The routes
    read the runtime from the app that `create_app` built, so `rt` is not used: mount
    `notifier.staff.routes.router` itself."""
    # Imported on call: the CLI imports this package too, and needs no FastAPI.
    from .routes import router as routes

    return routes
