"""The process environment (the configuration contract of docs/configuration.md), read once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR.parent / "templates"
# Inside the package (package data), so that a non-editable install serves it too.
EXAMPLE_CLINIC = PACKAGE_DIR / "example_clinic.toml"


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///notifier.db"
    broker_url: str | None = None
    config_path: Path = EXAMPLE_CLINIC
    public_url: str = "http://127.0.0.1:8000"
    api_keys: tuple[str, ...] = ()
    secret_key: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base_url: str = "https://api.twilio.com"
    smtp_url: str | None = None
    mail_from: str | None = None
    calcom_secret: str | None = None
    # The clinic's FHIR server, read back when a notification names an Appointment without it.
    fhir_base_url: str | None = None
    fhir_token: str | None = None
    # Where a confirmation is written back (the patient's participation `accepted`); unset: never.
    fhir_writeback_url: str | None = None
    outbox_path: Path = Path("outbox.txt")
    templates_dir: Path = TEMPLATES_DIR
    # Every provider call gives up after this; a send held longer than twice it is presumed lost.
    provider_timeout: float = 10.0
    # First step of the exponential backoff after a transient provider error.
    retry_base_seconds: float = 30.0
    # A claimed row whose task never ran (broker restarted, say) is claimed again after this.
    queue_lease_seconds: float = 60.0
    # Provider calls one worker process has in flight at once: a call mostly waits on the network.
    send_concurrency: int = 16
    # The Celery queue: several deployments (or test runs) can share one broker, each on its own.
    queue: str = "notifier"
    # One JSON object a log line (NOTIFIER_LOG_FORMAT=json), for log shippers.
    json_logs: bool = False
    # Requests a second each API key may make (with a burst of two seconds' worth); past it, 429.
    api_rate: float = 50.0
    # A staff session ends after this long without a page view (HIPAA automatic logoff) ...
    staff_idle_minutes: float = 15.0
    # ... and this long after sign-in, whatever happens.
    staff_session_hours: float = 12.0
    # Every staff account signs in with a second factor (NOTIFIER_STAFF_2FA=required).
    staff_two_factor: bool = False
    # Password hashes one web process computes at once (each takes 64 MiB while it runs).
    login_concurrency: int = 2

    @property
    def sending_lease_seconds(self) -> float:
        return 2 * self.provider_timeout + 10

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)

        def get(name: str) -> str | None:
            return env.get(name) or None

        _public_url_is_set(env)
        keys = tuple(k.strip() for k in (get("NOTIFIER_API_KEYS") or "").split(",") if k.strip())
        return cls(
            database_url=get("NOTIFIER_DATABASE_URL") or cls.database_url,
            broker_url=get("NOTIFIER_BROKER_URL"),
            config_path=Path(get("NOTIFIER_CONFIG") or EXAMPLE_CLINIC),
            public_url=(get("NOTIFIER_PUBLIC_URL") or cls.public_url).rstrip("/"),
            api_keys=keys,
            secret_key=get("NOTIFIER_SECRET_KEY"),
            twilio_account_sid=get("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=get("TWILIO_AUTH_TOKEN"),
            twilio_from_number=get("TWILIO_FROM_NUMBER"),
            twilio_messaging_service_sid=get("TWILIO_MESSAGING_SERVICE_SID"),
            twilio_api_base_url=get("TWILIO_API_BASE_URL") or cls.twilio_api_base_url,
            smtp_url=get("NOTIFIER_SMTP_URL"),
            mail_from=get("NOTIFIER_MAIL_FROM"),
            calcom_secret=get("NOTIFIER_CALCOM_SECRET"),
            fhir_base_url=(get("NOTIFIER_FHIR_BASE_URL") or "").rstrip("/") or None,
            fhir_token=get("NOTIFIER_FHIR_TOKEN"),
            fhir_writeback_url=(get("NOTIFIER_FHIR_WRITEBACK_URL") or "").rstrip("/") or None,
            outbox_path=Path(get("NOTIFIER_OUTBOX") or cls.outbox_path),
            templates_dir=Path(get("NOTIFIER_TEMPLATES") or TEMPLATES_DIR),
            provider_timeout=_seconds(env, "NOTIFIER_PROVIDER_TIMEOUT", cls.provider_timeout),
            retry_base_seconds=_seconds(env, "NOTIFIER_RETRY_BASE_SECONDS", cls.retry_base_seconds),
            queue_lease_seconds=_seconds(
                env, "NOTIFIER_QUEUE_LEASE_SECONDS", cls.queue_lease_seconds
            ),
            send_concurrency=_count(env, "NOTIFIER_SEND_CONCURRENCY", cls.send_concurrency),
            queue=get("NOTIFIER_QUEUE") or cls.queue,
            json_logs=get("NOTIFIER_LOG_FORMAT") == "json",
            api_rate=_rate(env, "NOTIFIER_API_RATE", cls.api_rate),
            staff_idle_minutes=_seconds(
                env, "NOTIFIER_STAFF_IDLE_MINUTES", cls.staff_idle_minutes, "minutes"
            ),
            staff_session_hours=_seconds(
                env, "NOTIFIER_STAFF_SESSION_HOURS", cls.staff_session_hours, "hours"
            ),
            staff_two_factor=_two_factor(get("NOTIFIER_STAFF_2FA")),
            login_concurrency=_count(env, "NOTIFIER_LOGIN_CONCURRENCY", cls.login_concurrency),
        )


def _public_url_is_set(env: dict[str, str]) -> None:
    """Outside dry-run, messages carry links and Twilio calls back: to the default loopback
    address they would reach no one, so a missing NOTIFIER_PUBLIC_URL stops the start."""
    sends = (env.get("TWILIO_ACCOUNT_SID") and env.get("TWILIO_AUTH_TOKEN")) or env.get(
        "NOTIFIER_SMTP_URL"
    )
    if sends and not env.get("NOTIFIER_PUBLIC_URL"):
        raise ValueError(
            "NOTIFIER_PUBLIC_URL is not set: with Twilio or SMTP configured, set it to the"
            " https:// address patients and Twilio reach this service at"
        )


def _two_factor(given: str | None) -> bool:
    if given in (None, "off"):
        return False
    if given == "required":
        return True
    raise ValueError(f"NOTIFIER_STAFF_2FA must be required or off, not {given!r}")


def _seconds(env: dict[str, str], name: str, default: float, unit: str = "seconds") -> float:
    given = env.get(name)
    if not given:
        return default
    try:
        value = float(given)
    except ValueError:
        raise ValueError(f"{name} must be a number of {unit}, not {given!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be more than 0 {unit}, not {given!r}")
    return value


def _count(env: dict[str, str], name: str, default: int) -> int:
    given = env.get(name)
    if not given:
        return default
    if not given.isdigit() or int(given) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {given!r}")
    return int(given)


def _rate(env: dict[str, str], name: str, default: float) -> float:
    given = env.get(name)
    if not given:
        return default
    try:
        value = float(given)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a number of requests a second above 0, not {given!r}")
    return value
