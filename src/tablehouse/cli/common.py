"""What every command needs: settings or a clear one-line failure."""

from __future__ import annotations

import typer
from rich.console import Console

from tablehouse.config import Settings, load_settings
from tablehouse.core.logging import configure_logging
from tablehouse.errors import SettingsError

err_console = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_FAILURE = 1
EXIT_BAD_CONFIGURATION = 2


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", markup=True)
    return typer.Exit(code)


def settings_or_exit() -> Settings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise fail(exc.message, EXIT_BAD_CONFIGURATION) from None
    configure_logging(settings)
    return settings
