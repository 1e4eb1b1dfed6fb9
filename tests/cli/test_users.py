"""``tablehouse users`` and ``tablehouse db init``'s admin, run as real processes on SQLite."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from tablehouse.app import create_app
from tests.support.accounts import bearer, login
from tests.support.databases import settings_for
from tests.support.processes import run_tablehouse
from tests.support.serving import started

pytestmark = pytest.mark.slow

PASSWORD = "a long enough secret"


def tablehouse(
    *args: str, env: Mapping[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    # A wide terminal, so `users list` does not cut emails short.
    return run_tablehouse(*args, env={"COLUMNS": "200", **env}, stdin=stdin)


def create_user(
    env: Mapping[str, str], email: str, password: str = PASSWORD, *extra: str
) -> subprocess.CompletedProcess[str]:
    return tablehouse(
        "users",
        "create",
        "--email",
        email,
        "--password-stdin",
        *extra,
        env=env,
        stdin=f"{password}\n",
    )


def listed_rows(env: Mapping[str, str]) -> dict[str, list[str]]:
    """``users list`` as {email: [role, active, verified, ...]}."""
    result = tablehouse("users", "list", env=env)
    assert result.returncode == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) > 1 and "@" in cells[0]:
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh SQLite database, brought up by ``tablehouse db init``."""
    values = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", "DATA_DIR": str(tmp_path)}
    result = tablehouse("db", "init", env=values)
    assert result.returncode == 0, result.stderr
    assert "database ready at revision" in result.stdout
    assert (tmp_path / "x.db").exists()
    return values


def test_created_user_is_listed_verified_and_active(env: dict[str, str]) -> None:
    result = create_user(env, "Ada@Example.com", PASSWORD, "--full-name", "Ada Lovelace")

    assert result.returncode == 0, result.stderr
    assert "created user ada@example.com" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    rows = listed_rows(env)
    assert list(rows) == ["ada@example.com"]
    assert rows["ada@example.com"][:3] == ["user", "yes", "yes"]


async def test_created_user_logs_in_with_the_password_from_stdin(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert create_user(env, "ada@example.com").returncode == 0

    app = create_app(settings_for(env["DATABASE_URL"], tmp_path / "app-data"))
    async with started(app) as http:
        # The newline that ended the line on stdin is not part of the password.
        tokens = await login(http, "ada@example.com", PASSWORD)
        me = await http.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.json()["is_verified"] is True
    assert me.json()["role"] == "user"


def test_duplicate_email_fails_with_a_clear_message(env: dict[str, str]) -> None:
    assert create_user(env, "ada@example.com").returncode == 0

    result = create_user(env, "ADA@example.com")

    assert result.returncode == 1
    assert "already exists" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(listed_rows(env)) == ["ada@example.com"]


def test_short_password_fails_naming_the_password(env: dict[str, str]) -> None:
    result = create_user(env, "ada@example.com", "short")

    assert result.returncode == 1
    assert "password" in result.stderr
    assert "at least 8" in result.stderr
    assert "Traceback" not in result.stderr
    assert listed_rows(env) == {}


def test_admin_flag_creates_an_administrator(env: dict[str, str]) -> None:
    result = create_user(env, "root@example.com", PASSWORD, "--admin")

    assert result.returncode == 0, result.stderr
    assert "created admin root@example.com" in result.stdout
    assert listed_rows(env)["root@example.com"][:2] == ["admin", "yes"]


async def test_deactivate_marks_the_user_inactive_and_ends_sessions(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert create_user(env, "ada@example.com").returncode == 0
    assert create_user(env, "bob@example.com").returncode == 0
    app = create_app(settings_for(env["DATABASE_URL"], tmp_path / "app-data"))
    async with started(app) as http:
        tokens = await login(http, "ada@example.com", PASSWORD)

        result = tablehouse("users", "deactivate", "ada@example.com", env=env)

        assert result.returncode == 0, result.stderr
        assert "deactivated ada@example.com" in result.stdout
        me = await http.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 401
        relogin = await http.post(
            "/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
        )
        assert relogin.status_code == 403
    rows = listed_rows(env)
    assert rows["ada@example.com"][1] == "no"
    assert rows["bob@example.com"][1] == "yes"


def test_deactivating_an_unknown_email_fails(env: dict[str, str]) -> None:
    result = tablehouse("users", "deactivate", "nobody@example.com", env=env)

    assert result.returncode == 1
    assert "no user with email nobody@example.com" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_init_creates_the_configured_admin_once(env: dict[str, str]) -> None:
    with_admin = {**env, "ADMIN_EMAIL": "root@example.com", "ADMIN_PASSWORD": PASSWORD}

    first = tablehouse("db", "init", env=with_admin)
    second = tablehouse("db", "init", env=with_admin)

    assert first.returncode == 0, first.stderr
    assert "admin root@example.com created" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "admin root@example.com already exists" in second.stdout
    assert PASSWORD not in first.stdout + first.stderr + second.stdout + second.stderr
    rows = listed_rows(env)
    assert list(rows) == ["root@example.com"]
    assert rows["root@example.com"][:3] == ["admin", "yes", "yes"]


def test_db_init_refuses_a_configured_admin_password_that_breaks_the_policy(
    env: dict[str, str],
) -> None:
    result = tablehouse(
        "db", "init", env={**env, "ADMIN_EMAIL": "root@example.com", "ADMIN_PASSWORD": "short"}
    )

    assert result.returncode == 1
    assert "ADMIN_PASSWORD" in result.stderr
    assert "at least 8" in result.stderr
    assert listed_rows(env) == {}


def test_db_init_refuses_to_treat_a_plain_account_as_the_admin(
    env: dict[str, str],
) -> None:
    """Whoever registered the admin's address first must not be promoted by it."""
    assert create_user(env, "root@example.com").returncode == 0

    result = tablehouse(
        "db", "init", env={**env, "ADMIN_EMAIL": "root@example.com", "ADMIN_PASSWORD": PASSWORD}
    )

    assert result.returncode == 1
    assert "is an existing account that is not an admin" in result.stderr
    assert listed_rows(env)["root@example.com"][0] == "user"
