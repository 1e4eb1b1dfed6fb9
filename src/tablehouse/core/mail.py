"""Outgoing mail: through SMTP when a server is configured, else into a folder on disk.

Without ``SMTP_HOST`` nothing is lost: every message (verification and reset links
included) lands as an ``.eml`` file in ``DATA_DIR/outbox``, and outside production its
body is also logged so a developer can follow the link straight from the console.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol

import aiosmtplib
import structlog

from tablehouse.config import Settings

log = structlog.get_logger(__name__)

OUTBOX_DIR = "outbox"


@dataclass(frozen=True, slots=True)
class MailMessage:
    to: str
    subject: str
    body: str


class MailDeliveryError(Exception):
    """The message could not be handed to the mail server."""


class Mailer(Protocol):
    async def send(self, message: MailMessage) -> None: ...


def _compose(message: MailMessage, sender: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.to
    email["Subject"] = message.subject
    email["Date"] = formatdate(usegmt=True)
    # make_msgid() would otherwise ask socket.getfqdn(), a DNS lookup that can stall.
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    email["Message-ID"] = make_msgid(domain=domain)
    # 8bit keeps long lines (links, tokens) readable instead of quoted-printable soft breaks.
    email.set_content(message.body, cte="8bit")
    return email


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_host:
            raise ValueError("SmtpMailer needs SMTP_HOST")
        self._settings = settings
        self._host = settings.smtp_host

    async def send(self, message: MailMessage) -> None:
        settings = self._settings
        secret = settings.smtp_password
        password = secret.get_secret_value() if secret is not None else None
        try:
            await aiosmtplib.send(
                _compose(message, settings.mail_from),
                hostname=self._host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=password,
                use_tls=settings.smtp_security == "tls",
                # Explicit False: left as None, aiosmtplib upgrades whenever the server offers it.
                start_tls=settings.smtp_security == "starttls",
                timeout=settings.smtp_timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            if password:
                # The server's reply is echoed here and we cannot vouch for what it contains.
                detail = detail.replace(password, "***")
            # Not chained: a logged traceback would print the unredacted original.
            raise MailDeliveryError(
                f"could not send mail through {self._host}:{settings.smtp_port}: {detail}"
            ) from None
        log.info("mail.sent", to=message.to, subject=message.subject)


class OutboxMailer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._outbox = settings.resolved_data_dir / OUTBOX_DIR

    async def send(self, message: MailMessage) -> None:
        email = _compose(message, self._settings.mail_from)
        path = await asyncio.to_thread(self._write, email.as_bytes())
        # Messages carry one-time tokens: production logs are shipped and kept, so never there.
        extra = {"body": message.body} if self._settings.environment != "production" else {}
        log.info("mail.outbox", to=message.to, subject=message.subject, path=str(path), **extra)

    def _write(self, content: bytes) -> Path:
        self._outbox.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self._outbox / f"{stamp}-{uuid.uuid4().hex}.eml"
        # Created private from the start, not chmod-ed afterwards, so no reader gets a window.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        return path


def create_mailer(settings: Settings) -> Mailer:
    # An empty SMTP_HOST= in a .env file means "no SMTP", like leaving it out.
    if settings.smtp_host:
        return SmtpMailer(settings)
    return OutboxMailer(settings)
