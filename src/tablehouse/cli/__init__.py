"""The ``tablehouse`` command."""

from __future__ import annotations

from typing import Any

import typer

from tablehouse.cli import analytics, db, importer, queries, query, schemas, serve, users

app = typer.Typer(
    name="tablehouse",
    help="Tablehouse: define datasets, load rows, query them in SQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.command("import")(importer.import_rows)
# A summary to list it by: click would cut the docstring's first sentence at 80 columns.
app.command("query", short_help="Run SQL as a user and print the answer.")(query.query)
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(schemas.app, name="schemas")
app.add_typer(queries.app, name="queries")
app.add_typer(analytics.app, name="analytics")


def plain_help(command: typer.Typer) -> None:
    """Help as click writes it, for ``command`` and every group under it. Typer's rich
    panels keep a docstring's line breaks mid-sentence, show ``<bool>`` after a flag, and
    read ``[default: HOST]`` in a help text as markup, dropping it; click's reflows the
    text to the terminal's width and writes flags as ``--flag`` or ``--flag/--no-flag``."""
    command.rich_markup_mode = None
    for group in command.registered_groups:
        if group.typer_instance is not None:
            plain_help(group.typer_instance)


def name_placeholders(command: Any) -> None:
    """Give every argument and option without a metavar one named after it (SQL, ADDRESS,
    TIMEOUT_MS): typer would otherwise write the Python type,
    ``<str>``, ``<list[str]>`` or ``<int range>``, which tells a reader nothing."""
    for param in command.params:
        if param.metavar is None and param.name and not getattr(param, "is_flag", False):
            param.metavar = param.name.upper()
    for sub in getattr(command, "commands", {}).values():
        name_placeholders(sub)


def command() -> Any:
    """The click command ``tablehouse`` runs: plain help, named placeholders."""
    plain_help(app)
    root = typer.main.get_command(app)
    name_placeholders(root)
    return root


def main() -> None:
    command()(prog_name="tablehouse")
