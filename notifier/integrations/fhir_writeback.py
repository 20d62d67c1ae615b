"""Writes back to the clinic's FHIR server: a visit the patient confirmed becomes, on its
Appointment, the patient participant's `status: accepted`.

The write is a conditional update (`PUT` with `If-Match` on the version just read), so an edit
made on the server in between is never overwritten: a 412 means "read again", and the change
is made on the new version. Writing `accepted` where it already is changes nothing, so a
delivery that goes twice (at least once) writes once.
"""

from __future__ import annotations

from typing import Any

from .fhir_client import FhirReadError, FhirServer, VersionConflict

ACCEPTED = "accepted"
# Reads and writes one delivery attempt makes before it gives the conflict to the retries.
CONFLICT_TRIES = 3


class WriteBackError(Exception):
    """The write did not happen; `permanent` when trying again cannot help."""

    def __init__(self, reason: str, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


def accept(server: FhirServer, appointment_id: str) -> bool:
    """Marks the patient's participation in Appointment/appointment_id accepted; False when it
    already was (nothing written)."""
    for _ in range(CONFLICT_TRIES):
        try:
            appointment, version = server.read_versioned("Appointment", appointment_id)
            if not _mark_accepted(appointment):
                return False
            server.update(appointment, version)
            return True
        except VersionConflict:
            continue
        except FhirReadError as exc:
            raise WriteBackError(exc.reason, permanent=exc.status == 422) from None
    raise WriteBackError(f"Appointment/{appointment_id} kept changing under us", False)


def _mark_accepted(appointment: dict[str, Any]) -> bool:
    """Sets the patient participants' status; True if one changed."""
    changed = False
    patients = [p for p in appointment.get("participant") or [] if _is_patient(p)]
    if not patients:
        reason = f"Appointment/{appointment.get('id')} names no patient participant"
        raise WriteBackError(reason, permanent=True)
    for participant in patients:
        if participant.get("status") != ACCEPTED:
            participant["status"] = ACCEPTED
            changed = True
    return changed


def _is_patient(participant: Any) -> bool:
    if not isinstance(participant, dict):
        return False
    actor = participant.get("actor")
    reference = actor.get("reference", "") if isinstance(actor, dict) else ""
    return isinstance(reference, str) and (
        reference.startswith("Patient/") or "/Patient/" in reference or reference.startswith("#")
    )
