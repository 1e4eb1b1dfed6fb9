from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tablehouse.config import load_settings
from tablehouse.core.security.jwt_secret import JWT_SECRET_FILE, jwt_signing_secret
from tablehouse.errors import SettingsError


def test_development_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, environment="development")
    first = jwt_signing_secret(settings).get_secret_value()
    second = jwt_signing_secret(settings).get_secret_value()
    assert first == second
    assert len(first.encode()) >= 32
    mode = (tmp_path / JWT_SECRET_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_configured_secret_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, jwt_secret="x" * 40)
    assert jwt_signing_secret(settings).get_secret_value() == "x" * 40
    assert not (tmp_path / JWT_SECRET_FILE).exists()


def test_an_empty_secret_file_is_refused_not_used(tmp_path: Path) -> None:
    (tmp_path / JWT_SECRET_FILE).write_text("\n")
    with pytest.raises(SettingsError, match="no usable JWT secret"):
        jwt_signing_secret(load_settings(data_dir=tmp_path))


def test_concurrent_first_starts_agree_on_one_secret(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = set(pool.map(lambda _: jwt_signing_secret(settings).get_secret_value(), range(32)))
    assert len(seen) == 1
    assert [p.name for p in tmp_path.iterdir()] == [JWT_SECRET_FILE]
