"""Parameter types shared by routers."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from tablehouse.core.times import as_utc

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_8601_only(value: object) -> object:
    # Pydantic would also read a bare number as Unix seconds; the API documents ISO 8601 only.
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("expected an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
    return value


# Always in UTC (without an offset, taken as UTC); a value with no UTC equivalent is a 422.
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_8601_only), AfterValidator(as_utc)]
