"""A query role per owner: each owner's SQL runs as a role granted only that owner's tables.

Until now every dataset table was granted to the shared query role, so the database let any
statement read any owner's tables and only the guard kept owners apart. Each owner with
datasets now gets a role of its own, ``<query role, first 30 characters>_<owner id in hex>``
(NOLOGIN NOINHERIT, granted to this login, which switches to it per query), is granted
SELECT on that owner's tables, and the shared role is granted none.

Making roles needs CREATEROLE, from here on too (an owner's first dataset makes its role), so
the upgrade refuses a login without it. Downgrading grants the tables to the shared role
again and drops the owner roles, keeping any that another database still grants something
(one holding a copy of the same account). SQLite has no roles: nothing happens there.

Revision ID: 20261207_0005
Revises: 20261122_0004
Create Date: 2026-12-07 17:20:00+00:00
"""

import re
from collections.abc import Sequence

from alembic import context, op

revision: str = "20261207_0005"
down_revision: str | None = "20261122_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_ROLE = "tablehouse_query"
BASE_LENGTH = 30


def _role() -> str:
    role = str(context.config.attributes.get("query_database_role", DEFAULT_ROLE))
    # Settings validate it; checked again because it is written into SQL below.
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ValueError(f"invalid query role name {role!r}")
    return role


def _owner_role_sql(owner: str) -> str:
    """SQL for the role name of the owner id ``owner`` (an expression of type uuid)."""
    return f"'{_role()[:BASE_LENGTH]}_' || replace({owner}::text, '-', '')"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    shared = _role()
    op.execute(f"""
DO $$
DECLARE
    owner_role text;
    can_set text := CASE WHEN current_setting('server_version_num')::int >= 160000
        THEN 'SET' ELSE 'MEMBER' END;
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_roles WHERE rolname = current_user AND (rolcreaterole OR rolsuper)
    ) THEN
        RAISE EXCEPTION 'cannot create the owners'' query roles: % may not create roles',
            current_user
        USING HINT = 'ask a database administrator to run: ALTER ROLE '
            || quote_ident(current_user) || ' CREATEROLE; then run the migration again';
    END IF;
    FOR owner_role IN SELECT DISTINCT {_owner_role_sql("owner_id")} FROM schemas LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = owner_role) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', owner_role);
        END IF;
        -- The login switches to it per query: PostgreSQL 16 asks for the SET option.
        IF NOT pg_has_role(current_user, owner_role, can_set) THEN
            EXECUTE format('GRANT %I TO %I', owner_role, current_user);
        END IF;
        -- Everyone may use "public" already: one ACL entry per owner only where needed.
        IF NOT has_schema_privilege(owner_role, current_schema(), 'USAGE') THEN
            BEGIN
                EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), owner_role);
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE WARNING 'could not grant USAGE on schema % to %',
                    current_schema(), owner_role;
            END;
        END IF;
    END LOOP;
END $$;
""")
    op.execute(f"""
DO $$
DECLARE
    dataset_table text;
    owner_role text;
BEGIN
    FOR dataset_table, owner_role IN
        SELECT table_name, {_owner_role_sql("owner_id")} FROM schemas
    LOOP
        EXECUTE format('GRANT SELECT ON TABLE %I TO %I', dataset_table, owner_role);
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{shared}') THEN
            EXECUTE format('REVOKE SELECT ON TABLE %I FROM {shared}', dataset_table);
        END IF;
    END LOOP;
END $$;
""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    shared = _role()
    op.execute(f"""
DO $$
DECLARE
    dataset_table text;
    owner_role text;
    target text;
BEGIN
    FOR dataset_table IN SELECT table_name FROM schemas LOOP
        EXECUTE format('GRANT SELECT ON TABLE %I TO {shared}', dataset_table);
    END LOOP;
    FOR owner_role IN
        SELECT r.rolname FROM pg_roles r
        WHERE r.rolname IN (SELECT {_owner_role_sql("id")} FROM users)
    LOOP
        FOR target IN
            SELECT c.oid::regclass::text FROM pg_class c, aclexplode(c.relacl) AS acl
            WHERE acl.grantee = owner_role::regrole
        LOOP
            EXECUTE format('REVOKE ALL ON TABLE %s FROM %I', target, owner_role);
        END LOOP;
        FOR target IN
            SELECT n.nspname FROM pg_namespace n, aclexplode(n.nspacl) AS acl
            WHERE acl.grantee = owner_role::regrole
        LOOP
            EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %I', target, owner_role);
        END LOOP;
        BEGIN
            EXECUTE format('DROP ROLE %I', owner_role);
        EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN
            RAISE WARNING 'kept role %: %', owner_role, SQLERRM;
        END;
    END LOOP;
END $$;
""")
