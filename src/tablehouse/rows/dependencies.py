"""What the rows endpoints resolve before their handler runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from tablehouse.api.dependencies import RuntimeDep
from tablehouse.auth.dependencies import WriteAccessBeforeBody
from tablehouse.auth.principal import Principal
from tablehouse.core.database import read_uow
from tablehouse.datasets import service as datasets
from tablehouse.datasets.dependencies import OwnerQuery


async def loader(
    name: str, caller: WriteAccessBeforeBody, runtime: RuntimeDep, owner: OwnerQuery = None
) -> Principal:
    """The caller, once it may load rows into ``name``: a 404, like a 401 or 403, comes
    before the body is read, from a unit of work that has ended by then."""
    async with read_uow(runtime.read_session_factory) as session:
        await datasets.load(session, caller=caller, name=name, owner_id=owner)
    return caller


Loader = Annotated[Principal, Depends(loader)]
