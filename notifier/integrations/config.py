"""The clinic config's `[integrations.*]` sections: how outside codes map to the clinic's ids.

Imports nothing of notifier, so `clinic.py` can embed these models without a cycle.
"""

from __future__ import annotations

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConsentDefaults(_Strict):
    """What a patient from this door is taken to have agreed to: the booking systems here carry
    no consent flags. Reminders about the patient's own visit are treatment communications a
    patient expects from the number or address they gave the practice; marketing (the rebook
    nudge) needs an explicit yes, so it stays off unless the clinic has collected one."""

    sms: bool = True
    email: bool = True
    marketing: bool = False


class FhirConfig(_Strict):
    # FHIR Location id ("manhasset" in "Location/manhasset"), or a Location identifier as
    # "system|value" or bare value → clinic location id.
    locations: dict[str, str] = {}
    # serviceType / appointmentType coding as "system|code" or bare code → clinic treatment id.
    treatments: dict[str, str] = {}
    # For a practice whose FHIR server leaves these out; unset means "422 when missing".
    default_location: str | None = None
    default_treatment: str | None = None
    consent: ConsentDefaults = ConsentDefaults()
    # Region for phone numbers written without a country code, e.g. "(718) 555-0134".
    default_region: str = "US"

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r} (an ISO 3166 code like 'US')")
        return value.upper()


class CalcomEventType(_Strict):
    treatment: str = Field(min_length=1)
    # Unset: the booking's own `location` text decides, through CalcomConfig.locations.
    location: str | None = None


class CalcomConfig(_Strict):
    # Event type slug ("botox-cosmetic") or numeric id ("1234") → what the booking is for.
    event_types: dict[str, CalcomEventType] = {}
    # A booking's `location` text (the address chosen on the booking page) → clinic location id.
    locations: dict[str, str] = {}
    consent: ConsentDefaults = ConsentDefaults()


class IntegrationsConfig(_Strict):
    fhir: FhirConfig = FhirConfig()
    calcom: CalcomConfig = CalcomConfig()
