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

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlglot import Token, TokenType, exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel, ParseError, TokenError, UnsupportedError
from sqlglot.parser import Parser
from sqlglot.parsers.postgres import PostgresParser
from sqlglot.parsers.sqlite import SQLiteParser

from tablehouse.errors import QueryRefused
from tablehouse.query import functions

Backend = Literal["postgresql", "sqlite"]

# The most characters or bytes one call of repeat/lpad/rpad/randomblob/zeroblob may build.
MAX_GENERATED_SIZE = 1_000_000

FUNCTIONS_HINT = "see the list of allowed functions in docs/api.md"


@dataclass(frozen=True, slots=True)
class Analysis:
    """A statement that passed every check that does not depend on who asks."""

    tree: exp.Expression  # the checked tree; never mutated after analyse() returns
    tables: frozenset[str]  # dataset names as written (identifier text, case kept)
    parameters: tuple[str, ...]  # named parameters in order of first appearance, each once


def analyse(sql: str, backend: Backend) -> Analysis:
    """Parse ``sql`` in the backend's dialect and check it, or raise :class:`QueryRefused`."""
    try:
        return _analyse(_Guard(sql, backend))
    except RecursionError:  # sqlglot parses and renders recursively
        raise QueryRefused("the query is nested too deeply", code="syntax_error") from None


