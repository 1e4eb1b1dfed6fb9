"""What the lifespan builds and every request may use."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import timedelta

from anyio import CapacityLimiter
from sqlalchemy.ext.asyncio import AsyncEngine

from tablehouse.config import Settings
from tablehouse.core.cache import SizedCache
from tablehouse.core.database import Backend, ReadSessionFactory, WriteSessionFactory
from tablehouse.core.events import EventPipeline, EventSink
from tablehouse.core.limits import ConcurrencyLimit
from tablehouse.core.mail import Mailer
from tablehouse.core.metrics import Metrics
from tablehouse.core.security.passwords import Passwords
from tablehouse.core.security.tokens import TokenCodec
from tablehouse.core.times import Clock


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    clock: Clock  # what time it is for requests (Now) and authentication
    backend: Backend  # of every engine below: a replica runs the same database
    engine: AsyncEngine
    session_factory: WriteSessionFactory
    read_session_factory: ReadSessionFactory
    tokens: TokenCodec
    passwords: Passwords
    mailer: Mailer
    # Units of work that only read have their own pool; users' SQL runs on
    # it too, or on a read replica's engine when DATABASE_READ_URL is set.
    read_engine: AsyncEngine
    query_engine: AsyncEngine
    query_slots: ConcurrencyLimit
    ingest_slots: ConcurrencyLimit  # per user: a load waits for its body with a slot held
    # Checked statements (the query domain's; see query.guard.statements) and the threads that
    # check them.
    query_statements: SizedCache[Hashable, object]
    query_check_threads: CapacityLimiter
    # Where and how users' SQL runs (query.service.QueryTarget, made from the fields above by
    # query.service.target_for), made once at start-up: nothing in it depends on the request.
    # Typed loosely as query_statements is: the api layer cannot name the query domain's types.
    query_target: object
    events: EventSink  # the analytics writer, or a logger with ANALYTICS_ENABLED=false
    # The analytics of this process (its store and readiness report); None when
    # ANALYTICS_ENABLED=false.
    analytics: EventPipeline | None
    # Made with the app, before the lifespan: the middleware counts requests from the
    # first one, even when start-up fails.
    metrics: Metrics
    # How long a login session may go unused (SESSION_IDLE_TIMEOUT_MINUTES): made from the
    # settings once, not on every authenticated request.
    idle_timeout: timedelta = field(init=False)

    def __post_init__(self) -> None:
        idle = timedelta(minutes=self.settings.session_idle_timeout_minutes)
        object.__setattr__(self, "idle_timeout", idle)  # frozen: set once, here
