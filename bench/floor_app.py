"""The floor for ``bench/query.py`` and ``bench/hot_paths.py``: the least a hand-written
endpoint would do for the same answer.

- ``POST /query`` with ``{"sql": "... $1 ...", "args": [...]}``: the statement with
  ``pool.fetch``, no authentication (``bench/query.py``).
- The same three requests ``bench/hot_paths.py`` measures, each authenticated minimally:
  the bearer credential is checked the way Tablehouse checks it, with one asyncpg query
  (an access token: PyJWT with the same algorithm, key, audience, issuer and required
  claims, then its session and user in one query; an API key ``th_<prefix>_<secret>``: the
  key and its user in one query), and the answer is refused unless the session or key is
  current, the token hash matches and the account is active.

  - ``GET /users/me``: the caller's user row;
  - ``GET /rows/{id}``: one row of the table given by ``--rows-table``, by its integer key
    (a hand-written app knows its tables: no catalogue lookup);
  - ``POST /auth/query``: as ``POST /query``, for a caller whose API key has the query scope.

Rows and documents are encoded with orjson (the encoder Tablehouse uses). An asyncpg pool of
10 connections (Tablehouse's default ``DB_POOL_SIZE``). No transaction, no limits, no
logging: it is a floor, not a product. Served like ``tablehouse serve``: uvicorn, one worker,
uvloop + httptools, access log off.

Run: ``JWT_SECRET=... python bench/floor_app.py --dsn postgresql://postgres@127.0.0.1:5432/db
--port 8001 [--rows-table ds_...]``
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import jwt
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel

POOL_SIZE = 10  # Tablehouse's DB_POOL_SIZE default
# Tablehouse's defaults (JWT_ALGORITHM, JWT_AUDIENCE, JWT_ISSUER) and its required claims.
JWT_ALGORITHM = "HS256"
JWT_AUDIENCE = "tablehouse-api"
JWT_ISSUER = "tablehouse"
REQUIRED_CLAIMS = ["sub", "sid", "jti", "iat", "exp", "type", "aud", "iss"]

USER_COLUMNS = (
    "u.id, u.email, u.full_name, u.role, u.is_active, u.is_verified, u.created_at, u.last_login_at"
)
SESSION_SQL = f"""
SELECT {USER_COLUMNS}, s.access_token_hash, s.is_revoked, s.expires_at, s.idle_expires_at
FROM auth_sessions s JOIN users u ON u.id = s.user_id
WHERE s.id = $1 AND s.user_id = $2
"""
API_KEY_SQL = f"""
SELECT {USER_COLUMNS}, k.key_hash, k.scopes, k.revoked_at, k.expires_at
FROM api_keys k JOIN users u ON u.id = k.user_id
WHERE k.prefix = $1
"""
USER_FIELDS = (
    "id",
    "email",
    "full_name",
    "role",
    "is_active",
    "is_verified",
    "created_at",
    "last_login_at",
)


def _refused(status: int, detail: bytes) -> Response:
    return Response(b'{"detail":"' + detail + b'"}', status, media_type="application/json")


class FloorQuery(BaseModel):
    sql: str
    args: list[Any] = []


def _json(document: Any) -> Response:
    # default=str: asyncpg's own UUID type, which orjson does not know.
    return Response(orjson.dumps(document, default=str), media_type="application/json")


def _result(rows: list[asyncpg.Record]) -> Response:
    return _json(
        {
            "columns": list(rows[0].keys()) if rows else [],
            "rows": [tuple(row) for row in rows],
        }
    )


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _from_access_token(pool: asyncpg.Pool, key: str, token: str) -> asyncpg.Record | None:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[JWT_ALGORITHM],
            audience=JWT_AUDIENCE,
            issuer=JWT_ISSUER,
            options={"require": REQUIRED_CLAIMS},
        )
        if claims["type"] != "access":
            return None
        session_id, user_id = uuid.UUID(claims["sid"]), uuid.UUID(claims["sub"])
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    row = await pool.fetchrow(SESSION_SQL, session_id, user_id)
    now = datetime.now(UTC)
    if (
        row is None
        or not hmac.compare_digest(row["access_token_hash"], _digest(token))
        or row["is_revoked"]
        or row["expires_at"] <= now
        or row["idle_expires_at"] <= now
    ):
        return None
    return row


async def _from_api_key(pool: asyncpg.Pool, key: str, scope: str) -> asyncpg.Record | None:
    prefix, _, secret = key.removeprefix("th_").partition("_")
    if not prefix or not secret:
        return None
    row = await pool.fetchrow(API_KEY_SQL, prefix)
    if (
        row is None
        or not hmac.compare_digest(row["key_hash"], _digest(key))
        or row["revoked_at"] is not None
        or (row["expires_at"] is not None and row["expires_at"] <= datetime.now(UTC))
        or scope not in orjson.loads(row["scopes"])
    ):
        return None
    return row


Authenticator = Callable[[Request, str], Any]


def _authenticator(pool: Callable[[], asyncpg.Pool], jwt_key: str) -> Authenticator:
    async def caller(request: Request, scope: str) -> asyncpg.Record | Response:
        """The caller's user (and session or key) row, or the response refusing them."""
        kind, _, token = request.headers.get("authorization", "").partition(" ")
        if kind.lower() != "bearer" or not token:
            return _refused(401, b"not authenticated")
        if token.startswith("th_"):
            row = await _from_api_key(pool(), token, scope)
        else:
            row = await _from_access_token(pool(), jwt_key, token)
        if row is None:
            return _refused(401, b"not authenticated")
        if not row["is_active"]:
            return _refused(403, b"account deactivated")
        return row

    return caller


def create_app(
    dsn: str, pool_size: int = POOL_SIZE, *, jwt_key: str = "", rows_table: str | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)
    authenticated = _authenticator(lambda: app.state.pool, jwt_key)
    row_sql = f'SELECT * FROM "{rows_table}" WHERE id = $1' if rows_table else ""

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/query")
    async def query(body: FloorQuery, request: Request) -> Response:
        return _result(await request.app.state.pool.fetch(body.sql, *body.args))

    @app.get("/users/me")
    async def me(request: Request) -> Response:
        caller = await authenticated(request, "read")
        if isinstance(caller, Response):
            return caller
        return _json({name: caller[name] for name in USER_FIELDS})

    @app.get("/rows/{key}")
    async def row(key: int, request: Request) -> Response:
        caller = await authenticated(request, "read")
        if isinstance(caller, Response):
            return caller
        found = await request.app.state.pool.fetchrow(row_sql, key)
        return _refused(404, b"no such row") if found is None else _json(dict(found))

    @app.post("/auth/query")
    async def authenticated_query(body: FloorQuery, request: Request) -> Response:
        caller = await authenticated(request, "query")
        if isinstance(caller, Response):
            return caller
        return _result(await request.app.state.pool.fetch(body.sql, *body.args))

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="asyncpg DSN of the database to query")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--pool-size", type=int, default=POOL_SIZE)
    parser.add_argument("--rows-table", help="the table GET /rows/{id} reads")
    arguments = parser.parse_args()
    app = create_app(
        arguments.dsn,
        arguments.pool_size,
        jwt_key=os.environ.get("JWT_SECRET", ""),
        rows_table=arguments.rows_table,
    )
    uvicorn.run(
        app,
        host=arguments.host,
        port=arguments.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
