"""Dependencies shared by every router: the runtime, and the request's unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, cast

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from tablehouse.api.runtime import Runtime
from tablehouse.core.database import ReadSession, WriteSession, read_uow, uow


# Dependencies are coroutines even when they do not await: FastAPI runs a plain function in
# a thread pool, and that hop costs more than the call itself.
async def get_runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

# Whether each endpoint's route asks for a WriteSession, worked out at its first request
# (keyed by the handler: FastAPI's routes are not hashable).
_ENDPOINT_WRITES: dict[Callable[..., Any], bool] = {}


async def get_request_session(request: Request) -> AsyncIterator[ReadSession]:
    """The request's one unit of work, shared by everything that resolves a session (the
    caller's authentication and the handler): one that may write if the route declares a
    ``WriteSessionDep`` anywhere in its dependencies, else one that only reads."""
    # The runtime straight from the app, not as a dependency: one fewer to resolve per request.
    runtime = cast(Runtime, request.app.state.runtime)
    if _writes(request):
        async with uow(runtime.session_factory) as session:
            yield session
        return
    async with read_uow(runtime.read_session_factory) as session:
        yield session


# scope="function": the unit of work ends when the handler returns, before the response is
# sent, so a failed commit becomes an error response instead of a 2xx for lost data.
RequestSession = Annotated[ReadSession, Depends(get_request_session, scope="function")]


async def get_write_session(session: RequestSession) -> WriteSession:
    if not isinstance(session, WriteSession):  # only if _writes could not see the route
        raise RuntimeError("WriteSessionDep outside a route's own dependencies")
    return session


# The request's session itself, not a dependency that returns it: one fewer to resolve per
# request (FastAPI serves both from one cache entry, keyed by the function and its scope).
ReadSessionDep = RequestSession
WriteSessionDep = Annotated[WriteSession, Depends(get_write_session)]


def _writes(request: Request) -> bool:
    """Whether the route declares a ``WriteSessionDep``: in its handler's parameters, its
    decorator's ``dependencies`` or theirs (not in an ``include_router``'s, which FastAPI does
    not give the route)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return False
    writes = _ENDPOINT_WRITES.get(route.endpoint)
    if writes is None:
        writes = _ENDPOINT_WRITES[route.endpoint] = _asks_for(route.dependant, get_write_session)
    return writes


def _asks_for(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return dependant.call is call or any(_asks_for(sub, call) for sub in dependant.dependencies)
