"""Parsing for the guard: sqlglot in the backend's dialect, statements split by token, and
positions kept for the nodes sqlglot leaves without one, so refusals can point into the text."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from sqlglot import Token, TokenType, exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, ParseError, TokenError

from tablehouse.core.database import Backend
from tablehouse.errors import QueryRefused
from tablehouse.query.guard.sqlglot_parsers import PARSERS, WRITTEN_SPAN, PositionedParser

__all__ = ["DIALECTS", "WRITTEN_SPAN", "Budget", "Clock", "generate", "parse", "refused_at"]


@dataclass(frozen=True, slots=True)
class Budget:
    """What checking one statement may cost. sqlglot is pure Python: parsing, checking and
    rendering take time and memory in proportion to the tokens, and hold the GIL."""

    max_tokens: int  # QUERY_MAX_SQL_TOKENS
    cpu_ms: int  # QUERY_CHECK_TIMEOUT_MS: CPU time of the thread that checks it


class Clock:
    """The CPU time one check has used, on the thread doing it (time spent waiting for the
    GIL or for a worker thread does not count). Past the budget, the check is refused."""

    EVERY = 64  # steps between two looks at the clock (a look costs about 2 µs)

    def __init__(self, budget: Budget | None) -> None:
        self.budget = budget
        self._cpu_ms = budget.cpu_ms if budget is not None else 0
        self._until = math.inf if budget is None else time.thread_time() + budget.cpu_ms / 1000
        self._steps = 0

    def tick(self) -> None:
        self._steps += 1
        if self._steps % self.EVERY:
            return
        # Lets other threads run: sleep(0) releases the GIL, so the event loop waits for a
        # checking thread some 64 steps (about 1 ms), not a whole switch interval (5 ms).
        time.sleep(0)
        if time.thread_time() > self._until:
            raise QueryRefused(
                f"checking this query took more than {self._cpu_ms} ms "
                "(QUERY_CHECK_TIMEOUT_MS); make it shorter or simpler",
                code="query_too_complex",
            )


def parse(sql: str, backend: Backend, clock: Clock | None = None) -> exp.Expr:
    """The one statement in ``sql``, parsed, or QueryRefused (syntax, none, several, too
    many tokens or too long to parse for ``clock``'s budget)."""
    dialect, parser = DIALECTS[backend]
    clock = clock or Clock(None)
    try:
        tokens = dialect.tokenize(sql)
    except TokenError as error:
        raise refused_at(
            sql,
            "syntax error: a string, quoted name or comment is not closed",
            "syntax_error",
            _token_error_offset(error),
        ) from None
    _check_token_count(tokens, clock.budget)
    statements = _split(tokens)
    if not statements:
        raise QueryRefused("the query is empty; send one SELECT statement", code="empty_query")
    if len(statements) > 1:
        line, column = line_column(sql, statements[1][0].start)
        raise QueryRefused(
            f"only one statement may be sent; found a second one at line {line}, column {column}",
            code="multiple_statements",
            line=line,
            column=column,
        )
    try:
        tree = parser(dialect=dialect, clock=clock).parse(statements[0], sql)[0]
    except ParseError as error:
        raise _syntax_error(error) from None
    if tree is None:
        raise QueryRefused("the query is empty; send one SELECT statement", code="empty_query")
    return tree


def _check_token_count(tokens: list[Token], budget: Budget | None) -> None:
    if budget is not None and len(tokens) > budget.max_tokens:
        raise QueryRefused(
            f"the query has {len(tokens)} tokens (words, numbers, operators); at most "
            f"{budget.max_tokens} may be sent (QUERY_MAX_SQL_TOKENS)",
            code="query_too_complex",
        )


def generate(tree: exp.Expr, backend: Backend) -> str:
    # RAISE: sqlglot otherwise drops what the dialect cannot express, with only a log line.
    dialect = DIALECTS[backend][0]
    return tree.sql(dialect=dialect, comments=False, unsupported_level=ErrorLevel.RAISE)


def refused_at(sql: str, message: str, code: str, at: exp.Expr | int | None) -> QueryRefused:
    """A refusal pointing at ``at`` (a node, or an offset into ``sql``) when it is known."""
    offset = start_of(at) if isinstance(at, exp.Expr) else at
    if offset is None:
        return QueryRefused(message, code=code)
    line, column = line_column(sql, offset)
    return QueryRefused(message, code=code, line=line, column=column)


def start_of(node: exp.Expr) -> int | None:
    own = node.meta_get("start")
    if isinstance(own, int):
        return own
    starts = [s for n in node.walk() if isinstance(s := n.meta_get("start"), int)]
    return min(starts, default=None)


def line_column(sql: str, offset: int) -> tuple[int, int]:
    line = sql.count("\n", 0, offset) + 1
    return line, offset - sql.rfind("\n", 0, offset)


def _split(tokens: list[Token]) -> list[list[Token]]:
    statements: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            statements.append([])
        else:
            statements[-1].append(token)
    return [statement for statement in statements if statement]


def _syntax_error(error: ParseError) -> QueryRefused:
    detail = error.errors[0] if error.errors else {}
    line, column = detail.get("line"), detail.get("col")
    near = detail.get("highlight") or ""
    description = str(detail.get("description") or "")
    message = f"syntax error near '{near}'" if near else "syntax error"
    if description and "<" not in description:  # some quote sqlglot's internals
        message = f"{message}: {description}"
    if not isinstance(line, int) or not isinstance(column, int):
        return QueryRefused(message, code="syntax_error")
    if near and "\n" not in near:  # sqlglot points at the end of the token
        column = max(1, column - len(near) + 1)
    return QueryRefused(message, code="syntax_error", line=line, column=column)


def _token_error_offset(error: TokenError) -> int | None:
    # The cause reads "Missing ' from <line>:<offset>"; best effort, as it is only a message.
    found = re.search(r"from \d+:(\d+)$", str(error.__cause__ or ""))
    return int(found.group(1)) if found else None


# sqlglot's dialect and the parser (sqlglot_parsers) for each backend.
DIALECTS: dict[Backend, tuple[Dialect, type[PositionedParser]]] = {
    Backend.POSTGRESQL: (Dialect.get_or_raise("postgres"), PARSERS[Backend.POSTGRESQL]),
    Backend.SQLITE: (Dialect.get_or_raise("sqlite"), PARSERS[Backend.SQLITE]),
}
