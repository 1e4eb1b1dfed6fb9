"""Dependencies shared by every router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.api.runtime import Runtime
from tablehouse.core.database import uow


def get_runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with uow(runtime.session_factory) as session:
        yield session


# scope="function": the unit of work ends when the handler returns, before the response is
# sent, so a failed commit becomes an error response instead of a 2xx for lost data.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
