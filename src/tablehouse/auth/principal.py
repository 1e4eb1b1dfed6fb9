"""Who is making a request: a user, and what the credential they sent lets them reach.

Every domain that acts for a caller takes a ``Principal``; the ``auth`` dependencies make one
per request (``auth.dependencies.current_principal``), the CLI through ``auth.service``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from tablehouse.auth.models import Role, Scope
from tablehouse.auth.schemas import UserRead

ALL_SCOPES = frozenset(Scope)


@dataclass(frozen=True, slots=True)
class Principal:
    user: UserRead
    scopes: frozenset[Scope]
    session_id: uuid.UUID | None = None  # a login session; None for an API key or the CLI
    api_key_id: uuid.UUID | None = None
    datasets: frozenset[str] | None = None  # None: all of the user's datasets

    @property
    def is_admin(self) -> bool:
        return self.user.role == Role.ADMIN

    def may_use_dataset(self, name: str) -> bool:
        return self.datasets is None or name in self.datasets
