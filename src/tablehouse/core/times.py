"""The process's clock, and date-times a user sends: every one is compared and stored in UTC.

Python's date-times end at years 1 and 9999, and so does the UTC equivalent of each one: a
valid ISO 8601 value such as ``9999-12-31T23:00:00-05:00`` is in year 10000 in UTC and has
no equivalent. Every date-time from a client is brought to UTC here, so each place that
takes one refuses such a value the same way (a ValueError naming it) rather than failing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

# What time it is, as an aware UTC date-time. The app reads it from its Runtime (``Now``,
# authentication), so a test can hand ``create_app`` a clock it moves instead of sleeping.
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; one without an offset is taken as UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{moment.isoformat()} is outside the range of date-times: in UTC it falls "
            "before 0001-01-01 or after 9999-12-31"
        ) from None
