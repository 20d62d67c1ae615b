"""Staff surfaces: the dashboard under /staff, staff accounts, and the staff CLI commands.

Importing the package registers the staff tables (models) with the shared metadata.
"""

from __future__ import annotations

from .models import StaffSession, StaffUser

__all__ = ["StaffSession", "StaffUser"]
