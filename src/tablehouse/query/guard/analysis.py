"""The guard: which SQL a user may run, decided before any database sees it.

A statement passes when it is one read-only query (SELECT, WITH, UNION/INTERSECT/EXCEPT,
VALUES) over plain dataset names that calls only allowed functions (:mod:`.functions`). The
guard does not know which datasets exist: it reports the names, and :func:`render` swaps
them for physical tables once the caller has resolved them.

The database never sees the user's text, only the checked tree rendered again by sqlglot.
So whatever sqlglot makes of a statement is what gets checked and what runs; comments are
left out of the rendering for the same reason. Node types are allowed by list: an unknown
construct is refused, not let through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlglot import exp

from tablehouse.core.database import Backend
from tablehouse.errors import QueryRefused
from tablehouse.query.guard.checks import MAX_GENERATED_SIZE, StatementChecks, ascii_lower
from tablehouse.query.guard.naming import name_columns
from tablehouse.query.guard.parsing import Budget, Clock, generate, parse

__all__ = ["MAX_GENERATED_SIZE", "Analysis", "Budget", "analyse", "release", "render"]


@dataclass(frozen=True, slots=True)
class Analysis:
    """A statement that passed every check that does not depend on who asks."""

    # The checked tree; never mutated after analyse() returns, but for its parent links,
    # cleared by release() once it is dropped (render() copies it, which reads none).
    tree: exp.Expression
    tables: frozenset[str]  # dataset names as written (identifier text, case kept)
    parameters: tuple[str, ...]  # named parameters in order of first appearance, each once
    ctes: frozenset[str]  # names of its common table expressions, ASCII lower case
    nodes: int  # how many nodes its tree has, which the memory it takes follows


def analyse(sql: str, backend: Backend, budget: Budget | None = None) -> Analysis:
    """Parse ``sql`` in the backend's dialect and check it, or raise :class:`QueryRefused`;
    refused as well when it has more tokens, or takes more CPU time, than ``budget`` allows
    (from the moment this is called, on the calling thread)."""
    try:
        return _analyse(sql, backend, Clock(budget))
    except RecursionError:  # sqlglot parses and renders recursively
        raise QueryRefused("the query is nested too deeply", code="syntax_error") from None


def _analyse(sql: str, backend: Backend, clock: Clock) -> Analysis:
    tree = parse(sql, backend, clock)
    try:
        return _checked(tree, StatementChecks(sql, backend, clock))
    except QueryRefused:
        release(tree)
        raise


def _checked(parsed: exp.Expr, guard: StatementChecks) -> Analysis:
    tree = guard.check(parsed)
    datasets = _dataset_tables(tree, guard.backend)
    for table in datasets:
        guard.check_dataset_name(table)
    aliases = name_columns(tree, guard.sql, guard.backend)
    guard.check_renders(tree)
    return Analysis(
        tree=tree,
        tables=frozenset(table.name for table in datasets),
        parameters=_parameters(tree),
        ctes=frozenset(ascii_lower(cte.alias) for cte in tree.find_all(exp.CTE)),
        nodes=guard.nodes + aliases,
    )


def render(analysis: Analysis, physical: Mapping[str, str], backend: Backend) -> str:
    """The statement as the backend's driver takes it, reading the physical tables.

    Each dataset keeps the name the user wrote as its alias, so qualified columns still
    resolve. Parameters become ``$1, $2, ...`` (asyncpg) or stay ``:name`` (sqlite3).
    """
    tree = analysis.tree.copy()
    for table in _dataset_tables(tree, backend):
        written = table.this
        alias = table.args.get("alias")
        if alias is None:
            table.set("alias", exp.TableAlias(this=written.copy()))
        elif not alias.this:
            alias.set("this", written.copy())
        table.set("this", exp.Identifier(this=physical[written.name], quoted=True))
    if backend == Backend.POSTGRESQL:
        numbers = {name: number for number, name in enumerate(analysis.parameters, start=1)}
        for placeholder in list(tree.find_all(exp.Placeholder)):
            placeholder.replace(exp.Parameter(this=exp.Literal.number(numbers[placeholder.name])))
    try:
        return generate(tree, backend)
    finally:
        release(tree)


def release(tree: exp.Expr) -> None:
    """Frees a tree no longer used as soon as it is dropped. Each node points to its parent,
    so a tree is garbage in cycles, which only the collector's rare full passes free: a few
    statements of 60 KB left hundreds of MB waiting for one."""
    for node in list(tree.walk()):
        node.parent = None


def _parameters(tree: exp.Expr) -> tuple[str, ...]:
    placeholders = sorted(tree.find_all(exp.Placeholder), key=lambda p: p.meta_get("start", 0))
    return tuple(dict.fromkeys(p.name for p in placeholders))


def _dataset_tables(tree: exp.Expr, backend: Backend) -> list[exp.Table]:
    """The table references that name a dataset rather than a CTE in scope.

    A WITH's names are visible in its query and in the CTEs after them; a CTE sees itself
    only under RECURSIVE. Both backends agree on these rules. Where they might not (a
    forward reference, a self-reference without RECURSIVE, case folding) the reference
    counts as a dataset: render() then names a physical table, and no name is ever left for
    the database to resolve against tables of its own.
    """

    def key(name: exp.Identifier) -> str:
        folded = backend == Backend.SQLITE or not name.quoted
        return ascii_lower(name.name) if folded else name.name

    found: list[exp.Table] = []
    stack: list[tuple[exp.Expr, frozenset[str]]] = [(tree, frozenset())]
    while stack:
        node, visible = stack.pop()
        with_ = node.args.get("with_")
        if isinstance(with_, exp.With):
            for cte in with_.expressions:
                name = key(cte.args["alias"].this)
                stack.append((cte.this, visible | {name} if with_.recursive else visible))
                visible = visible | {name}
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            qualified = node.args.get("db") or node.args.get("catalog")
            if qualified or key(node.this) not in visible:
                found.append(node)
        stack.extend((child, visible) for child in node.iter_expressions() if child is not with_)
    return found
