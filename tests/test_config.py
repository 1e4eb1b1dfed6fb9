from __future__ import annotations

from pathlib import Path

import pytest

from tablehouse.config import environment_variables, load_settings
from tablehouse.core.database import database_url
from tablehouse.errors import SettingsError

STRONG_SECRET = "s" * 32


@pytest.fixture(autouse=True)
def _in_an_empty_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray .env file; the session fixture has already cleared setting variables."""
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_embedded_stores_in_the_data_dir() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite+aiosqlite:///data/tablehouse.db"
    assert settings.analytics_url == "chdb:///data/analytics"
    assert settings.environment == "development"


def test_data_dir_moves_the_embedded_stores(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "state")
    assert database_url(settings).database == str(tmp_path / "state" / "tablehouse.db")
    assert settings.analytics_url == f"chdb:///{tmp_path / 'state' / 'analytics'}"


def test_choices_ignore_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "Test")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = load_settings()
    assert (settings.environment, settings.log_level) == ("test", "DEBUG")


def test_prefixed_variable_wins_over_bare_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "3")
    monkeypatch.setenv("TABLEHOUSE_DB_POOL_SIZE", "7")
    assert load_settings().db_pool_size == 7


def test_settings_are_read_from_a_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DB_POOL_SIZE=4\n")
    assert load_settings().db_pool_size == 4


def test_short_postgres_scheme_is_given_the_async_driver() -> None:
    settings = load_settings(database_url="postgresql://app:pw@db.internal:5432/tablehouse")
    assert settings.database_url.startswith("postgresql+asyncpg://app:pw@db.internal")


@pytest.mark.parametrize(
    "url",
    ["not a url", "mysql://root@localhost/db", "sqlite+aiosqlite://", "postgresql://host"],
)
def test_malformed_database_url_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        load_settings()


def test_error_never_echoes_the_value_it_rejects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root:hunter2-secret@localhost/db")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "hunter2-secret" not in str(caught.value)


def test_negative_pool_size_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "-1")
    with pytest.raises(SettingsError, match=r"DB_POOL_SIZE: .*greater than or equal to 1"):
        load_settings()


def test_production_requires_a_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(SettingsError, match="JWT_SECRET must be set"):
        load_settings()
    monkeypatch.setenv("JWT_SECRET", STRONG_SECRET)
    assert load_settings().environment == "production"


def test_short_jwt_secret_is_refused_and_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "tooshort-secret")
    with pytest.raises(SettingsError, match="at least 32 bytes") as caught:
        load_settings()
    assert "tooshort-secret" not in str(caught.value)


def test_unknown_environment_lists_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "staging")
    with pytest.raises(
        SettingsError, match=r"ENVIRONMENT: .*'development', 'production' or 'test'"
    ):
        load_settings()


def test_analytics_url_must_be_chdb_or_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANALYTICS_URL", "ftp://nowhere")
    with pytest.raises(SettingsError, match="ANALYTICS_URL"):
        load_settings()


def test_sqlite_path_is_made_absolute_and_its_folder_created(tmp_path: Path) -> None:
    url = database_url(load_settings(database_url="sqlite:///./nested/dir/app.db"))
    assert url.database == str(tmp_path / "nested" / "dir" / "app.db")
    assert (tmp_path / "nested" / "dir").is_dir()
    assert url.drivername == "sqlite+aiosqlite"


def test_every_setting_is_documented() -> None:
    documented = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    missing = [name for name in environment_variables() if f"| `{name}` |" not in documented]
    assert missing == []
