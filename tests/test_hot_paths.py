"""What the hot paths' shortcuts must not change (issue 8, performance).

- The pool pings a connection only after it has been idle for a while, yet a pool whose
  backends were all terminated still serves the next requests, and a connection that dies
  unnoticed fails its request with 503, not 500.
- The caller is read with one Core query per request: a logout or a password change still
  refuses the very next request, and API key scopes and dataset limits still hold.
- A row by key is read through a kept layout with the catalog checked in the same statement:
  a dataset changed, dropped or made anew is never read through its old layout.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from tablehouse.config import Settings
from tablehouse.core import database
from tablehouse.core.database import create_engine
from tablehouse.datasets.models import Dataset
from tablehouse.rows.convert.layout import Layout
from tests.support.accounts import PASSWORD, bearer, login, signed_up
from tests.support.databases import POSTGRES_ADMIN_URL
from tests.support.row_tables import SCHEMAS, define, insert_rows
from tests.support.serving import serving
from tests.support.tcp_proxy import TcpProxy

ME = "/api/v1/users/me"
SONGS: dict[str, Any] = {
    "name": "songs",
    "fields": [
        {"name": "id", "type": "integer", "primary_key": True},
        {"name": "title", "type": "string"},
    ],
}


def _count_pings(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return pings


async def _use(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.exec_driver_sql("SELECT 1")


# --- the pool's ping ------------------------------------------------------------------------


async def test_a_connection_back_moments_ago_is_not_pinged(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(settings.model_copy(update={"db_pool_size": 1}))
    try:
        pings = _count_pings(engine, monkeypatch)
        for _ in range(5):
            await _use(engine)
    finally:
        await engine.dispose()
    assert pings == []


async def test_a_connection_idle_past_the_threshold_is_pinged(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.05)
    engine = create_engine(settings.model_copy(update={"db_pool_size": 1}))
    try:
        pings = _count_pings(engine, monkeypatch)
        await _use(engine)
        await asyncio.sleep(0.1)
        await _use(engine)
    finally:
        await engine.dispose()
    assert pings == [1]


async def test_no_ping_at_all_when_pre_ping_is_off(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)
    off = settings.model_copy(update={"db_pool_size": 1, "db_pool_pre_ping": False})
    engine = create_engine(off)
    try:
        pings = _count_pings(engine, monkeypatch)
        await _use(engine)
        await _use(engine)
    finally:
        await engine.dispose()
    assert pings == []


async def _terminate_backends(database_name: str) -> int:
    admin = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql")
    connection = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        ended = await connection.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database_name,
        )
        return len(ended)
    finally:
        await connection.close()


@pytest.mark.backends("postgresql")
@pytest.mark.parametrize("idle_seconds", [0.2, 1.5], ids=["within-threshold", "past-threshold"])
async def test_a_pool_whose_backends_were_all_terminated_serves_the_next_20_requests(
    settings: Settings, backend: str, idle_seconds: float
) -> None:
    pooled = settings.model_copy(update={"db_pool_size": 4, "db_max_overflow": 0})
    async with serving(pooled) as (_, client):
        headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
        await define(client, headers, SONGS)
        # Fill both pools with several connections each.
        await asyncio.gather(*(client.get(ME, headers=headers) for _ in range(8)))
        name = make_url(settings.database_url).database
        assert name is not None
        assert await _terminate_backends(name) > 0
        await asyncio.sleep(idle_seconds)
        answers = [await client.get(ME, headers=headers) for _ in range(10)]
        answers += [await client.get(f"{SCHEMAS}/songs", headers=headers) for _ in range(5)]
        answers += [
            await client.post("/api/v1/query", json={"sql": "SELECT 1 AS one"}, headers=headers)
            for _ in range(5)
        ]
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers]


@pytest.mark.backends("postgresql")
async def test_a_connection_that_dies_unnoticed_fails_its_request_with_503_then_heals(
    settings: Settings, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither check at checkout sees it: not idle long, and not yet known to be closed.
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 3600.0)
    monkeypatch.setattr(database, "_closed_by_server", lambda _connection: False)
    url = make_url(settings.database_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
        one = {"database_url": proxied, "db_pool_size": 1, "db_max_overflow": 0}
        async with serving(settings.model_copy(update=one)) as (_, client):
            headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
            assert (await client.get(ME, headers=headers)).status_code == 200
            proxy.cut()
            proxy.restore()
            failed = await client.get(ME, headers=headers)
            after = [await client.get(ME, headers=headers) for _ in range(5)]

    assert failed.status_code == 503, failed.text
    assert failed.json()["code"] == "database_unavailable"
    assert failed.headers["retry-after"] == "1"
    assert [a.status_code for a in after] == [200] * 5


# --- the caller, read on every request --------------------------------------------------------


async def test_logout_refuses_the_very_next_request(client: httpx.AsyncClient) -> None:
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    assert (await client.get(ME, headers=headers)).status_code == 200
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    after = await client.get(ME, headers=headers)
    assert after.status_code == 401
    assert after.json()["code"] == "session_revoked"


async def test_a_password_change_refuses_other_sessions_next_request(
    client: httpx.AsyncClient,
) -> None:
    first = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    second = bearer((await login(client, "ada@example.com"))["access_token"])
    assert (await client.get(ME, headers=second)).status_code == 200
    changed = await client.patch(
        ME,
        json={"password": "a brand new password", "current_password": PASSWORD},
        headers=first,
    )
    assert changed.status_code == 200, changed.text
    refused = await client.get(ME, headers=second)
    assert refused.status_code == 401
    assert refused.json()["code"] == "session_revoked"
    assert (await client.get(ME, headers=first)).status_code == 200


async def test_me_shows_the_account_as_stored(client: httpx.AsyncClient) -> None:
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    renamed = await client.patch(ME, json={"full_name": "Ada L."}, headers=headers)
    assert renamed.status_code == 200, renamed.text
    me = (await client.get(ME, headers=headers)).json()
    assert me["email"] == "ada@example.com"
    assert me["full_name"] == "Ada L."
    assert me["role"] == "user"
    assert me["is_active"] is True


async def test_api_key_scopes_and_datasets_still_hold_on_the_hot_paths(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    await define(client, headers, SONGS)
    await define(client, headers, {**SONGS, "name": "albums"})
    await insert_rows(settings, "songs", [{"id": 1, "title": "So What"}])
    await insert_rows(settings, "albums", [{"id": 1, "title": "Kind of Blue"}])

    async def key(**body: Any) -> dict[str, str]:
        made = await client.post(
            "/api/v1/auth/api-keys", json={"name": "k", **body}, headers=headers
        )
        assert made.status_code == 201, made.text
        return bearer(made.json()["key"])

    query_only = await key(scopes=["query"])
    songs_only = await key(scopes=["read", "query"], datasets=["songs"])
    no_scope = await client.get(f"{SCHEMAS}/songs/rows/1", headers=query_only)
    assert no_scope.status_code == 403
    assert no_scope.json()["code"] == "scope_required"
    assert (await client.get(f"{SCHEMAS}/songs/rows/1", headers=songs_only)).status_code == 200
    # Read once with the session (the layout is kept), then refused with the limited key.
    assert (await client.get(f"{SCHEMAS}/albums/rows/1", headers=headers)).status_code == 200
    hidden = await client.get(f"{SCHEMAS}/albums/rows/1", headers=songs_only)
    assert hidden.status_code == 404
    queried = await client.post(
        "/api/v1/query", json={"sql": "SELECT * FROM albums"}, headers=songs_only
    )
    assert queried.status_code == 404
    me = await client.get(ME, headers=query_only)
    assert me.status_code == 200  # any key may ask who it belongs to


# --- a row by key, through a kept layout -------------------------------------------------------


async def _row(client: httpx.AsyncClient, headers: dict[str, str], key: int) -> httpx.Response:
    return await client.get(f"{SCHEMAS}/songs/rows/{key}", headers=headers)


async def test_a_row_read_again_after_its_dataset_changed_shows_the_change(
    settings: Settings,
) -> None:
    # Two apps on one database: the second changes the dataset behind the first one's back.
    async with serving(settings) as (_, reader), serving(settings) as (_, writer):
        headers = bearer((await signed_up(reader, "ada@example.com"))["access_token"])
        await define(reader, headers, SONGS)
        await insert_rows(settings, "songs", [{"id": 1, "title": "So What"}])
        assert (await _row(reader, headers, 1)).json() == {"id": 1, "title": "So What"}

        added = await writer.patch(
            f"{SCHEMAS}/songs",
            json={"changes": [{"op": "add_field", "field": {"name": "plays", "type": "integer"}}]},
            headers=headers,
        )
        assert added.status_code == 200, added.text
        assert (await _row(reader, headers, 1)).json() == {
            "id": 1,
            "title": "So What",
            "plays": None,
        }

        dropped = await writer.delete(f"{SCHEMAS}/songs", headers=headers)
        assert dropped.status_code == 204
        gone = await _row(reader, headers, 1)
        assert gone.status_code == 404
        assert gone.json()["code"] == "schema_not_found"

        await define(writer, headers, SONGS)
        await insert_rows(settings, "songs", [{"id": 1, "title": "Blue in Green"}])
        assert (await _row(reader, headers, 1)).json() == {"id": 1, "title": "Blue in Green"}
        missing = await _row(reader, headers, 2)
        assert missing.status_code == 404
        assert missing.json()["code"] == "row_not_found"


async def test_a_bad_key_is_explained_by_the_current_layout(client: httpx.AsyncClient) -> None:
    headers = bearer((await signed_up(client, "ada@example.com"))["access_token"])
    await define(client, headers, SONGS)
    assert (await _row(client, headers, 7)).status_code == 404  # the layout is now kept
    refused = await client.get(f"{SCHEMAS}/songs/rows/seven", headers=headers)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["path", "key", "id"]


def _schema(table_name: str, fields: list[dict[str, Any]]) -> Dataset:
    return Dataset(name="s", table_name=table_name, fields=fields, version=1)


def _key_field(kind: str) -> list[dict[str, Any]]:
    return [{"name": "id", "type": kind, "primary_key": True}]


def test_a_layout_is_shared_only_by_the_same_table_and_fields() -> None:
    fields = _key_field
    first = Layout.of(_schema("ds_a", fields("integer")))
    assert Layout.of(_schema("ds_a", fields("integer"))) is first
    assert Layout.of(_schema("ds_a", fields("string"))) is not first
    assert Layout.of(_schema("ds_b", fields("integer"))) is not first
