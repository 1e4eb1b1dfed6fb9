"""Primitives every domain may use: database, models, logging. Never imports a domain."""
