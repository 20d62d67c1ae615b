"""The clinic's own configuration (TOML): locations, treatments and the timing policy."""

from __future__ import annotations

import tomllib
from collections import Counter
from datetime import time
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .integrations.config import IntegrationsConfig

ChannelName = Literal["sms", "email"]


class ConfigError(Exception):
    """The clinic config is unusable; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Practice(_Strict):
    name: str = Field(min_length=1)


class QuietHours(_Strict):
    start: time = time(21, 0)
    end: time = time(8, 0)


class ReminderRule(_Strict):
    hours_before: float = Field(gt=0)
    channels: tuple[ChannelName, ...] = ("sms",)
    ask_confirm: bool = False


class Waitlist(_Strict):
    # Offers go a few at a time, the next few a little later if nobody took the slot.
    per_wave: int = Field(default=3, ge=1, le=50)
    wave_minutes: int = Field(default=10, ge=1, le=24 * 60)
    # No claim within this many minutes of the slot: the clinic must book and the patient come.
    close_minutes_before: int = Field(default=120, ge=0, le=7 * 24 * 60)


class Policy(_Strict):
    quiet_hours: QuietHours = QuietHours()
    # "We missed you": this many hours after a visit is marked no-show (quiet hours hold it
    # further); 0 turns it off.
    no_show_recovery_hours: float = Field(default=2.0, ge=0, le=24 * 14)
    waitlist: Waitlist = Waitlist()
    reminders: tuple[ReminderRule, ...] = (
        ReminderRule(hours_before=48, channels=("sms", "email"), ask_confirm=True),
        ReminderRule(hours_before=2, channels=("sms",)),
    )
    # Rebook nudges go by the first channel the patient has consented to.
    rebook_channels: tuple[ChannelName, ...] = ("sms", "email")
    # Twilio answers STOP and START itself unless its opt-out handling is switched off for
    # the account; then set this to false and we answer them.
    twilio_answers_keywords: bool = True
    # Twilio's stock HELP answer names neither the practice nor its phone, so we answer HELP;
    # set this to true when the Messaging Service's Advanced Opt-Out has its own HELP text.
    twilio_answers_help: bool = False
    # What carriers let one sender number send: a long code 1, toll-free 3, a short code 100.
    sms_per_second: float = Field(default=1.0, gt=0)
    # The message budget (docs/compliance.md): a reminder a day or more ahead is skipped when
    # the confirmation went out less than this many hours before it.
    confirmation_gap_hours: float = Field(default=24, ge=0)
    # A text that is not urgent never follows another to the same patient within this many
    # minutes; 0 turns the rule off.
    sms_spacing_minutes: int = Field(default=120, ge=0)
    # At most one marketing message (the rebook nudge) per patient in this many days.
    marketing_every_days: int = Field(default=7, ge=0)
    # One patient's visits on the same day share their reminders, which name every time.
    merge_same_day_reminders: bool = True
    # Message bodies and patients' reply texts are blanked after this many days (rows and
    # counts stay); `notifier purge` and the clock's daily job do it.
    retention_days: int = Field(default=400, ge=30)


class Location(_Strict):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    phone: str
    address: str
    time_zone: str
    sender: str | None = None
    sms_per_second: float | None = Field(default=None, gt=0)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("phone", "sender")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            number = phonenumbers.parse(value, "US")
        except phonenumbers.NumberParseException as exc:
            raise ValueError(f"unparseable phone number {value!r}: {exc}") from None
        if not phonenumbers.is_valid_number(number):
            raise ValueError(f"invalid phone number {value!r}")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def for_templates(self) -> dict[str, str]:
        """What a message says of the location."""
        return {
            "id": self.id,
            "name": self.name,
            "phone": self.display_phone,
            "address": self.address,
        }

    @cached_property  # formatting a number costs more than rendering the message around it
    def display_phone(self) -> str:
        number = phonenumbers.parse(self.phone)
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


class Treatment(_Strict):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    patient_wording: dict[str, str]
    aftercare_delay_minutes: int = Field(default=60, ge=0)
    avoid_hours: int = Field(default=4, ge=0)
    rebook_after_days: int | None = Field(default=None, gt=0)
    # Minimum necessary: messages and calendar files say where and when, not what, unless
    # the clinic opts in for this treatment (its patient_wording is then shown).
    name_in_messages: bool = False

    @field_validator("patient_wording")
    @classmethod
    def _has_english(cls, value: dict[str, str]) -> dict[str, str]:
        if "en" not in value:
            raise ValueError("needs at least an 'en' wording")
        return value

    def wording(self, language: str) -> str:
        return self.patient_wording.get(language, self.patient_wording["en"])


class Clinic(_Strict):
    practice: Practice
    policy: Policy = Policy()
    locations: tuple[Location, ...] = Field(min_length=1)
    treatments: tuple[Treatment, ...] = Field(min_length=1)
    integrations: IntegrationsConfig = IntegrationsConfig()

    @model_validator(mode="after")
    def _unique_ids(self) -> Clinic:
        for key, items in (("locations", self.locations), ("treatments", self.treatments)):
            counted = Counter(item.id for item in items)
            duplicates = sorted(i for i, n in counted.items() if n > 1)
            if duplicates:
                raise ValueError(f"{key}: duplicate id {duplicates[0]!r}")
        return self

    def location(self, location_id: str) -> Location | None:
        return self._locations_by_id.get(location_id)

    # A network of clinics has thousands of locations, each with its sender: looked up by key.
    @cached_property
    def _locations_by_id(self) -> dict[str, Location]:
        return {loc.id: loc for loc in self.locations}

    @cached_property
    def _rate_by_sender(self) -> dict[str, float]:
        rates: dict[str, float] = {}
        for loc in self.locations:
            if loc.sender is not None and loc.sms_per_second and loc.sender not in rates:
                rates[loc.sender] = loc.sms_per_second
        return rates

    def treatment(self, treatment_id: str) -> Treatment | None:
        return next((t for t in self.treatments if t.id == treatment_id), None)

    def sms_per_second(self, sender: str) -> float:
        """The send rate allowed for one sender number (or messaging service)."""
        return self._rate_by_sender.get(sender, self.policy.sms_per_second)


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def load_clinic(path: Path) -> Clinic:
    """Reads and validates the clinic file; any problem raises ConfigError naming the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"clinic config {path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"clinic config {path}: not valid TOML: {exc}") from None
    try:
        return Clinic.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{_key_path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
        ]
        raise ConfigError(f"clinic config {path}: " + "; ".join(problems)) from None
