"""Settings, read from the environment and an optional ``.env`` file.

Every setting may be given bare (``DATABASE_URL``) or with the ``TABLEHOUSE_`` prefix
(``TABLEHOUSE_DATABASE_URL``); the prefixed form wins when both are set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from tablehouse.errors import SettingsError

ENV_PREFIX = "TABLEHOUSE_"
MIN_JWT_SECRET_BYTES = 32
# The longest SQL text QUERY_MAX_SQL_LENGTH may allow; the request schema's hard ceiling.
SQL_LENGTH_CEILING = 1_000_000

Environment = Literal["development", "production", "test"]
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "ES256"]
SmtpSecurity = Literal["starttls", "tls", "none"]

# Users write the short scheme; the app always talks through the async driver.
_DRIVER_FOR_SCHEME = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_ANALYTICS_SCHEMES = ("chdb://", "http://", "https://")


# Choices are matched without regard to case: ENVIRONMENT=Production and LOG_LEVEL=info work.
_lower = BeforeValidator(lambda value: value.lower() if isinstance(value, str) else value)
_upper = BeforeValidator(lambda value: value.upper() if isinstance(value, str) else value)


def _env(name: str, **kwargs: Any) -> Any:
    """A field read from ``TABLEHOUSE_<NAME>`` or ``<NAME>``."""
    return Field(validation_alias=AliasChoices(f"{ENV_PREFIX}{name}", name), **kwargs)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,
    )

    environment: Annotated[Environment, _lower, _env("ENVIRONMENT")] = "development"
    data_dir: Annotated[Path, _env("DATA_DIR")] = Path("./data")

    # Empty means "the embedded default inside DATA_DIR" (see _embedded_stores_default_to_data_dir).
    database_url: Annotated[str, _env("DATABASE_URL")] = ""
    db_pool_size: Annotated[int, _env("DB_POOL_SIZE", ge=1, le=1000)] = 10
    db_max_overflow: Annotated[int, _env("DB_MAX_OVERFLOW", ge=0, le=1000)] = 20
    db_pool_timeout: Annotated[float, _env("DB_POOL_TIMEOUT", gt=0)] = 30.0
    db_pool_recycle: Annotated[int, _env("DB_POOL_RECYCLE", ge=-1)] = 1800
    db_pool_pre_ping: Annotated[bool, _env("DB_POOL_PRE_PING")] = True
    db_connect_timeout: Annotated[float, _env("DB_CONNECT_TIMEOUT", gt=0, le=300)] = 5.0
    db_startup_attempts: Annotated[int, _env("DB_STARTUP_ATTEMPTS", ge=1, le=1000)] = 5
    db_startup_retry_delay: Annotated[float, _env("DB_STARTUP_RETRY_DELAY", ge=0, le=300)] = 2.0
    sqlite_busy_timeout_ms: Annotated[int, _env("SQLITE_BUSY_TIMEOUT_MS", ge=0)] = 5000

    # Empty means "the same database as DATABASE_URL".
    database_read_url: Annotated[str, _env("DATABASE_READ_URL")] = ""

    query_timeout_ms: Annotated[int, _env("QUERY_TIMEOUT_MS", ge=1, le=3_600_000)] = 5000
    query_max_rows: Annotated[int, _env("QUERY_MAX_ROWS", ge=1, le=10_000_000)] = 10_000
    query_max_result_bytes: Annotated[int, _env("QUERY_MAX_RESULT_BYTES", ge=1024)] = 32 * 1024**2
    query_max_value_bytes: Annotated[
        int, _env("QUERY_MAX_VALUE_BYTES", ge=1024, le=1_000_000_000)
    ] = 32 * 1024**2
    query_max_concurrent_per_user: Annotated[
        int, _env("QUERY_MAX_CONCURRENT_PER_USER", ge=1, le=10_000)
    ] = 4
    # What checking one statement may cost, before and while the guard parses it.
    query_max_sql_length: Annotated[
        int, _env("QUERY_MAX_SQL_LENGTH", ge=1, le=SQL_LENGTH_CEILING)
    ] = 32_768
    query_max_sql_tokens: Annotated[int, _env("QUERY_MAX_SQL_TOKENS", ge=1, le=1_000_000)] = 8192
    query_check_timeout_ms: Annotated[int, _env("QUERY_CHECK_TIMEOUT_MS", ge=1, le=600_000)] = 2000
    # Checked statements kept per process: a bound on their estimated memory and on their count.
    query_statement_cache_bytes: Annotated[int, _env("QUERY_STATEMENT_CACHE_BYTES", ge=0)] = (
        64 * 1024**2
    )
    query_statement_cache_entries: Annotated[
        int, _env("QUERY_STATEMENT_CACHE_ENTRIES", ge=0, le=1_000_000)
    ] = 2048
    query_database_role: Annotated[
        str, _env("QUERY_DATABASE_ROLE", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    ] = "tablehouse_query"

    analytics_url: Annotated[str, _env("ANALYTICS_URL")] = ""
    analytics_enabled: Annotated[bool, _env("ANALYTICS_ENABLED")] = True
    analytics_database: Annotated[
        str, _env("ANALYTICS_DATABASE", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    ] = "tablehouse"
    analytics_cluster: Annotated[str | None, _env("ANALYTICS_CLUSTER")] = None
    query_log_ttl_days: Annotated[int, _env("QUERY_LOG_TTL_DAYS", ge=1, le=36500)] = 90
    metrics_ttl_days: Annotated[int, _env("METRICS_TTL_DAYS", ge=1, le=36500)] = 365
    analytics_batch_size: Annotated[int, _env("ANALYTICS_BATCH_SIZE", ge=1, le=1_000_000)] = 1000
    analytics_flush_interval_ms: Annotated[
        int, _env("ANALYTICS_FLUSH_INTERVAL_MS", ge=10, le=3_600_000)
    ] = 1000
    analytics_queue_size: Annotated[int, _env("ANALYTICS_QUEUE_SIZE", ge=1)] = 100_000
    metrics_sample_interval_seconds: Annotated[
        float, _env("METRICS_SAMPLE_INTERVAL_SECONDS", gt=0, le=86_400)
    ] = 15.0
    # Unset: GET /metrics is for administrators (a login session).
    metrics_token: Annotated[SecretStr | None, _env("METRICS_TOKEN", min_length=16)] = None
    # Empty means DATA_DIR/analytics-spool.
    analytics_spool_dir: Annotated[Path | None, _env("ANALYTICS_SPOOL_DIR")] = None

    jwt_secret: Annotated[SecretStr | None, _env("JWT_SECRET")] = None
    jwt_algorithm: Annotated[JwtAlgorithm, _upper, _env("JWT_ALGORITHM")] = "HS256"
    jwt_private_key: Annotated[SecretStr | None, _env("JWT_PRIVATE_KEY")] = None
    jwt_public_key: Annotated[str | None, _env("JWT_PUBLIC_KEY")] = None
    jwt_issuer: Annotated[str, _env("JWT_ISSUER", min_length=1)] = "tablehouse"
    jwt_audience: Annotated[str, _env("JWT_AUDIENCE", min_length=1)] = "tablehouse-api"
    access_token_ttl_minutes: Annotated[int, _env("ACCESS_TOKEN_TTL_MINUTES", ge=1)] = 15
    refresh_token_ttl_days: Annotated[int, _env("REFRESH_TOKEN_TTL_DAYS", ge=1)] = 30
    session_idle_timeout_minutes: Annotated[int, _env("SESSION_IDLE_TIMEOUT_MINUTES", ge=1)] = (
        7 * 24 * 60
    )
    refresh_reuse_grace_seconds: Annotated[int, _env("REFRESH_REUSE_GRACE_SECONDS", ge=0)] = 10

    password_hash_time_cost: Annotated[int, _env("PASSWORD_HASH_TIME_COST", ge=1)] = 3
    password_hash_memory_kib: Annotated[int, _env("PASSWORD_HASH_MEMORY_KIB", ge=8)] = 65536
    password_hash_parallelism: Annotated[int, _env("PASSWORD_HASH_PARALLELISM", ge=1)] = 4

    login_failure_window_seconds: Annotated[int, _env("LOGIN_FAILURE_WINDOW_SECONDS", ge=1)] = 900
    login_max_failures_per_account: Annotated[int, _env("LOGIN_MAX_FAILURES_PER_ACCOUNT", ge=1)] = (
        10
    )
    login_max_failures_per_address: Annotated[int, _env("LOGIN_MAX_FAILURES_PER_ADDRESS", ge=1)] = (
        50
    )
    # Past its limit, an address may still try accounts that have not failed from it, one
    # password check at a time, waiting this long, then twice as long after each failure.
    login_address_backoff_seconds: Annotated[
        int, _env("LOGIN_ADDRESS_BACKOFF_SECONDS", ge=1, le=86_400)
    ] = 1

    email_token_ttl_hours: Annotated[int, _env("EMAIL_TOKEN_TTL_HOURS", ge=1)] = 24
    password_reset_ttl_minutes: Annotated[int, _env("PASSWORD_RESET_TTL_MINUTES", ge=1)] = 60
    public_url: Annotated[str, _env("PUBLIC_URL")] = "http://127.0.0.1:8000"

    smtp_host: Annotated[str | None, _env("SMTP_HOST")] = None
    smtp_port: Annotated[int, _env("SMTP_PORT", ge=1, le=65535)] = 587
    smtp_username: Annotated[str | None, _env("SMTP_USERNAME")] = None
    smtp_password: Annotated[SecretStr | None, _env("SMTP_PASSWORD")] = None
    smtp_security: Annotated[SmtpSecurity, _lower, _env("SMTP_SECURITY")] = "starttls"
    smtp_timeout: Annotated[float, _env("SMTP_TIMEOUT", gt=0)] = 10.0
    mail_from: Annotated[str, _env("MAIL_FROM")] = "Tablehouse <noreply@localhost>"

    max_schema_fields: Annotated[int, _env("MAX_SCHEMA_FIELDS", ge=1, le=1600)] = 200
    max_ingest_bytes: Annotated[int, _env("MAX_INGEST_BYTES", ge=1)] = 1024**3
    max_concurrent_ingests_per_user: Annotated[
        int, _env("MAX_CONCURRENT_INGESTS_PER_USER", ge=1, le=10_000)
    ] = 4
    max_body_bytes: Annotated[int, _env("MAX_BODY_BYTES", ge=1024)] = 1024**2
    body_read_timeout_seconds: Annotated[
        float, _env("BODY_READ_TIMEOUT_SECONDS", gt=0, le=3600)
    ] = 20.0
    # 0 turns the rate check off (the idle timeout still applies).
    body_min_bytes_per_second: Annotated[int, _env("BODY_MIN_BYTES_PER_SECOND", ge=0)] = 10_240
    body_min_rate_grace_seconds: Annotated[
        float, _env("BODY_MIN_RATE_GRACE_SECONDS", ge=0, le=3600)
    ] = 10.0
    ingest_batch_rows: Annotated[int, _env("INGEST_BATCH_ROWS", ge=1, le=100_000)] = 5000
    max_reported_row_errors: Annotated[int, _env("MAX_REPORTED_ROW_ERRORS", ge=1)] = 100

    admin_email: Annotated[str | None, _env("ADMIN_EMAIL")] = None
    admin_password: Annotated[SecretStr | None, _env("ADMIN_PASSWORD")] = None

    host: Annotated[str, _env("HOST")] = "127.0.0.1"
    port: Annotated[int, _env("PORT", ge=1, le=65535)] = 8000
    log_level: Annotated[LogLevel, _upper, _env("LOG_LEVEL")] = "INFO"
    log_format: Annotated[LogFormat, _env("LOG_FORMAT")] = "auto"

    @field_validator("database_url", "database_read_url")
    @classmethod
    def _database_url_is_supported(cls, value: str) -> str:
        if not value:
            return value
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                "expected a URL such as sqlite+aiosqlite:///./data/tablehouse.db "
                "or postgresql+asyncpg://user:pass@host:5432/db"
            ) from None
        driver = _DRIVER_FOR_SCHEME.get(url.drivername)
        if driver is None:
            raise ValueError(
                f"unsupported database {url.drivername!r}; expected sqlite+aiosqlite:// "
                "or postgresql+asyncpg://"
            )
        if driver.startswith("sqlite") and url.database in (None, "", ":memory:"):
            raise ValueError(
                "a SQLite database needs a file path, e.g. sqlite+aiosqlite:///./data/x.db"
            )
        if driver.startswith("postgresql") and not url.database:
            raise ValueError("a PostgreSQL URL must name a database, e.g. .../tablehouse")
        return url.set(drivername=driver).render_as_string(hide_password=False)

    @field_validator("analytics_url")
    @classmethod
    def _analytics_url_is_supported(cls, value: str) -> str:
        if value and not value.startswith(_ANALYTICS_SCHEMES):
            raise ValueError("expected chdb:///path or http(s)://user:pass@host:8123/db")
        return value

    @model_validator(mode="after")
    def _embedded_stores_default_to_data_dir(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'tablehouse.db'}"
        if not self.analytics_url:
            self.analytics_url = f"chdb:///{self.data_dir / 'analytics'}"
        return self

    @model_validator(mode="after")
    def _read_replica_is_the_same_kind(self) -> Settings:
        if self.database_read_url and (
            self.database_read_url.split(":", 1)[0] != self.database_url.split(":", 1)[0]
        ):
            raise ValueError("DATABASE_READ_URL must use the same kind of database as DATABASE_URL")
        return self

    @model_validator(mode="after")
    def _asymmetric_jwt_has_its_keys(self) -> Settings:
        if self.jwt_algorithm.startswith("HS"):
            return self
        if self.jwt_private_key is None or self.jwt_public_key is None:
            raise ValueError(
                f"JWT_ALGORITHM={self.jwt_algorithm} needs JWT_PRIVATE_KEY and JWT_PUBLIC_KEY (PEM)"
            )
        return self

    @model_validator(mode="after")
    def _admin_is_given_whole(self) -> Settings:
        if (self.admin_email is None) != (self.admin_password is None):
            raise ValueError("ADMIN_EMAIL and ADMIN_PASSWORD must be set together")
        return self

    @model_validator(mode="after")
    def _production_has_a_strong_secret(self) -> Settings:
        if not self.jwt_algorithm.startswith("HS"):
            return self
        secret = self.jwt_secret
        if secret is not None and len(secret.get_secret_value().encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(f"JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes")
        if self.environment == "production" and secret is None:
            raise ValueError("JWT_SECRET must be set when ENVIRONMENT=production")
        return self

    @property
    def resolved_spool_dir(self) -> Path:
        return (
            (self.analytics_spool_dir or self.data_dir / "analytics-spool").expanduser().resolve()
        )

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def database_url_object(self) -> URL:
        return make_url(self.database_url)


def environment_variables() -> list[str]:
    """Every setting's variable name, without the prefix, in declaration order."""
    names = []
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        assert isinstance(alias, AliasChoices)
        names.append(str(alias.choices[-1]))
    return names


def _describe(error: Any) -> str:
    """One error as ``VARIABLE: what was expected`` without echoing the value (it may be secret)."""
    field = next((str(part) for part in error["loc"] if isinstance(part, str)), "")
    message = str(error["msg"]).removeprefix("Value error, ")
    if not field:
        return message
    return f"{field.upper().removeprefix(ENV_PREFIX)}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings, turning a validation failure into one readable line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise SettingsError(f"invalid configuration: {problems}") from None
