"""Imports every domain's ORM models so ``Base.metadata`` knows all tables (Alembic needs this).

A new domain adds its ``models`` module here.
"""

from tablehouse.auth import models as auth_models
from tablehouse.core.models import Base
from tablehouse.datasets import models as dataset_models

__all__ = ["Base", "auth_models", "dataset_models"]
