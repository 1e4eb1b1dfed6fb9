"""API keys for programs: created once in full, stored as a hash, revocable."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tablehouse.auth import repository
from tablehouse.auth.identity import Account
from tablehouse.auth.models import ApiKey
from tablehouse.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from tablehouse.core.tokens import api_key_parts, hash_token
from tablehouse.errors import InvalidInput, NotFound


async def create(
    session: AsyncSession, *, owner: Account, request: ApiKeyCreate, now: datetime
) -> ApiKeyCreated:
    if request.expires_at is not None and request.expires_at <= now:
        raise InvalidInput("must be in the future", loc=("body", "expires_at"), code="in_the_past")
    key, prefix = api_key_parts()
    api_key = ApiKey(
        user_id=owner.id,
        name=request.name,
        prefix=prefix,
        key_hash=hash_token(key),
        scopes=sorted({scope.value for scope in request.scopes}),
        dataset_names=None if request.datasets is None else sorted(set(request.datasets)),
        expires_at=request.expires_at,
    )
    await repository.add(session, api_key)
    return ApiKeyCreated(**ApiKeyRead.model_validate(api_key).model_dump(), key=key)


async def list_for(session: AsyncSession, *, owner: Account) -> list[ApiKey]:
    return await repository.api_keys_of(session, owner.id)


async def revoke(
    session: AsyncSession, *, owner: Account, key_id: uuid.UUID, now: datetime
) -> None:
    api_key = await repository.api_key_of(session, owner.id, key_id)
    if api_key is None:
        raise NotFound("no such API key", code="api_key_not_found")
    if api_key.revoked_at is None:
        api_key.revoked_at = now
        await session.flush()
