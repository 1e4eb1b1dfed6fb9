"""Secrets the process needs before any request arrives."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from tablehouse.config import Settings

JWT_SECRET_FILE = "jwt_secret"


def jwt_signing_secret(settings: Settings) -> SecretStr:
    """The configured JWT secret, or in development one generated once and kept on disk.

    Keeping the generated secret in the data directory means tokens survive a restart;
    production refuses to start without ``JWT_SECRET`` (checked in ``Settings``).
    """
    if settings.jwt_secret is not None:
        return settings.jwt_secret
    path = settings.resolved_data_dir / JWT_SECRET_FILE
    if not path.exists():
        _write_private_file(path, secrets.token_urlsafe(48))
    return SecretStr(path.read_text(encoding="utf-8").strip())


def _write_private_file(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: if two processes race, one creates the file and the other keeps what it wrote.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
