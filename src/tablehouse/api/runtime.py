"""What the lifespan builds and every request may use."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
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


# eq=False: a runtime is itself, not its fields' values; hashed by identity and weakly
# referenced, so what is derived from it can be kept per runtime (query.dependencies).
@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
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
    events: EventSink  # the analytics writer, or a logger with ANALYTICS_ENABLED=false
    # The analytics of this process (its store and readiness report); None when
    # ANALYTICS_ENABLED=false.
    analytics: EventPipeline | None
    # Made with the app, before the lifespan: the middleware counts requests from the
    # first one, even when start-up fails.
    metrics: Metrics

    @property
    def idle_timeout(self) -> timedelta:
        """How long a login session may go unused (SESSION_IDLE_TIMEOUT_MINUTES)."""
        return timedelta(minutes=self.settings.session_idle_timeout_minutes)
