"""The ``tablehouse`` command."""

from __future__ import annotations

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
app.command("query")(query.query)
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(schemas.app, name="schemas")
app.add_typer(queries.app, name="queries")
app.add_typer(analytics.app, name="analytics")


def main() -> None:
    app()
