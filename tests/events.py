"""Booking events shaped like the contract's example, for the tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

_counter = iter(range(1, 1_000_000))


def event(
    type_: str,
    start: datetime,
    *,
    occurred_at: datetime,
    minutes: int = 30,
    end: datetime | None = None,
    appointment_id: str = "apt-1",
    patient_id: str = "pat-1",
    location: str = "forest-hills",
    treatment: str = "botox-cosmetic",
    phone: str | None = "+1 718 555 0134",
    email: str | None = "ana@example.org",
    language: str = "en",
    consent: dict[str, bool] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": event_id or f"evt-{next(_counter)}",
        "type": f"appointment.{type_}",
        "occurred_at": occurred_at.isoformat(),
        "appointment": {
            "id": appointment_id,
            "location": location,
            "treatment": treatment,
            "provider": "Dr. E. Jacob Simhaee",
            "start": start.isoformat(),
            "end": (end or start + timedelta(minutes=minutes)).isoformat(),
        },
        "patient": {
            "id": patient_id,
            "first_name": "Ana",
            "last_name": "Ruiz",
            "phone": phone,
            "email": email,
            "language": language,
            "consent": consent or {"sms": True, "email": True, "marketing": False},
        },
    }
