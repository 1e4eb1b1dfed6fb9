"""``tablehouse users``: accounts from the command line, through the same services as the API."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from tablehouse.cli.common import fail, in_unit_of_work, settings_or_exit
from tablehouse.errors import InvalidInput, TablehouseError

if TYPE_CHECKING:
    from tablehouse.core.database import WriteSession

T = TypeVar("T")

app = typer.Typer(
    help="Create, list and deactivate users; see and lift login throttling.",
    short_help="Accounts, and lifting login throttling.",
    no_args_is_help=True,
)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@app.command()
def create(
    email: Annotated[str, typer.Option(metavar="EMAIL", help="The new user's email address")],
    full_name: Annotated[str | None, typer.Option(metavar="NAME", help="Display name")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator")] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
) -> None:
    """Create a user.

    The address counts as verified: whoever runs this vouches for it. The password is asked
    for on the terminal, or read from standard input with --password-stdin."""
    from tablehouse.auth import service
    from tablehouse.auth.models import Role
    from tablehouse.core.security.passwords import Passwords

    settings = settings_or_exit()
    password = _read_password(password_stdin)

    async def work(session: WriteSession) -> str:
        user = await service.register(
            session,
            passwords=Passwords(settings),
            email=email,
            password=password,
            full_name=full_name,
            role=Role.ADMIN if admin else Role.USER,
            verified=True,
        )
        return f"created {user.role} {user.email} ({user.id})"

    typer.echo(_run(in_unit_of_work(settings, work)))


@app.command("list")
def list_users(
    limit: Annotated[
        int, typer.Option(metavar="N", min=1, max=10_000, help="At most this many users")
    ] = 100,
    offset: Annotated[int, typer.Option(metavar="N", min=0, help="Skip this many first")] = 0,
) -> None:
    """List users, oldest first."""
    from tablehouse.auth import service

    settings = settings_or_exit()

    async def work(session: WriteSession) -> Table:
        users, total = await service.list_users(session, limit=limit, offset=offset)
        table = Table(title=f"{len(users)} of {total} users")
        for column in ("email", "role", "active", "verified", "created", "last login"):
            table.add_column(column)
        for user in users:
            table.add_row(
                user.email,
                user.role,
                "yes" if user.is_active else "no",
                "yes" if user.is_verified else "no",
                f"{user.created_at:%Y-%m-%d %H:%M}",
                f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "-",
            )
        return table

    Console().print(_run(in_unit_of_work(settings, work)))


@app.command()
def deactivate(
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The user's email address")],
) -> None:
    """Deactivate a user and sign out all of their sessions."""
    from tablehouse.auth import service

    settings = settings_or_exit()

    async def work(session: WriteSession) -> str:
        user = await service.deactivate(session, email=email)
        return f"deactivated {user.email}; their sessions are revoked"

    typer.echo(_run(in_unit_of_work(settings, work)))


@app.command(short_help="Emails and addresses with failed logins, most first.")
def throttled(
    limit: Annotated[
        int, typer.Option(metavar="N", min=1, max=10_000, help="At most this many of each")
    ] = 100,
) -> None:
    """List the emails and addresses with failed logins in the window, most first.

    At its limit, an email is refused whatever the password; an address refuses the emails
    that failed from it and lets others try one at a time (docs/security.md).
    """
    from tablehouse.auth import service
    from tablehouse.core.times import system_clock

    settings = settings_or_exit()

    async def work(session: WriteSession) -> Table:
        counted = await service.throttled(session, settings, now=system_clock(), limit=limit)
        window = settings.login_failure_window_seconds
        table = Table(title=f"failed logins in the last {window} s")
        for column in ("limit", "email or address", "failures", "at the limit for"):
            table.add_column(column)
        for entry in counted:
            table.add_row(
                entry.limit,
                entry.key,
                f"{entry.failures} of {entry.max_failures}",
                "-" if entry.over_limit_seconds is None else f"{entry.over_limit_seconds} s",
            )
        return table

    Console().print(_run(in_unit_of_work(settings, work)))


@app.command()
def unlock(
    email: Annotated[
        str | None, typer.Argument(help="Forget this email's failed logins, from every address")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Forget the failed logins from this client address, for every email"),
    ] = None,
) -> None:
    """Lift login throttling for an email, a client address, or both."""
    from tablehouse.auth import service

    if email is None and address is None:
        raise fail("give an email, --address, or both (see `tablehouse users throttled`)")
    settings = settings_or_exit()

    async def work(session: WriteSession) -> list[str]:
        done = []
        if email is not None:
            cleared = await service.unlock_email(session, email)
            done.append(f"forgot {_failed_logins(cleared)} of {service.normalise_email(email)}")
        if address is not None:
            cleared = await service.unlock_address(session, address)
            done.append(f"forgot {_failed_logins(cleared)} from {address}")
        return done

    for line in _run(in_unit_of_work(settings, work)):
        typer.echo(line)


def _failed_logins(count: int) -> str:
    return f"{count} failed login{'' if count == 1 else 's'}"


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except InvalidInput as exc:
        raise fail("; ".join(f"{loc[-1]}: {msg}" for loc, msg, _kind in exc.problems)) from None
    except TablehouseError as exc:
        raise fail(exc.message) from None
