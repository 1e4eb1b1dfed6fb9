"""/users: your own profile, and administration of everyone's."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from tablehouse.api.dependencies import ReadSessionDep, RuntimeDep, WriteSessionDep
from tablehouse.api.pagination import Limit, Offset, Page
from tablehouse.api.paths import API_PREFIX
from tablehouse.api.responses import AUTHENTICATED, WITH_BODY, errors
from tablehouse.auth import accounts, repository
from tablehouse.auth.dependencies import CurrentAdmin, CurrentPrincipal, CurrentUser
from tablehouse.auth.models import Role
from tablehouse.auth.schemas import AdminUserUpdate, UpdateMe, UserRead

router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"], responses=AUTHENTICATED)


@router.get("/me")
async def read_me(caller: CurrentPrincipal) -> UserRead:
    return UserRead.model_validate(caller.user)


@router.patch(
    "/me",
    summary="Change your name or password (needs current_password)",
    responses=WITH_BODY,
)
async def update_me(
    body: UpdateMe, caller: CurrentUser, session: WriteSessionDep, runtime: RuntimeDep
) -> UserRead:
    user = await accounts.update_me(
        session,
        passwords=runtime.passwords,
        user=caller.user,
        changes=body,
        current_session_id=caller.session_id,
    )
    return UserRead.model_validate(user)


@router.get("", summary="List users (admins)")
async def list_users(
    _admin: CurrentAdmin,
    session: ReadSessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
    email: Annotated[str | None, Query(max_length=320, description="Part of the email")] = None,
    role: Role | None = None,
    is_active: bool | None = None,
) -> Page[UserRead]:
    users, total = await repository.list_users(
        session, limit=limit, offset=offset, email_contains=email, role=role, is_active=is_active
    )
    return Page[UserRead](
        items=[UserRead.model_validate(user) for user in users],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/{user_id}", summary="One user (admins)", responses=errors(404))
async def read_user(user_id: uuid.UUID, _admin: CurrentAdmin, session: ReadSessionDep) -> UserRead:
    return UserRead.model_validate(await accounts.get_user(session, user_id))


@router.patch(
    "/{user_id}",
    summary="Change role, activity or verification (admins)",
    responses={**WITH_BODY, **errors(404)},
)
async def update_user(
    user_id: uuid.UUID, body: AdminUserUpdate, admin: CurrentAdmin, session: WriteSessionDep
) -> UserRead:
    user = await accounts.administer(session, admin=admin.user, user_id=user_id, changes=body)
    return UserRead.model_validate(user)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a user and everything they own (admins)",
)
async def delete_user(
    user_id: uuid.UUID, admin: CurrentAdmin, session: WriteSessionDep, runtime: RuntimeDep
) -> None:
    await accounts.delete_user(
        session,
        admin=admin.user,
        user_id=user_id,
        query_role=runtime.settings.query_database_role,
    )
