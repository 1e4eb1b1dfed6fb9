"""The PostgreSQL role users' SQL runs as: it may read dataset tables and nothing else.

The role is cluster-wide and may serve several databases, so downgrading only takes back
what this database granted; it does not drop the role. SQLite has no roles (queries there
are confined by an authorizer instead), so this revision does nothing on SQLite.

Revision ID: 20261122_0004
Revises: 20261122_0003
Create Date: 2026-11-22 08:00:00+00:00
"""

import re
from collections.abc import Sequence

from alembic import context, op

revision: str = "20261122_0004"
down_revision: str | None = "20261122_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_ROLE = "tablehouse_query"


def _role() -> str:
    role = str(context.config.attributes.get("query_database_role", DEFAULT_ROLE))
    # Settings validate it; checked again because it is written into SQL below.
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ValueError(f"invalid query role name {role!r}")
    return role


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    role = _role()
    op.execute(f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        BEGIN
            CREATE ROLE {role} NOLOGIN NOINHERIT;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'cannot create the query role "{role}": % may not create roles',
                current_user
            USING HINT = 'ask a database administrator to run: '
                || 'CREATE ROLE {role} NOLOGIN; GRANT {role} TO ' || current_user
                || '; then run the migration again';
        END;
    END IF;
    -- The application's login switches to the role for each query (SET LOCAL ROLE).
    IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
        EXECUTE format('GRANT {role} TO %I', current_user);
    END IF;
    -- Everyone may use the default "public" schema already; another schema needs a grant,
    -- which only its owner can give.
    BEGIN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO {role}', current_schema());
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE WARNING 'could not grant USAGE on schema % to {role}', current_schema();
    END;
END $$;
""")
    op.execute(f"""
DO $$
DECLARE dataset_table text;
BEGIN
    FOR dataset_table IN SELECT table_name FROM schemas LOOP
        EXECUTE format('GRANT SELECT ON TABLE %I TO {role}', dataset_table);
    END LOOP;
END $$;
""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    role = _role()
    op.execute(f"""
DO $$
DECLARE dataset_table text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        RETURN;
    END IF;
    FOR dataset_table IN SELECT table_name FROM schemas LOOP
        EXECUTE format('REVOKE SELECT ON TABLE %I FROM {role}', dataset_table);
    END LOOP;
    EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM {role}', current_schema());
END $$;
""")
