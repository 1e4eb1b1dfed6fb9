from __future__ import annotations

from typing import Annotated

import typer

from tablehouse.cli.common import settings_or_exit


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind [default: HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind [default: PORT]")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development)")] = False,
) -> None:
    """Serve the HTTP API."""
    settings = settings_or_exit()
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
