"""The floor for ``bench/query.py``: the least a hand-written SQL endpoint would do.

One FastAPI route, ``POST /query`` with ``{"sql": "... $1 ...", "args": [...]}``, that runs
the statement with ``pool.fetch`` on an asyncpg pool of 10 connections (Tablehouse's default
``DB_POOL_SIZE``) and answers ``{"columns": [...], "rows": [[...], ...]}`` encoded with
orjson (the encoder Tablehouse uses). No authentication, no checks, no transaction, no
limits: it is a floor, not a product. Served like ``tablehouse serve``: uvicorn, one worker,
uvloop + httptools, access log off.

Run: ``python bench/floor_app.py --dsn postgresql://postgres@127.0.0.1:5432/db --port 8001``
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel

POOL_SIZE = 10  # Tablehouse's DB_POOL_SIZE default


class FloorQuery(BaseModel):
    sql: str
    args: list[Any] = []


def create_app(dsn: str, pool_size: int = POOL_SIZE) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/query")
    async def query(body: FloorQuery, request: Request) -> Response:
        rows = await request.app.state.pool.fetch(body.sql, *body.args)
        document = {
            "columns": list(rows[0].keys()) if rows else [],
            "rows": [tuple(row) for row in rows],
        }
        return Response(orjson.dumps(document), media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="asyncpg DSN of the database to query")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--pool-size", type=int, default=POOL_SIZE)
    arguments = parser.parse_args()
    uvicorn.run(
        create_app(arguments.dsn, arguments.pool_size),
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
