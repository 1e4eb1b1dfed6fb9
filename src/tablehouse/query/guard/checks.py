"""The guard's checks of one parsed statement: node types by allow-list, functions, tables,
parameters. Everything here is independent of who asks; dataset names are resolved later."""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.errors import UnsupportedError

from tablehouse.core.database import Backend
from tablehouse.errors import QueryRefused
from tablehouse.query.guard import functions, sizes
from tablehouse.query.guard.parsing import DIALECTS, Clock, generate, refused_at, start_of

# The most characters or bytes one call of repeat/lpad/rpad/randomblob/zeroblob may build.
MAX_GENERATED_SIZE = sizes.MAX_GENERATED_SIZE

FUNCTIONS_HINT = "see the list of allowed functions in docs/api.md"

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


class StatementChecks:
    """The checks for one parsed statement, with its text at hand so refusals can point into it."""

    def __init__(self, sql: str, backend: Backend, clock: Clock | None = None) -> None:
        self.sql = sql
        self.backend = backend
        self.clock = clock or Clock(None)
        self.nodes = 0  # in the tree checked, which its memory follows

    def check(self, tree: exp.Expr) -> exp.Expression:
        if not isinstance(tree, _QUERIES):
            raise self.not_read_only(tree)
        for node in tree.walk():
            self.nodes += 1
            self.clock.tick()
            self.check_node(node)
        self.check_sizes(tree)
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
        name = self.function_name(call)
        if sizes.generated_size(call) is None:
            raise self.refuse(
                f"the size given to {name}() must be a whole-number literal no larger than "
                f"{MAX_GENERATED_SIZE}",
                "argument_too_large",
                call,
            )

    def check_sizes(self, tree: exp.Expr) -> None:
        """What the statement builds stays bounded however its calls are composed."""
        problem = sizes.find_oversize(tree)
        if problem is None:
            return
        node = problem.node
        if problem.built is not None:
            what = "this expression"
            if isinstance(node, exp.Func) and sizes.generated_size(node) is not None:
                what = f"{self.function_name(node)}()"
            if problem.limit == sizes.MAX_STATEMENT_GENERATED:
                what = "the sized calls of a statement together"
            message = (
                f"{what} may build at most {problem.limit} characters or bytes; "
                f"this one could build {problem.built}"
            )
        elif problem.limit == sizes.MAX_REPEATED_PIECE:
            message = (
                "this is repeated once per row or per match (by string_agg, array_agg, "
                "json_agg, ... or a replacement that is not a literal), so it may build at "
                f"most {problem.limit} characters or bytes"
            )
        else:
            message = (
                "functions that multiply sizes (repeat, replace, regexp_replace, string_agg, "
                "array_agg, json_agg, ...) may not be applied to each other's results here"
            )
        raise self.refuse(message, "argument_too_large", node)

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
        if self.backend == Backend.SQLITE and not node.quoted and node.name[:1] in _PARAMETER_MARKS:
            raise self.refuse(f"{_NAMED_ONLY}; found '{node.name}'", "parameter_style", node)

    def check_column(self, node: exp.Column) -> None:
        word = node.this
        if (
            self.backend == Backend.POSTGRESQL
            and not node.table
            and isinstance(word, exp.Identifier)
            and not word.quoted
            and ascii_lower(word.name) in _SESSION_WORDS
        ):
            raise self.refuse(
                f"function '{word.name}' is not allowed; {FUNCTIONS_HINT}. To read a column "
                f'of that name, quote it: "{word.name}"',
                "function_not_allowed",
                node,
            )

    def check_dataset_name(self, table: exp.Table) -> None:
        name = ascii_lower(table.name)
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
            generate(tree, self.backend)
        except UnsupportedError as error:
            raise QueryRefused(
                f"this query uses syntax {self.backend} does not support: {error}",
                code="syntax_error",
            ) from None

    # -- what to say and where ------------------------------------------------------------

    def refuse(self, message: str, code: str, at: exp.Expr | int | None) -> QueryRefused:
        return refused_at(self.sql, message, code, at)

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
        start = start_of(node)
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
        return call.sql(dialect=DIALECTS[self.backend][0])

    def parameter_text(self, node: exp.Expr) -> str:
        start = start_of(node)
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


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(name: str) -> str:
    # Both backends fold only ASCII letters in names; lower() would fold more.
    return name.translate(_ASCII_LOWER)
