"""Everything a process needs, built once from the environment: config, database, channels."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from . import db
from .channels import Channel
from .channels.email import SMTPEmail
from .channels.outbox import Outbox
from .clinic import Clinic, ConfigError, load_clinic
from .ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from .render import Renderer
from .settings import Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    clinic: Clinic
    engine: Engine
    sessions: sessionmaker[Session]
    renderer: Renderer
    sms: Channel
    email: Channel
    clock: Callable[[], datetime] = field(default=utc_now)

    @classmethod
    def build(cls, settings: Settings, clock: Callable[[], datetime] = utc_now) -> Runtime:
        """Raises clinic.ConfigError or ValueError, naming what is wrong, before anything runs."""
        clinic = load_clinic(settings.config_path)
        if not settings.secret_key:
            # Enough for one short-lived process (demo, a CLI command); the long-running
            # processes are given a lasting key by the CLI.
            settings = replace(settings, secret_key=secrets.token_urlsafe(32))
        engine = db.make_engine(settings.database_url)
        return cls(
            settings=settings,
            clinic=clinic,
            engine=engine,
            sessions=db.make_sessionmaker(engine),
            renderer=Renderer(settings.templates_dir),
            sms=sms_channel(settings, clinic),
            email=email_channel(settings),
            clock=clock,
        )

    def prepare_database(self) -> None:
        """Migrates the schema and mirrors the clinic's locations and treatments into it."""
        db.upgrade(self.engine)
        with self.sessions() as session:
            db.sync_clinic(session, self.clinic)


def settings_from_env() -> Settings:
    """The environment's settings; a bad value is a ConfigError, as a bad clinic file is."""
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def from_env(settings: Settings | None = None) -> Runtime:
    """The runtime of a command, from `settings` or the environment; raises ConfigError."""
    try:
        return Runtime.build(settings or settings_from_env())
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def distributed_settings(command: str, needs_broker: bool = True) -> Settings:
    """The settings of a process that works beside others: they must share a broker and a key,
    or what one process signs (a link in an email) another would refuse."""
    settings = settings_from_env()
    if needs_broker and not settings.broker_url:
        raise ConfigError(
            f"`notifier {command}` needs NOTIFIER_BROKER_URL (or run `notifier serve`)"
        )
    if not settings.secret_key:
        raise ConfigError(
            f"`notifier {command}` needs NOTIFIER_SECRET_KEY, the same in every process"
            " (`notifier serve` keeps one in notifier.secret for you)"
        )
    return settings


def sms_channel(settings: Settings, clinic: Clinic) -> Channel:
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        return Outbox(settings.outbox_path, "sms")
    if not (settings.twilio_from_number or settings.twilio_messaging_service_sid):
        raise ValueError("set TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID to send SMS")
    from .channels.sms.twilio import TwilioSMS  # the twilio SDK and requests: only when sending SMS

    return TwilioSMS(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        from_number=settings.twilio_from_number,
        messaging_service_sid=settings.twilio_messaging_service_sid,
        status_callback=f"{settings.public_url}/twilio/status",
        base_url=settings.twilio_api_base_url,
        timeout=settings.provider_timeout,
        limiter=rate_limiter(settings),
        per_second=clinic.sms_per_second,
        connections=settings.send_concurrency,
    )


def rate_limiter(settings: Settings) -> RateLimiter:
    # Shared through Redis when the broker is Redis, so that all workers count together.
    if settings.broker_url and settings.broker_url.startswith(("redis://", "rediss://")):
        return RedisRateLimiter(settings.broker_url)
    return LocalRateLimiter()


def email_channel(settings: Settings) -> Channel:
    if not settings.smtp_url:
        return Outbox(settings.outbox_path, "email")
    if not settings.mail_from:
        raise ValueError("set NOTIFIER_MAIL_FROM to send email")
    return SMTPEmail(settings.smtp_url, settings.mail_from, timeout=settings.provider_timeout)
