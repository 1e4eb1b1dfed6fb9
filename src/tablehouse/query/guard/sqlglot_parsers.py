"""sqlglot's parsers, with hooks into its private methods: the only module that reaches
into sqlglot's internals.

Written for sqlglot 30 (checked with 30.30.0, the version in ``uv.lock``; ``pyproject.toml``
holds the range these hooks are known to work with). Each hook overrides a private
``Parser._parse_*``/``_advance`` method and calls it through ``super()``: a version that
renames or re-signs one of them needs this module, and only this module, looked at again.
``tests/query/test_guard.py`` (positions of refusals, the time limit) and
``tests/query/test_naming.py`` (the written span of each projection) say when they break.

What they do: give nodes sqlglot leaves without a position the position of their first
token, record the text span of each projection (:data:`WRITTEN_SPAN`), and look at the
check's clock as the parser moves from token to token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlglot import Token, exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.parser import Parser
from sqlglot.parsers.postgres import PostgresParser
from sqlglot.parsers.sqlite import SQLiteParser

from tablehouse.core.database import Backend

# Meta key of a projection: (start, end) offsets of its text, from its first token to the
# token after it (see guard/naming.py).
WRITTEN_SPAN = "tablehouse.written_span"


class Ticking(Protocol):
    """The check's clock (parsing.Clock): told of every token the parser moves past."""

    def tick(self) -> None: ...


class PositionedParser(Parser):
    """Gives nodes sqlglot leaves without a position the position of their first token,
    and looks at the check's clock as it moves from token to token.

    Only error messages read the positions. These hooks are private to sqlglot: should a
    version rename them, refusals lose their position for these nodes (or the parser its
    time limit; the token count still bounds it) and nothing else changes.
    """

    def __init__(self, *, dialect: Dialect, clock: Ticking) -> None:
        super().__init__(dialect=dialect)
        self.clock = clock

    def _advance(self, times: int = 1) -> None:
        super()._advance(times)
        self.clock.tick()

    def _parse_projections(self) -> tuple[list[exp.Expr], list[exp.Expr] | None]:
        return self._parse_csv(self._parse_spanned_projection), None

    def _parse_spanned_projection(self) -> exp.Expr | None:
        first = self._curr
        projection = self._parse_expression()
        if projection is not None and first is not None:
            end = self._curr.start if self._curr is not None else self._prev.end + 1
            projection.meta[WRITTEN_SPAN] = (first.start, end)
        return projection

    def _parse_statement(self) -> exp.Expr | None:
        start = self._curr
        return _stamped(start, super()._parse_statement())

    def _parse_function_call(
        self,
        functions: dict[str, Callable[..., Any]] | None = None,
        anonymous: bool = False,
        optional_parens: bool = True,
        any_token: bool = False,
    ) -> exp.Expr | None:
        start = self._curr
        call = super()._parse_function_call(functions, anonymous, optional_parens, any_token)
        return _stamped(start, call)

    def _parse_types(
        self,
        check_func: bool = False,
        schema: bool = False,
        allow_identifiers: bool = True,
        with_collation: bool = False,
    ) -> exp.Expr | None:
        start = self._curr
        parsed = super()._parse_types(check_func, schema, allow_identifiers, with_collation)
        return _stamped(start, parsed)

    def _parse_placeholder(self) -> exp.Expr | None:
        start = self._curr
        return _stamped(start, super()._parse_placeholder())

    def _parse_into(self) -> exp.Into | None:
        start = self._curr
        return _stamped(start, super()._parse_into())

    def _parse_locks(self) -> list[exp.Lock]:
        start = self._curr
        locks = super()._parse_locks()
        if locks:
            _stamped(start, locks[0])
        return locks


class _PostgresParser(PositionedParser, PostgresParser):
    pass


class _SQLiteParser(PositionedParser, SQLiteParser):
    pass


_Node = TypeVar("_Node", bound=exp.Expr | None)


def _stamped(token: Token, node: _Node) -> _Node:
    if node is not None and node.meta_get("start") is None:
        node.update_positions(token)
    return node


PARSERS: dict[Backend, type[PositionedParser]] = {
    Backend.POSTGRESQL: _PostgresParser,
    Backend.SQLITE: _SQLiteParser,
}
