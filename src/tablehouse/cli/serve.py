from __future__ import annotations

from typing import Annotated

import typer

from tablehouse.cli.common import EXIT_BAD_CONFIGURATION, fail, settings_or_exit


def serve(
    host: Annotated[
        str | None, typer.Option(metavar="ADDRESS", help="Interface to bind [default: HOST]")
    ] = None,
    port: Annotated[
        int | None, typer.Option(metavar="PORT", help="Port to bind [default: PORT]")
    ] = None,
    workers: Annotated[int, typer.Option(metavar="N", min=1, help="Worker processes")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development)")] = False,
) -> None:
    """Serve the HTTP API."""
    settings = settings_or_exit(serving=True)
    if workers > 1 and settings.analytics_enabled and settings.analytics_url.startswith("chdb:"):
        raise fail(
            f"--workers {workers} needs a ClickHouse server for analytics: the embedded store "
            "(chDB) can be opened by one process only. Set ANALYTICS_URL=http://user:pass@host"
            ":8123/db, or serve with --workers 1",
            EXIT_BAD_CONFIGURATION,
        )
    import uvicorn  # after the settings check, so a bad setting is reported at once

    uvicorn.run(
        "tablehouse.app:create_app_from_environment",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=None if reload else workers,
        reload=reload,
        log_config=None,
        access_log=False,
        server_header=False,
    )