def _analyse(guard: _Guard) -> Analysis:
    tree = guard.check(guard.parse())
    datasets = _dataset_tables(tree, guard.backend)
    for table in datasets:
        guard.check_dataset_name(table)
    guard.check_renders(tree)
    return Analysis(
        tree=tree,
        tables=frozenset(table.name for table in datasets),
        parameters=_parameters(tree),
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
    if backend == "postgresql":
        numbers = {name: number for number, name in enumerate(analysis.parameters, start=1)}
        for placeholder in list(tree.find_all(exp.Placeholder)):
            placeholder.replace(exp.Parameter(this=exp.Literal.number(numbers[placeholder.name])))
    return _generate(tree, backend)


# -- parsing ------------------------------------------------------------------------------


class _Positions(Parser):
    """Gives nodes sqlglot leaves without a position the position of their first token.

    Only error messages read them. These hooks are private to sqlglot: should a version
    rename them, refusals lose their position for these nodes and nothing else changes.
    """

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


class _PostgresParser(_Positions, PostgresParser):
    pass


class _SQLiteParser(_Positions, SQLiteParser):
    pass


_Node = TypeVar("_Node", bound=exp.Expr | None)


def _stamped(token: Token, node: _Node) -> _Node:
    if node is not None and node.meta_get("start") is None:
        node.update_positions(token)
    return node


_DIALECTS: dict[Backend, tuple[Dialect, type[Parser]]] = {
    "postgresql": (Dialect.get_or_raise("postgres"), _PostgresParser),
    "sqlite": (Dialect.get_or_raise("sqlite"), _SQLiteParser),
}


def _generate(tree: exp.Expr, backend: Backend) -> str:
    # RAISE: sqlglot otherwise drops what the dialect cannot express, with only a log line.
    dialect = _DIALECTS[backend][0]
    return tree.sql(dialect=dialect, comments=False, unsupported_level=ErrorLevel.RAISE)


# -- checks -------------------------------------------------------------------------------

_QUERIES = (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)

# Statements and clauses that write, lock or change the session, wherever they appear.
_WRITES = (
    exp.DML,  # INSERT, UPDATE, DELETE, MERGE, COPY
    exp.DDL,  # CREATE
    exp.Command,  # sqlglot's fallback for statements it does not model: EXPLAIN, VACUUM, ...
    exp.Into,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Set,
    exp.Pragma,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Attach,
    exp.Detach,
    exp.Analyze,
    exp.Grant,
    exp.Revoke,
    exp.Use,
    exp.LockingStatement,
    exp.Describe,
    exp.Show,
    exp.Execute,
)

# Everything else a read-only query is made of; functions are checked apart.
_STRUCTURE = (
    *_QUERIES,
    exp.With,
    exp.CTE,
    exp.From,
    exp.Join,
    exp.Lateral,
    exp.Table,
    exp.TableAlias,
    exp.Where,
    exp.Group,
    exp.Rollup,
    exp.Cube,
    exp.GroupingSets,
    exp.Having,
    exp.Window,
    exp.WindowSpec,
    exp.Filter,
    exp.WithinGroup,
    exp.Order,
    exp.Ordered,
    exp.Limit,
    exp.Offset,
    exp.Fetch,
    exp.LimitOptions,
    exp.Distinct,
    exp.Alias,
    exp.Column,
    exp.Identifier,
    exp.Star,
    exp.Dot,
    exp.Bracket,
    exp.Slice,
    exp.Tuple,
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.RawString,  # PostgreSQL $$dollar-quoted$$
    exp.ByteString,  # PostgreSQL E'escaped'
    exp.HexString,
    exp.BitString,
    exp.Placeholder,
    exp.DataType,
    exp.DataTypeParam,
    exp.Interval,
    exp.Var,
    exp.AtTimeZone,
    exp.JSONKeyValue,  # inside json_object(...)
    exp.JSONPath,
    exp.JSONPathKey,
    exp.JSONPathRoot,
    exp.JSONPathSubscript,
    exp.Binary,  # arithmetic, comparison, ||, LIKE, ...
    exp.Unary,  # NOT, -, parentheses
    exp.Predicate,  # IN, BETWEEN, IS, ANY, ALL, ...
)

# PostgreSQL reads these bare words as session functions, not as columns.
_SESSION_WORDS = frozenset(
    {"user", "current_user", "session_user", "current_role", "system_user"}
    | {"current_catalog", "current_schema"}
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAMETER_TEXT = re.compile(r'%\(\w*\)s|:"[^"]*"|[$@:?%]+\w*')
_WORD = re.compile(r"[A-Za-z_]+")
_NAMED_ONLY = "only named parameters like :name are supported"
_PARAMETER_MARKS = frozenset("$@:?#")


class _Guard:
    """The checks for one statement, with its text at hand so refusals can point into it."""

    def __init__(self, sql: str, backend: Backend) -> None:
        self.sql = sql
        self.backend = backend

    def parse(self) -> exp.Expr:
        dialect, parser = _DIALECTS[self.backend]
        try:
            tokens = dialect.tokenize(self.sql)
        except TokenError as error:
            raise self.refuse(
                "syntax error: a string, quoted name or comment is not closed",
                "syntax_error",
                _token_error_offset(error),
            ) from None
        statements = _split(tokens)
        if not statements:
            raise QueryRefused("the query is empty; send one SELECT statement", code="empty_query")
        if len(statements) > 1:
            line, column = _line_column(self.sql, statements[1][0].start)
            raise QueryRefused(
                f"only one statement may be sent; found a second one at line {line}, "
                f"column {column}",
                code="multiple_statements",
                line=line,
                column=column,
            )
        try:
            tree = parser(dialect=dialect).parse(statements[0], self.sql)[0]
        except ParseError as error:
            raise _syntax_error(error) from None
        if tree is None:
            raise QueryRefused("the query is empty; send one SELECT statement", code="empty_query")
        return tree

    def check(self, tree: exp.Expr) -> exp.Expression:
        if not isinstance(tree, _QUERIES):
            raise self.not_read_only(tree)
        for node in tree.walk():
            self.check_node(node)
        return tree

    def check_node(self, node: exp.Expr) -> None:
        if isinstance(node, _WRITES) or _misplaced_statement(node):
            raise self.not_read_only(node)
        if isinstance(node, exp.Lock):
            raise self.refuse(
                "locking clauses (FOR UPDATE, FOR SHARE, ...) are not allowed",
                "locking_clause",
                node,
            )
        if isinstance(node, exp.Placeholder | exp.Parameter | exp.SessionParameter):
            self.check_parameter(node)
        elif isinstance(node, exp.Func):
            self.check_call(node)
        elif isinstance(node, exp.DataType):
            self.check_type(node)
        elif isinstance(node, exp.Operator):
            raise self.refuse("OPERATOR(...) is not supported", "syntax_error", node)
        elif isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
            name = f"{node.this.sql()}.{self.function_name(node.expression)}"
            raise self.refuse(
                f"function '{name}' is not allowed: call functions by their plain name; "
                + FUNCTIONS_HINT,
                "function_not_allowed",
                node,
            )
        elif isinstance(node, exp.Table):
            self.check_table(node)
        elif isinstance(node, exp.In) and (node.args.get("field") or node.args.get("unnest")):
            # SQLite reads "x IN name" as a lookup in the table of that name.
            raise self.refuse("write IN (...) with a list or a subquery", "syntax_error", node)
        elif isinstance(node, exp.Identifier):
            self.check_identifier(node)
        elif isinstance(node, exp.Column):
            self.check_column(node)
        elif not isinstance(node, _STRUCTURE):
            raise self.refuse(
                f"{self.keyword(node)} is not supported in queries", "syntax_error", node
            )

    def check_parameter(self, node: exp.Expr) -> None:
        name = node.this if isinstance(node, exp.Placeholder) else None
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise self.refuse(
                f"{_NAMED_ONLY}; found '{self.parameter_text(node)}'", "parameter_style", node
            )
        if node.arg_key == "alias":
            raise self.refuse(f"':{name}' cannot be a column name", "syntax_error", node)

    def check_call(self, call: exp.Func) -> None:
        if isinstance(call, exp.Anonymous) and isinstance(call.this, exp.Identifier):
            raise self.refuse(
                f"function names may not be quoted; write {call.name}(...)",
                "function_not_allowed",
                call,
            )
        if not functions.is_allowed(call):
            raise self.refuse(
                f"function '{self.function_name(call)}' is not allowed; {FUNCTIONS_HINT}",
                "function_not_allowed",
                call,
            )
        if functions.size_argument(call) is not None:
            self.check_generated_size(call)

    def check_generated_size(self, call: exp.Func) -> None:
        """Bounds what one call builds, counting repeat() calls around it: repeat(repeat(...))."""
        name = self.function_name(call)
        size = _whole_number(functions.size_argument(call))
        if size is None:
            raise self.refuse(
                f"the size given to {name}() must be a whole-number literal no larger than "
                f"{MAX_GENERATED_SIZE}",
                "argument_too_large",
                call,
            )
        total = size
        for outer in _ancestors(call):
            if isinstance(outer, exp.Repeat):
                total *= _whole_number(functions.size_argument(outer)) or MAX_GENERATED_SIZE + 1
        if total > MAX_GENERATED_SIZE:
            raise self.refuse(
                f"{name}() may build at most {MAX_GENERATED_SIZE} characters or bytes; "
                f"this one could build {total}",
                "argument_too_large",
                call,
            )

    def check_type(self, node: exp.DataType) -> None:
        if isinstance(node, exp.ObjectIdentifier):
            raise self.refuse(
                f"type '{node.sql().lower()}' is not allowed: it reads the system catalogues",
                "table_not_allowed",
                node,
            )
        if node.this == exp.DataType.Type.USERDEFINED:
            raise self.refuse(
                f"type '{node.sql()}' is not supported; use a built-in type",
                "syntax_error",
                node,
            )

    def check_table(self, node: exp.Table) -> None:
        # sqlglot also uses Table for other names, such as SQLite's INDEXED BY index.
        in_from = isinstance(node.parent, exp.From | exp.Join | exp.Subquery)
        if not in_from or node.arg_key != "this":
            raise self.refuse(
                f"'{node.sql()}' is not supported here; datasets are read in FROM and JOIN",
                "syntax_error",
                node,
            )
        if not isinstance(node.this, exp.Identifier | exp.Func):
            raise self.refuse(f"'{node.sql()}' cannot be read from", "syntax_error", node)

    def check_identifier(self, node: exp.Identifier) -> None:
        # SQLite reads a bare $x, @x, :x, ?x or #x as a parameter; sqlglot reads $x as a name.
        if self.backend == "sqlite" and not node.quoted and node.name[:1] in _PARAMETER_MARKS:
            raise self.refuse(f"{_NAMED_ONLY}; found '{node.name}'", "parameter_style", node)

    def check_column(self, node: exp.Column) -> None:
        word = node.this
        if (
            self.backend == "postgresql"
            and not node.table
            and isinstance(word, exp.Identifier)
            and not word.quoted
            and _ascii_lower(word.name) in _SESSION_WORDS
        ):
            raise self.refuse(
                f"function '{word.name}' is not allowed; {FUNCTIONS_HINT}. To read a column "
                f'of that name, quote it: "{word.name}"',
                "function_not_allowed",
                node,
            )

    def check_dataset_name(self, table: exp.Table) -> None:
        name = _ascii_lower(table.name)
        if table.args.get("db") or table.args.get("catalog"):
            raise self.refuse(
                f"'{table.sql()}' is not allowed: name datasets without a schema or database",
                "table_not_allowed",
                table,
            )
        if name.startswith(("pg_", "sqlite_")) or name == "information_schema":
            raise self.refuse(
                f"'{table.name}' is not allowed: system catalogues cannot be queried",
                "table_not_allowed",
                table,
            )

    def check_renders(self, tree: exp.Expr) -> None:
        try:
            _generate(tree, self.backend)
        except UnsupportedError as error:
            raise QueryRefused(
                f"this query uses syntax {self.backend} does not support: {error}",
                code="syntax_error",
            ) from None

    # -- what to say and where ------------------------------------------------------------

    def refuse(self, message: str, code: str, at: exp.Expr | int | None) -> QueryRefused:
        offset = _start(at) if isinstance(at, exp.Expr) else at
        if offset is None:
            return QueryRefused(message, code=code)
        line, column = _line_column(self.sql, offset)
        return QueryRefused(message, code=code, line=line, column=column)

    def not_read_only(self, node: exp.Expr) -> QueryRefused:
        return self.refuse(
            "only read-only queries (SELECT, WITH, UNION/INTERSECT/EXCEPT) may run; "
            f"found {self.keyword(node)}",
            "not_read_only",
            node,
        )

    def keyword(self, node: exp.Expr) -> str:
        if isinstance(node, exp.Command):
            return str(node.this).upper()
        if isinstance(node, exp.Into):
            return "SELECT ... INTO"
        start = _start(node)
        word = _WORD.match(self.sql, start) if start is not None else None
        return word.group().upper() if word else node.key.upper()

    def function_name(self, call: exp.Func) -> str:
        """The name as written; for an operator sqlglot models as a function, its SQL."""
        if isinstance(call, exp.Anonymous):
            return call.name
        start, end = call.meta_get("start"), call.meta_get("end")
        if isinstance(start, int) and isinstance(end, int):
            written = self.sql[start : end + 1]
            if _NAME.fullmatch(written):
                return written
        return call.sql(dialect=_DIALECTS[self.backend][0])

    def parameter_text(self, node: exp.Expr) -> str:
        start = _start(node)
        written = _PARAMETER_TEXT.match(self.sql, start) if start is not None else None
        return written.group() if written else node.sql()


def _misplaced_statement(node: exp.Expr) -> bool:
    """Whether ``node`` stands where only a query may, as the body of a CTE or subquery."""
    if node.arg_key != "this" or isinstance(node, _QUERIES):
        return False
    if isinstance(node.parent, exp.CTE):
        return True
    # SQLite reads "FROM (t JOIN u ON ...)" as a subquery of a table.
    return isinstance(node.parent, exp.Subquery) and not isinstance(node, exp.Table)


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


def _start(node: exp.Expr) -> int | None:
    own = node.meta_get("start")
    if isinstance(own, int):
        return own
    starts = [s for n in node.walk() if isinstance(s := n.meta_get("start"), int)]
    return min(starts, default=None)


def _line_column(sql: str, offset: int) -> tuple[int, int]:
    line = sql.count("\n", 0, offset) + 1
    return line, offset - sql.rfind("\n", 0, offset)


def _ancestors(node: exp.Expr) -> list[exp.Expr]:
    found = []
    parent = node.parent
    while parent is not None:
        found.append(parent)
        parent = parent.parent
    return found


def _whole_number(node: exp.Expr | None) -> int | None:
    if isinstance(node, exp.Literal) and not node.is_string and node.name.isdigit():
        return int(node.name)
    return None


def _parameters(tree: exp.Expr) -> tuple[str, ...]:
    placeholders = sorted(tree.find_all(exp.Placeholder), key=lambda p: p.meta_get("start", 0))
    return tuple(dict.fromkeys(p.name for p in placeholders))


# -- which names are datasets ---------------------------------------------------------------

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(name: str) -> str:
    # Both backends fold only ASCII letters in names; lower() would fold more.
    return name.translate(_ASCII_LOWER)


def _dataset_tables(tree: exp.Expr, backend: Backend) -> list[exp.Table]:
    """The table references that name a dataset rather than a CTE in scope.

    A WITH's names are visible in its query and in the CTEs after them; a CTE sees itself
    only under RECURSIVE. Both backends agree on these rules. Where they might not (a
    forward reference, a self-reference without RECURSIVE, case folding) the reference
    counts as a dataset: render() then names a physical table, and no name is ever left for
    the database to resolve against tables of its own.
    """

    def key(name: exp.Identifier) -> str:
        folded = backend == "sqlite" or not name.quoted
        return _ascii_lower(name.name) if folded else name.name

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
