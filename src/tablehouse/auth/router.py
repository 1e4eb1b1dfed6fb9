"""Every endpoint of the auth domain. ``/auth``: registration, login, tokens, sessions, email
verification, password reset, API keys. ``/users``: your own profile, and administration of
everyone's. Two routers, each added to the app itself (a router nested in another is matched
again on every request); both call ``auth.service`` only."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from fastapi.security import OAuth2PasswordRequestForm

from tablehouse.api.dependencies import ReadSessionDep, RuntimeDep, WriteSessionDep
from tablehouse.api.pagination import Limit, Offset, Page
from tablehouse.api.paths import API_PREFIX
from tablehouse.api.responses import AUTHENTICATED, PUBLIC, WITH_BODY, errors
from tablehouse.auth import service
from tablehouse.auth.dependencies import (
    ClientDep,
    CurrentAdmin,
    CurrentPrincipal,
    CurrentUser,
    MailAfterResponseDep,
    Now,
)
from tablehouse.auth.models import Role
from tablehouse.auth.schemas import (
    AdminUserUpdate,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    EmailRequest,
    LoginRequest,
    LoginThrottledBody,
    PasswordResetConfirm,
    RefreshRequest,
    RegisterRequest,
    SessionRead,
    TokenConfirm,
    TokenPair,
    UpdateMe,
    UserRead,
)
from tablehouse.errors import InvalidInput

router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"], responses=PUBLIC)
users_router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"], responses=AUTHENTICATED)

SIGNED_IN = errors(401, 403)
# Login's 429 says which limit refused it (docs/security.md, "Login throttling").
LOGIN = {
    **WITH_BODY,
    **errors(401),
    429: {
        **errors(429)[429],
        "model": LoginThrottledBody,
        "description": "Too many failed logins for this email or from this address; "
        "`limit` says which, retry after the given seconds",
    },
}


@router.post(
    "/register", status_code=status.HTTP_201_CREATED, responses={**WITH_BODY, **errors(409)}
)
async def register(
    body: RegisterRequest,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    mail: MailAfterResponseDep,
    now: Now,
) -> UserRead:
    registered = await service.register_and_verify(
        session,
        settings=runtime.settings,
        passwords=runtime.passwords,
        email=body.email,
        password=body.password,
        full_name=body.full_name,
        now=now,
    )
    mail.send(registered.verification)
    return registered.user


@router.post(
    "/login",
    summary="Log in with email and password (JSON)",
    responses=LOGIN,
)
async def login(
    body: LoginRequest,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    client: ClientDep,
    now: Now,
) -> TokenPair:
    return await service.login(
        session,
        runtime,
        email=body.email,
        password=body.password,
        client=client,
        now=now,
    )


@router.post(
    "/token",
    summary="Log in with the OAuth2 password form (the docs' Authorize)",
    responses=LOGIN,
)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: WriteSessionDep,
    runtime: RuntimeDep,
    client: ClientDep,
    now: Now,
) -> TokenPair:
    _refuse_nul(username=form.username, password=form.password)
    return await service.login(
        session,
        runtime,
        email=form.username,
        password=form.password,
        client=client,
        now=now,
    )


@router.post(
    "/refresh",
    summary="Exchange a refresh token for a new pair (rotation)",
    responses={**WITH_BODY, **errors(401)},
)
async def refresh(
    body: RefreshRequest, session: WriteSessionDep, runtime: RuntimeDep, now: Now
) -> TokenPair:
    return await service.refresh(session, runtime, refresh_token=body.refresh_token, now=now)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=SIGNED_IN)
async def logout(caller: CurrentUser, session: WriteSessionDep) -> None:
    await service.logout(session, caller=caller)


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT, responses=SIGNED_IN)
async def logout_all(caller: CurrentUser, session: WriteSessionDep) -> None:
    await service.logout_everywhere(session, caller=caller)


@router.get("/sessions", responses=SIGNED_IN)
async def list_sessions(
    caller: CurrentUser, session: ReadSessionDep, now: Now
) -> list[SessionRead]:
    return await service.active_sessions(session, caller=caller, now=now)


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**SIGNED_IN, **errors(404)},
)
async def revoke_session(
    session_id: uuid.UUID, caller: CurrentUser, session: WriteSessionDep
) -> None:
    await service.revoke_session(session, caller=caller, session_id=session_id)


@router.post("/verify/request", status_code=status.HTTP_202_ACCEPTED, responses=WITH_BODY)
async def request_verification(
    body: EmailRequest,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    mail: MailAfterResponseDep,
    now: Now,
) -> dict[str, str]:
    mail.send(
        await service.request_verification(
            session, settings=runtime.settings, email=body.email, now=now
        )
    )
    return {"status": "if the address belongs to an unverified account, a link is on its way"}


@router.post("/verify/confirm", responses={**WITH_BODY, **errors(400)})
async def confirm_verification(body: TokenConfirm, session: WriteSessionDep, now: Now) -> UserRead:
    return await service.confirm_verification(session, token=body.token, now=now)


@router.get(
    "/verify/confirm",
    summary="The same, for the link in the verification mail",
    responses=errors(400),
)
async def confirm_verification_link(
    token: Annotated[str, Query(min_length=1, max_length=200)], session: WriteSessionDep, now: Now
) -> UserRead:
    return await service.confirm_verification(session, token=token, now=now)


@router.post("/password-reset/request", status_code=status.HTTP_202_ACCEPTED, responses=WITH_BODY)
async def request_password_reset(
    body: EmailRequest,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    mail: MailAfterResponseDep,
    now: Now,
) -> dict[str, str]:
    mail.send(
        await service.request_password_reset(
            session, settings=runtime.settings, email=body.email, now=now
        )
    )
    return {"status": "if the address belongs to an account, a reset link is on its way"}


@router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT, responses=WITH_BODY)
async def confirm_password_reset(
    body: PasswordResetConfirm, session: WriteSessionDep, runtime: RuntimeDep, now: Now
) -> None:
    await service.confirm_password_reset(
        session,
        passwords=runtime.passwords,
        token=body.token,
        new_password=body.new_password,
        now=now,
    )


@router.post("/api-keys", status_code=status.HTTP_201_CREATED, responses={**SIGNED_IN, **WITH_BODY})
async def create_api_key(
    body: ApiKeyCreate, caller: CurrentUser, session: WriteSessionDep, now: Now
) -> ApiKeyCreated:
    return await service.create_api_key(session, owner=caller.user, request=body, now=now)


@router.get("/api-keys", responses=SIGNED_IN)
async def list_api_keys(caller: CurrentUser, session: ReadSessionDep) -> list[ApiKeyRead]:
    return await service.api_keys_of(session, owner=caller.user)


@router.delete(
    "/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**SIGNED_IN, **errors(404)},
)
async def revoke_api_key(
    key_id: uuid.UUID, caller: CurrentUser, session: WriteSessionDep, now: Now
) -> None:
    await service.revoke_api_key(session, owner=caller.user, key_id=key_id, now=now)


# --- /users ---------------------------------------------------------------------------------


@users_router.get("/me")
async def read_me(caller: CurrentPrincipal) -> UserRead:
    return caller.user


@users_router.patch(
    "/me",
    summary="Change your name or password (needs current_password)",
    responses=WITH_BODY,
)
async def update_me(
    body: UpdateMe, caller: CurrentUser, session: WriteSessionDep, runtime: RuntimeDep
) -> UserRead:
    return await service.update_me(
        session, passwords=runtime.passwords, caller=caller, changes=body
    )


@users_router.get("", summary="List users (admins)")
async def list_users(
    _admin: CurrentAdmin,
    session: ReadSessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
    email: Annotated[str | None, Query(max_length=320, description="Part of the email")] = None,
    role: Role | None = None,
    is_active: bool | None = None,
) -> Page[UserRead]:
    users, total = await service.list_users(
        session, limit=limit, offset=offset, email_contains=email, role=role, is_active=is_active
    )
    return Page[UserRead](
        items=users,
        total=total,
        limit=limit,
        offset=offset,
    )


@users_router.get("/{user_id}", summary="One user (admins)", responses=errors(404))
async def read_user(user_id: uuid.UUID, _admin: CurrentAdmin, session: ReadSessionDep) -> UserRead:
    return await service.get_user(session, user_id)


@users_router.patch(
    "/{user_id}",
    summary="Change role, activity or verification (admins)",
    responses={**WITH_BODY, **errors(404)},
)
async def update_user(
    user_id: uuid.UUID, body: AdminUserUpdate, admin: CurrentAdmin, session: WriteSessionDep
) -> UserRead:
    return await service.administer(session, admin=admin.user, user_id=user_id, changes=body)


@users_router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a user and everything they own (admins)",
)
async def delete_user(
    user_id: uuid.UUID, admin: CurrentAdmin, session: WriteSessionDep, runtime: RuntimeDep
) -> None:
    await service.delete_user(
        session,
        admin=admin.user,
        user_id=user_id,
        query_role=runtime.settings.query_database_role,
    )


def _refuse_nul(**fields: str) -> None:
    """The password form is not a model, so the NUL check of every other text input (a
    character no database text may hold) is made here."""
    for name, value in fields.items():
        if "\x00" in value:
            raise InvalidInput("must not contain the NUL character (\\u0000)", loc=("body", name))
