"""Secrets the process needs before any request arrives."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from pydantic import SecretStr

from tablehouse.config import MIN_JWT_SECRET_BYTES, Settings
from tablehouse.errors import SettingsError

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
        _create_private_file(path, secrets.token_urlsafe(48))
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise SettingsError(
            f"{path} holds no usable JWT secret (under {MIN_JWT_SECRET_BYTES} bytes); "
            "delete it to have a new one generated, or set JWT_SECRET"
        )
    return SecretStr(secret)


def _create_private_file(path: Path, content: str) -> None:
    """Create ``path`` with ``content`` in one step, or leave an existing file alone.

    The content is written to a private temporary file first and then hard-linked into
    place, so a process racing us either finds no file or the complete one, never a
    half-written secret.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content)
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
