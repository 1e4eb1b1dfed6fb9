"""Sending account mail after the response, so its timing reveals nothing and never fails it."""

from __future__ import annotations

import structlog
from fastapi import BackgroundTasks

from tablehouse.core.mailer import MailDeliveryError, Mailer, MailMessage

log = structlog.get_logger(__name__)


async def _deliver(mailer: Mailer, message: MailMessage) -> None:
    try:
        await mailer.send(message)
    except MailDeliveryError as exc:
        log.error("mail.failed", to=message.to, subject=message.subject, error=str(exc))


def send_later(tasks: BackgroundTasks, mailer: Mailer, message: MailMessage | None) -> None:
    if message is not None:
        tasks.add_task(_deliver, mailer, message)
