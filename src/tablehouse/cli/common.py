"""What every command needs: settings or a clear one-line failure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from tablehouse.config import Settings, load_settings
from tablehouse.core.logging import configure_logging
from tablehouse.errors import SettingsError

if TYPE_CHECKING:
    from tablehouse.core.database import ReadSession, WriteSession

T = TypeVar("T")

err_console = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_FAILURE = 1
EXIT_BAD_CONFIGURATION = 2


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    # Messages quote user input (file names, values): never read them as rich markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True)
    return typer.Exit(code)


def settings_or_exit(*, serving: bool = False) -> Settings:
    """The settings, with logging set up: a command other than ``serve`` logs warnings and
    errors only (its output says what it did), or everything with LOG_LEVEL=DEBUG."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise fail(exc.message, EXIT_BAD_CONFIGURATION) from None
    configure_logging(settings, level=None if serving else command_log_level(settings))
    return settings


def command_log_level(settings: Settings) -> str:
    if settings.log_level in ("DEBUG", "WARNING", "ERROR", "CRITICAL"):
        return settings.log_level
    return "WARNING"


async def in_unit_of_work(settings: Settings, work: Callable[[WriteSession], Awaitable[T]]) -> T:
    """Run ``work`` in one unit of work that may write, on a short-lived engine, as a
    request that declares a WriteSession does."""
    from tablehouse.core.database import create_engine, create_session_factory, uow

    engine = create_engine(settings)
    try:
        async with uow(create_session_factory(engine)) as session:
            return await work(session)
    finally:
        await engine.dispose()


async def in_read_unit_of_work(
    settings: Settings, work: Callable[[ReadSession], Awaitable[T]]
) -> T:
    """Run ``work`` in one unit of work that only reads (the database refuses a write), on a
    short-lived engine, as a request that declares a ReadSession does."""
    from tablehouse.core.database import (
        create_read_engine,
        create_read_session_factory,
        read_uow,
    )

    engine = create_read_engine(settings)
    try:
        async with read_uow(create_read_session_factory(engine)) as session:
            return await work(session)
    finally:
        await engine.dispose()
