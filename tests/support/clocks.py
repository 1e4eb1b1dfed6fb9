"""A clock a test moves by hand, for ``create_app(settings, clock=...)``: time-dependent rules
(grace windows, expiries) are tested by moving it, not by sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class MovingClock:
    """Tells the real time plus however far the test has moved it on."""

    def __init__(self) -> None:
        self._ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self._ahead

    def advance(self, seconds: float) -> None:
        self._ahead += timedelta(seconds=seconds)
