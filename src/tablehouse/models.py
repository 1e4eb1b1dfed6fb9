"""Imports every domain's ORM models so ``Base.metadata`` knows all tables (Alembic needs this).

A new domain adds its ``models`` module here.
"""

from tablehouse.auth import models as auth_models
from tablehouse.core.models import Base

__all__ = ["Base", "auth_models"]
