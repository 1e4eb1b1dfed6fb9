"""Failed-login throttling over a sliding window, per account and per client address.

Counts live in the database, so every app process sharing it enforces the same limits.
The rule, and why it gives an attacker no faster guessing (docs/security.md, "Login throttling"):

- An email at its limit is refused, whatever the password and wherever it comes from.
- An address at its limit refuses, without checking the password, every email that failed
  from it in the window. Any other email still has its password checked, one at a time: the
  first at once, then after ``LOGIN_ADDRESS_BACKOFF_SECONDS``, doubled with each further
  failure. A developer's right password gets in after a local fuzz run; spraying one guess
  per account from that address gains a few guesses per window, not a way around the limit.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from tablehouse.auth import repository
from tablehouse.config import Settings
from tablehouse.core.database import ReadSession, WriteSession
from tablehouse.errors import Throttled

Limit = Literal["account", "address"]

# Past this many doublings the back-off is longer than any window anyway.
_MAX_DOUBLINGS = 32


class LoginThrottled(Throttled):
    """429 that says which limit was hit, so a client knows whose failures to look at."""

    code = "login_throttled"

    def __init__(self, *, limit: Limit, retry_after_seconds: int, address: str | None) -> None:
        super().__init__(
            _explain(limit, retry_after_seconds, address), retry_after_seconds=retry_after_seconds
        )
        self.limit: Limit = limit

    @property
    def extra(self) -> dict[str, object]:
        return {"limit": self.limit, "retry_after": self.retry_after_seconds}


def _explain(limit: Limit, seconds: int, address: str | None) -> str:
    if limit == "account":
        return (
            f"too many failed logins for this email address; try again in {seconds} s, "
            "or reset the password"
        )
    return (
        f"too many failed logins from your address ({address}), for this or other accounts; "
        f"try again in {seconds} s, or ask an administrator to run "
        f"`tablehouse users unlock --address {address}`"
    )


# No account's email is longer (email_validator's bound), and no address as uvicorn reports
# it; anything longer is stored as its digest, so a subject always fits its column.
_LONGEST_EMAIL = 254
_LONGEST_ADDRESS = 64


def _bounded(value: str, longest: int) -> str:
    if len(value) <= longest:
        return value
    return f"sha256-{hashlib.sha256(value.encode()).hexdigest()}"


def _email_key(email: str) -> str:
    return _bounded(email, _LONGEST_EMAIL)


def _address_key(address: str) -> str:
    return _bounded(address, _LONGEST_ADDRESS)


def account_subject(email: str) -> str:
    return f"account:{_email_key(email)}"


def address_subject(address: str) -> str:
    return f"address:{_address_key(address)}"


def pair_subject(email: str, address: str) -> str:
    # Neither an address nor an email that passed the login schema holds a space.
    return f"pair:{_address_key(address)} {_email_key(email)}"


@dataclass(frozen=True, slots=True)
class _Window:
    session: ReadSession
    now: datetime
    length: timedelta

    async def count(self, subject: str) -> tuple[int, datetime | None]:
        return await repository.count_failures(self.session, subject, self.now - self.length)

    async def seconds_until_under(self, subject: str, count: int, limit: int) -> int:
        """Until enough of ``count`` failures have left the window to be under ``limit``."""
        leaving = await repository.failure_time(
            self.session, subject, self.now - self.length, count - limit
        )
        return self.seconds_until((leaving or self.now) + self.length)

    def seconds_until(self, moment: datetime) -> int:
        return max(math.ceil((moment - self.now).total_seconds()), 1)


async def ensure_allowed(
    session: ReadSession, settings: Settings, *, email: str, address: str | None, now: datetime
) -> None:
    """Refuse the attempt before its password is checked, if the rule above says so."""
    window = _Window(session, now, timedelta(seconds=settings.login_failure_window_seconds))
    subject, limit = account_subject(email), settings.login_max_failures_per_account
    count, _newest = await window.count(subject)
    if count >= limit:
        retry_after = await window.seconds_until_under(subject, count, limit)
        raise LoginThrottled(limit="account", retry_after_seconds=retry_after, address=None)
    if address:
        await _ensure_address_allows(window, settings, email=email, address=address)


async def _ensure_address_allows(
    window: _Window, settings: Settings, *, email: str, address: str
) -> None:
    subject, limit = address_subject(address), settings.login_max_failures_per_address
    count, newest = await window.count(subject)
    if count < limit or newest is None:
        return
    _pair_count, failed_here = await window.count(pair_subject(email, address))
    if failed_here is not None:
        # Unchecked: this email was already guessed at from here.
        wait_for = failed_here + window.length
    else:
        wait_for = newest + _backoff(settings, failures_past_limit=count - limit)
        if wait_for <= window.now:
            return
    retry_after = min(
        window.seconds_until(wait_for), await window.seconds_until_under(subject, count, limit)
    )
    raise LoginThrottled(limit="address", retry_after_seconds=retry_after, address=address)


def _backoff(settings: Settings, *, failures_past_limit: int) -> timedelta:
    if failures_past_limit == 0:
        return timedelta(0)
    doublings = min(failures_past_limit - 1, _MAX_DOUBLINGS)
    seconds = settings.login_address_backoff_seconds * 2**doublings
    return timedelta(seconds=min(seconds, settings.login_failure_window_seconds))


async def record_failure(
    session: WriteSession, settings: Settings, *, email: str, address: str | None, now: datetime
) -> None:
    await repository.sweep_failures(
        session, before=now - timedelta(seconds=settings.login_failure_window_seconds)
    )
    subjects = [account_subject(email)]
    if address:
        subjects += [address_subject(address), pair_subject(email, address)]
    await repository.add_failures(session, subjects, now=now)


async def forget_login_failures(session: WriteSession, email: str, address: str | None) -> None:
    """After a successful login: the account's count, and its failures from this address."""
    await forget_account_failures(session, email)
    if address:
        await repository.clear_failures(session, pair_subject(email, address))


