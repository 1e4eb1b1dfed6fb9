"""The dataset a request names, loaded before its handler runs: the caller's own, or (admins,
with ``?owner=``) another user's; 404 otherwise."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query

from tablehouse.api.dependencies import ReadSessionDep, WriteSessionDep
from tablehouse.auth.dependencies import ReadAccess, WriteAccess
from tablehouse.datasets import service
from tablehouse.datasets.models import Dataset

OwnerQuery = Annotated[uuid.UUID | None, Query(description="Admins: act on another user's dataset")]


async def dataset(
    name: str, caller: ReadAccess, session: ReadSessionDep, owner: OwnerQuery = None
) -> Dataset:
    """The dataset ``name``, read without a lock."""
    return await service.load(session, caller=caller, name=name, owner_id=owner)


async def shared_dataset(
    name: str, caller: WriteAccess, session: WriteSessionDep, owner: OwnerQuery = None
) -> Dataset:
    """The dataset ``name``, share-locked until the request's unit of work ends: its rows may
    be written, and it cannot be changed or dropped meanwhile."""
    return await service.load_locked(
        session, caller=caller, name=name, owner_id=owner, lock="share"
    )


async def locked_dataset(
    name: str, caller: WriteAccess, session: WriteSessionDep, owner: OwnerQuery = None
) -> Dataset:
    """The dataset ``name``, locked for update until the request's unit of work ends: to
    change or drop it."""
    return await service.load_locked(
        session, caller=caller, name=name, owner_id=owner, lock="update"
    )


DatasetDep = Annotated[Dataset, Depends(dataset)]
SharedDatasetDep = Annotated[Dataset, Depends(shared_dataset)]
LockedDatasetDep = Annotated[Dataset, Depends(locked_dataset)]
