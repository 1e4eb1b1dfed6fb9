"""Failed-login throttling over a sliding window, per account and per client address.

Counts live in the database, so every app process sharing it enforces the same limits.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.auth import repository
from tablehouse.auth.models import LoginFailure
from tablehouse.config import Settings
from tablehouse.errors import Throttled


def _subjects(settings: Settings, email: str, address: str | None) -> list[tuple[str, int]]:
    subjects = [(f"account:{email}", settings.login_max_failures_per_account)]
    if address:
        subjects.append((f"address:{address}", settings.login_max_failures_per_address))
    return subjects


async def ensure_allowed(
    session: AsyncSession, settings: Settings, *, email: str, address: str | None, now: datetime
) -> None:
    """Refuse the attempt, whatever the password, while either count is at its limit."""
    window = timedelta(seconds=settings.login_failure_window_seconds)
    for subject, limit in _subjects(settings, email, address):
        count, oldest = await repository.count_failures(session, subject, now - window)
        if count >= limit and oldest is not None:
            retry_after = math.ceil((oldest + window - now).total_seconds())
            raise Throttled(
                "too many failed logins; try again later",
                retry_after_seconds=max(retry_after, 1),
                code="login_throttled",
            )


async def record_failure(
    session: AsyncSession, settings: Settings, *, email: str, address: str | None, now: datetime
) -> None:
    await repository.sweep_failures(
        session, before=now - timedelta(seconds=settings.login_failure_window_seconds)
    )
    for subject, _limit in _subjects(settings, email, address):
        session.add(LoginFailure(subject=subject, failed_at=now))
    await session.flush()


async def forget_account_failures(session: AsyncSession, email: str) -> None:
    await repository.clear_failures(session, f"account:{email}")
