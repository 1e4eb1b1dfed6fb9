"""/auth: registration, login, tokens, sessions, email verification, password reset, API keys."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Query, status
from fastapi.security import OAuth2PasswordRequestForm

from tablehouse.api.dependencies import ReadSessionDep, RuntimeDep, WriteSessionDep
from tablehouse.api.paths import API_PREFIX
from tablehouse.api.responses import PUBLIC, WITH_BODY, errors
from tablehouse.auth import accounts, api_keys, sessions
from tablehouse.auth.dependencies import ClientDep, CurrentUser, IssuerDep, Now
from tablehouse.auth.mail import send_later
from tablehouse.auth.schemas import (
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
    UserRead,
)
from tablehouse.errors import InvalidInput

router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"], responses=PUBLIC)

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
    tasks: BackgroundTasks,
    now: Now,
) -> UserRead:
    sent = await accounts.register_and_verify(
        session,
        settings=runtime.settings,
        passwords=runtime.passwords,
        email=body.email,
        password=body.password,
        full_name=body.full_name,
        now=now,
    )
    send_later(tasks, runtime.mailer, accounts.verification_message(runtime.settings, sent))
    return UserRead.model_validate(sent.user)


@router.post(
    "/login",
    summary="Log in with email and password (JSON)",
    responses=LOGIN,
)
async def login(
    body: LoginRequest,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    issuer: IssuerDep,
    client: ClientDep,
    now: Now,
) -> TokenPair:
    return await sessions.login(
        session,
        issuer=issuer,
        passwords=runtime.passwords,
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
    issuer: IssuerDep,
    client: ClientDep,
    now: Now,
) -> TokenPair:
    _refuse_nul(username=form.username, password=form.password)
    return await sessions.login(
        session,
        issuer=issuer,
        passwords=runtime.passwords,
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
    body: RefreshRequest, session: WriteSessionDep, issuer: IssuerDep, now: Now
) -> TokenPair:
    return await sessions.refresh(session, issuer=issuer, refresh_token=body.refresh_token, now=now)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=SIGNED_IN)
async def logout(caller: CurrentUser, session: WriteSessionDep) -> None:
    assert caller.session_id is not None
    await sessions.logout(session, user_id=caller.user.id, session_id=caller.session_id)


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT, responses=SIGNED_IN)
async def logout_all(caller: CurrentUser, session: WriteSessionDep) -> None:
    await sessions.logout_everywhere(session, user_id=caller.user.id)


@router.get("/sessions", responses=SIGNED_IN)
async def list_sessions(
    caller: CurrentUser, session: ReadSessionDep, now: Now
) -> list[SessionRead]:
    active = await sessions.active_sessions(session, user_id=caller.user.id, now=now)
    return [
        SessionRead.model_validate(row).model_copy(update={"current": row.id == caller.session_id})
        for row in active
    ]


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**SIGNED_IN, **errors(404)},
)
async def revoke_session(
    session_id: uuid.UUID, caller: CurrentUser, session: WriteSessionDep
) -> None:
    await sessions.revoke_one(session, user_id=caller.user.id, session_id=session_id)


@router.post("/verify/request", status_code=status.HTTP_202_ACCEPTED, responses=WITH_BODY)
async def request_verification(
    body: EmailRequest,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    tasks: BackgroundTasks,
    now: Now,
) -> dict[str, str]:
    sent = await accounts.request_verification(
        session, settings=runtime.settings, email=body.email, now=now
    )
    if sent is not None:
        send_later(tasks, runtime.mailer, accounts.verification_message(runtime.settings, sent))
    return {"status": "if the address belongs to an unverified account, a link is on its way"}


@router.post("/verify/confirm", responses={**WITH_BODY, **errors(400)})
async def confirm_verification(body: TokenConfirm, session: WriteSessionDep, now: Now) -> UserRead:
    user = await accounts.confirm_verification(session, token=body.token, now=now)
    return UserRead.model_validate(user)


@router.get(
    "/verify/confirm",
    summary="The same, for the link in the verification mail",
    responses=errors(400),
)
async def confirm_verification_link(
    token: Annotated[str, Query(min_length=1, max_length=200)], session: WriteSessionDep, now: Now
) -> UserRead:
    user = await accounts.confirm_verification(session, token=token, now=now)
    return UserRead.model_validate(user)


@router.post("/password-reset/request", status_code=status.HTTP_202_ACCEPTED, responses=WITH_BODY)
async def request_password_reset(
    body: EmailRequest,
    session: WriteSessionDep,
    runtime: RuntimeDep,
    tasks: BackgroundTasks,
    now: Now,
) -> dict[str, str]:
    sent = await accounts.request_password_reset(
        session, settings=runtime.settings, email=body.email, now=now
    )
    if sent is not None:
        send_later(tasks, runtime.mailer, accounts.password_reset_message(runtime.settings, sent))
    return {"status": "if the address belongs to an account, a reset link is on its way"}


@router.post("/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT, responses=WITH_BODY)
async def confirm_password_reset(
    body: PasswordResetConfirm, session: WriteSessionDep, runtime: RuntimeDep, now: Now
) -> None:
    await accounts.confirm_password_reset(
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
    return await api_keys.create(session, owner=caller.user, request=body, now=now)


@router.get("/api-keys", responses=SIGNED_IN)
async def list_api_keys(caller: CurrentUser, session: ReadSessionDep) -> list[ApiKeyRead]:
    keys = await api_keys.list_for(session, owner=caller.user)
    return [ApiKeyRead.model_validate(key) for key in keys]


@router.delete(
    "/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**SIGNED_IN, **errors(404)},
)
async def revoke_api_key(
    key_id: uuid.UUID, caller: CurrentUser, session: WriteSessionDep, now: Now
) -> None:
    await api_keys.revoke(session, owner=caller.user, key_id=key_id, now=now)


def _refuse_nul(**fields: str) -> None:
    """The password form is not a model, so the NUL check of every other text input (a
    character no database text may hold) is made here."""
    for name, value in fields.items():
        if "\x00" in value:
            raise InvalidInput("must not contain the NUL character (\\u0000)", loc=("body", name))
