"""Email over SMTP: multipart text + HTML, with attachments."""

from __future__ import annotations

import smtplib
from collections.abc import Collection
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import parse_qs, unquote, urlsplit

from . import Message, SendError, SendOutcome, Unpaced


class SMTPEmail(Unpaced):
    def __init__(self, url: str, mail_from: str, *, timeout: float = 15.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(
                f"NOTIFIER_SMTP_URL must look like smtp://user:pass@host:port, not {url!r}"
            )
        self.ssl = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.ssl else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.starttls = parse_qs(parts.query).get("starttls", ["0"])[0] in ("1", "true", "yes")
        self.mail_from = mail_from
        self.timeout = timeout

    def send(self, message: Message) -> str:
        mail = build(message, self.mail_from)
        try:
            connection = self.connect()
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError("transient", f"could not reach the SMTP server: {exc}") from exc
        try:
            with connection:
                connection.send_message(mail)
        except smtplib.SMTPResponseException as exc:
            raise _by_code(exc.smtp_code, exc.smtp_error) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise _by_code(code, text) from exc
        except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
            # The server may have taken DATA before the line broke. The Message-ID is derived
            # from the notification, so a mail store that de-duplicates on it keeps one copy.
            raise SendError("unknown", f"SMTP connection lost mid-send: {exc}") from exc
        return str(mail["Message-ID"]).strip("<>")

    def find(self, message: Message, known: Collection[str]) -> str | None:
        # SMTP cannot be asked what it took. Sending again is the lesser harm: the copy carries
        # the same Message-ID, which mail stores that de-duplicate recognise.
        return None

    def connect(self) -> smtplib.SMTP:
        if self.ssl:
            connection: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout)
        else:
            connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.starttls:
            connection.starttls()
        if self.username:
            connection.login(self.username, self.password or "")
        return connection


def build(message: Message, mail_from: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = mail_from
    mail["To"] = message.to
    mail["Subject"] = message.subject or ""
    mail["Date"] = formatdate(localtime=False)
    domain = mail_from.rpartition("@")[2].strip(">") or "notifier.invalid"
    mail["Message-ID"] = f"<notification-{message.notification_id}@{domain}>"
    for name, value in message.headers:
        mail[name] = value
    mail.set_content(message.text)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    for item in message.attachments:
        kind, *parameters = (part.strip() for part in item.content_type.split(";"))
        maintype, _, subtype = kind.partition("/")
        params = dict(p.partition("=")[::2] for p in parameters)  # method=CANCEL, charset=…
        mail.add_attachment(
            item.data, maintype=maintype, subtype=subtype, filename=item.filename, params=params
        )
    return mail


def _by_code(code: int, text: bytes | str) -> SendError:
    detail = text.decode(errors="replace") if isinstance(text, bytes) else text
    outcome: SendOutcome = "permanent" if 500 <= code < 600 else "transient"
    return SendError(outcome, f"SMTP {code}: {detail}", str(code))
