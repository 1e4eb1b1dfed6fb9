"""``tablehouse schemas``: list, show and create from the command line (real processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.processes import initialised_database, run_tablehouse

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return initialised_database(tmp_path, owner="o@example.com")


def test_create_list_show(env: dict[str, str], tmp_path: Path) -> None:
    definition = tmp_path / "products.json"
    definition.write_text(
        json.dumps(
            {
                "name": "products",
                "fields": [
                    {"name": "sku", "type": "string", "primary_key": True},
                    {"name": "price", "type": "float"},
                ],
            }
        )
    )
    created = run_tablehouse(
        "schemas", "create", "--file", str(definition), "--owner", "o@example.com", env=env
    )
    assert created.returncode == 0, created.stderr
    assert "created dataset products (2 fields)" in created.stdout
    listed = run_tablehouse("schemas", "list", "--owner", "o@example.com", env=env)
    assert "products" in listed.stdout
    shown = run_tablehouse("schemas", "show", "products", "--owner", "o@example.com", env=env)
    assert json.loads(shown.stdout)["fields"][1]["name"] == "price"
    again = run_tablehouse(
        "schemas", "create", "--file", str(definition), "--owner", "o@example.com", env=env
    )
    assert again.returncode == 1
    assert "already have a dataset named 'products'" in again.stderr


def test_invalid_definition_names_the_field(env: dict[str, str], tmp_path: Path) -> None:
    definition = tmp_path / "bad.json"
    definition.write_text(json.dumps({"name": "bad", "fields": [{"name": "x", "type": "string"}]}))
    result = run_tablehouse(
        "schemas", "create", "--file", str(definition), "--owner", "o@example.com", env=env
    )
    assert result.returncode == 1
    assert "fields: at least one field must be the primary key" in result.stderr


def test_unknown_owner_and_unknown_dataset(env: dict[str, str]) -> None:
    nobody = run_tablehouse("schemas", "list", "--owner", "nobody@example.com", env=env)
    assert nobody.returncode == 1
    assert "no user with email nobody@example.com" in nobody.stderr
    missing = run_tablehouse("schemas", "show", "nope", "--owner", "o@example.com", env=env)
    assert missing.returncode == 1
    assert "no dataset named 'nope'" in missing.stderr


def test_error_messages_show_user_text_literally(env: dict[str, str]) -> None:
    missing = run_tablehouse("schemas", "show", "[red]x[/red]", "--owner", "o@example.com", env=env)
    assert missing.returncode == 1
    assert "no dataset named '[red]x[/red]'" in missing.stderr