async def forget_account_failures(session: WriteSession, email: str) -> None:
    await repository.clear_failures(session, account_subject(email))


@dataclass(frozen=True, slots=True)
class Counted:
    """What ``tablehouse users throttled`` shows for one email or address."""

    limit: Limit
    key: str
    failures: int
    max_failures: int
    # Until the count is under the limit again; None while it is.
    over_limit_seconds: int | None


async def counted(
    session: ReadSession, settings: Settings, *, now: datetime, limit: int
) -> list[Counted]:
    """Emails and addresses with failures in the window, most first."""
    window = _Window(session, now, timedelta(seconds=settings.login_failure_window_seconds))
    max_failures: dict[str, int] = {
        "account": settings.login_max_failures_per_account,
        "address": settings.login_max_failures_per_address,
    }
    # Pairs are left out: what they refuse shows in their address's line.
    subjects = await repository.failures_by_subject(
        session, now - window.length, limit=limit, leave_out="pair:"
    )
    found = []
    for subject, failures in subjects:
        kind, _, key = subject.partition(":")
        most = max_failures[kind]
        over_for = None
        if failures >= most:
            over_for = await window.seconds_until_under(subject, failures, most)
        found.append(Counted(_as_limit(kind), key, failures, most, over_for))
    return found


def _as_limit(kind: str) -> Limit:
    return "account" if kind == "account" else "address"


async def unlock_account(session: WriteSession, email: str) -> int:
    """Forget the failures of an email, from every address; how many there were."""
    await repository.clear_failures_like(session, prefix="pair:", suffix=f" {_email_key(email)}")
    return await repository.clear_failures(session, account_subject(email))


async def unlock_address(session: WriteSession, address: str) -> int:
    """Forget the failures from an address, for every email; how many there were."""
    await repository.clear_failures_like(session, prefix=f"pair:{_address_key(address)} ")
    return await repository.clear_failures(session, address_subject(address))
