"""The query guard: what may run, what is refused (with code and position), and rendering."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from tablehouse.core.database import Backend
from tablehouse.errors import QueryRefused
from tablehouse.query.guard import MAX_GENERATED_SIZE, Analysis, analyse, functions, render
from tests.support.query_calls import (
    ALLOWED_CALLS_BOTH,
    ALLOWED_CALLS_POSTGRES,
    ALLOWED_CALLS_SQLITE,
)

DIALECTS: list[Backend] = [Backend.POSTGRESQL, Backend.SQLITE]
SQLGLOT_DIALECT = {"postgresql": "postgres", "sqlite": "sqlite"}


def refused(sql: str, dialect: Backend) -> QueryRefused:
    with pytest.raises(QueryRefused) as caught:
        analyse(sql, dialect)
    return caught.value


def physical_names(analysis: Analysis) -> dict[str, str]:
    return {name: f"ds_{index:04d}" for index, name in enumerate(sorted(analysis.tables))}


def rendered_tree(analysis: Analysis, dialect: Backend) -> tuple[str, exp.Expr]:
    sql = render(analysis, physical_names(analysis), dialect)
    return sql, sqlglot.parse_one(sql, read=SQLGLOT_DIALECT[dialect])


# -- accepted shapes ---------------------------------------------------------------------

SALES = frozenset({"sales"})
BOTH = frozenset({"sales", "returns"})

COMMON_SHAPES: list[tuple[str, frozenset[str], tuple[str, ...]]] = [
    ("SELECT a, b FROM sales", SALES, ()),
    ("  -- why ; not\nSELECT * FROM sales ; /* done; */ \n", SALES, ()),
    ("SELECT 1;;", frozenset(), ()),
    ("WITH s AS (SELECT * FROM sales) SELECT * FROM s", SALES, ()),
    (
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10) "
        "SELECT x FROM n",
        frozenset(),
        (),
    ),
    ("SELECT a FROM sales UNION SELECT a FROM returns", BOTH, ()),
    ("SELECT a FROM sales UNION ALL SELECT a FROM returns ORDER BY a LIMIT 3", BOTH, ()),
    ("SELECT a FROM sales INTERSECT SELECT a FROM returns", BOTH, ()),
    ("SELECT a FROM sales EXCEPT SELECT a FROM returns", BOTH, ()),
    ("(SELECT a FROM sales) UNION (SELECT a FROM returns)", BOTH, ()),
    ("SELECT * FROM (SELECT a FROM sales) AS t WHERE a IN (SELECT a FROM returns)", BOTH, ()),
    (
        "SELECT * FROM sales s JOIN customers c ON s.cid = c.id LEFT JOIN returns USING (id) "
        "CROSS JOIN regions",
        frozenset({"sales", "customers", "returns", "regions"}),
        (),
    ),
    (
        "SELECT region, count(*), sum(amount) AS total FROM sales GROUP BY region "
        "HAVING sum(amount) > :min",
        SALES,
        ("min",),
    ),
    (
        "SELECT row_number() OVER (PARTITION BY region ORDER BY day ROWS BETWEEN UNBOUNDED "
        "PRECEDING AND CURRENT ROW), sum(amount) OVER w, avg(amount) OVER (ORDER BY day "
        "RANGE BETWEEN 1 PRECEDING AND 1 FOLLOWING) FROM sales WINDOW w AS (PARTITION BY region)",
        SALES,
        (),
    ),
    (
        "SELECT CASE WHEN amount > 1 THEN 'big' ELSE 'small' END, "
        "CASE region WHEN 'n' THEN 1 END FROM sales",
        SALES,
        (),
    ),
    ("SELECT CAST(amount AS INTEGER), CAST(day AS TEXT) FROM sales", SALES, ()),
    ("SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v", frozenset(), ()),
    ("VALUES (1, 'a'), (2, 'b')", frozenset(), ()),
    ("SELECT a FROM sales ORDER BY a DESC, b LIMIT 10 OFFSET 5", SALES, ()),
    ("SELECT a FROM sales LIMIT :n OFFSET :skip", SALES, ("n", "skip")),
    ("SELECT DISTINCT region FROM sales", SALES, ()),
    (
        "SELECT a FROM sales WHERE a IN (1, 2) AND b BETWEEN 1 AND 2 AND c LIKE 'x%' "
        "AND d IS NULL AND e IS NOT NULL AND f NOT IN (3) AND NOT g",
        SALES,
        (),
    ),
    (
        "SELECT (SELECT max(amount) FROM returns) FROM sales s "
        "WHERE EXISTS (SELECT 1 FROM returns r WHERE r.id = s.id)",
        BOTH,
        (),
    ),
    (
        "SELECT :label AS label, amount * :rate FROM sales "
        "WHERE region = :region AND amount > :min AND :region IS NOT NULL",
        SALES,
        ("label", "rate", "region", "min"),
    ),
    ("SELECT a || 'x', -a, a * 2 / 3 - 1 % 2, (a + 1) FROM sales", SALES, ()),
    ('SELECT "Amount" FROM "Sales" AS "S"', frozenset({"Sales"}), ()),
]

POSTGRES_SHAPES: list[tuple[str, frozenset[str], tuple[str, ...]]] = [
    ("SELECT amount::int, day::date, '1.5'::numeric(10, 2), :p::text FROM sales", SALES, ("p",)),
    ("SELECT DISTINCT ON (region) region, amount FROM sales ORDER BY region, amount", SALES, ()),
    ("SELECT data -> 'a' ->> 'b', data #>> '{a,b}', data #> '{a}' FROM sales", SALES, ()),
    ("SELECT 1 FROM sales WHERE data @> '{}'::jsonb AND data ? 'k'", SALES, ()),
    ("SELECT b ILIKE 'x%', a IS DISTINCT FROM b FROM sales", SALES, ()),
    ("SELECT a FROM sales WHERE a = ANY(ARRAY[1, 2]) FETCH FIRST 3 ROWS ONLY", SALES, ()),
    ("SELECT * FROM (VALUES (1, 'a')) AS v(n, s)", frozenset(), ()),
    ("SELECT e.value FROM sales, json_array_elements(sales.data) AS e", SALES, ()),
    ("SELECT $$it's$$, E'a\\nb' FROM sales", SALES, ()),
    ("SELECT now() - interval '1 day', extract(year FROM day) FROM sales", SALES, ()),
]

SQLITE_SHAPES: list[tuple[str, frozenset[str], tuple[str, ...]]] = [
    ("SELECT json_extract(data, '$.a'), data -> '$.a', data ->> '$.b' FROM sales", SALES, ()),
    ("SELECT e.value FROM sales, json_each(sales.data) AS e", SALES, ()),
    ("SELECT a FROM sales WHERE b GLOB 'x*' AND c LIKE 'y%'", SALES, ()),
    ("SELECT * FROM (t JOIN u ON t.id = u.id)", frozenset({"t", "u"}), ()),
    ("SELECT :p::int, b ILIKE 'x' FROM sales", SALES, ("p",)),
]

SHAPES = [
    pytest.param(dialect, *shape, id=f"{dialect}-{shape[0][:40]}")
    for dialect in DIALECTS
    for shape in COMMON_SHAPES
] + [
    *(pytest.param(Backend.POSTGRESQL, *s, id=f"postgresql-{s[0][:40]}") for s in POSTGRES_SHAPES),
    *(pytest.param(Backend.SQLITE, *s, id=f"sqlite-{s[0][:40]}") for s in SQLITE_SHAPES),
]


@pytest.mark.parametrize(("dialect", "sql", "tables", "parameters"), SHAPES)
def test_read_only_shape_passes_reports_its_datasets_and_renders(
    dialect: Backend, sql: str, tables: frozenset[str], parameters: tuple[str, ...]
) -> None:
    analysis = analyse(sql, dialect)
    assert analysis.tables == tables
    assert analysis.parameters == parameters

    physical = set(physical_names(analysis).values())
    _, tree = rendered_tree(analysis, dialect)
    read = [table for table in tree.find_all(exp.Table) if table.name]
    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
    assert {table.name for table in read} <= physical | ctes
    assert physical <= {table.name for table in read}
    assert all(table.alias for table in read if table.name in physical)


# -- rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_render_reads_the_physical_table_under_the_name_the_user_wrote(dialect: Backend) -> None:
    analysis = analyse("SELECT sales.amount FROM sales WHERE sales.amount > 1", dialect)
    rendered = render(analysis, {"sales": "ds_0123abcd"}, dialect)
    assert rendered == ('SELECT sales.amount FROM "ds_0123abcd" AS sales WHERE sales.amount > 1')


@pytest.mark.parametrize("dialect", DIALECTS)
def test_render_keeps_the_users_alias(dialect: Backend) -> None:
    analysis = analyse("SELECT s.amount FROM sales AS s JOIN sales t ON s.id = t.id", dialect)
    rendered = render(analysis, {"sales": "ds_1"}, dialect)
    assert rendered == 'SELECT s.amount FROM "ds_1" AS s JOIN "ds_1" AS t ON s.id = t.id'


@pytest.mark.parametrize("dialect", DIALECTS)
def test_quoted_dataset_name_is_kept_exact(dialect: Backend) -> None:
    analysis = analyse('SELECT "Sales".amount FROM "Sales"', dialect)
    assert analysis.tables == {"Sales"}
    rendered = render(analysis, {"Sales": "ds_2"}, dialect)
    assert rendered == 'SELECT "Sales".amount FROM "ds_2" AS "Sales"'


@pytest.mark.parametrize("dialect", DIALECTS)
def test_unquoted_dataset_name_keeps_the_users_spelling(dialect: Backend) -> None:
    analysis = analyse("SELECT * FROM Sales JOIN sales AS s ON true", dialect)
    assert analysis.tables == {"Sales", "sales"}


def test_render_numbers_postgres_parameters_by_first_appearance() -> None:
    analysis = analyse(
        "SELECT :b, :a FROM sales WHERE x = :b AND y = :c LIMIT :a", Backend.POSTGRESQL
    )
    assert analysis.parameters == ("b", "a", "c")
    rendered = render(analysis, {"sales": "ds_3"}, Backend.POSTGRESQL)
    assert rendered == 'SELECT $1, $2 FROM "ds_3" AS sales WHERE x = $1 AND y = $3 LIMIT $2'


def test_render_keeps_sqlite_named_parameters() -> None:
    analysis = analyse("SELECT :b FROM sales WHERE x = :b AND y = :c", Backend.SQLITE)
    rendered = render(analysis, {"sales": "ds_3"}, Backend.SQLITE)
    assert rendered == 'SELECT :b FROM "ds_3" AS sales WHERE x = :b AND y = :c'


@pytest.mark.parametrize("dialect", DIALECTS)
def test_literals_with_colons_and_dollars_are_not_parameters(dialect: Backend) -> None:
    sql = "SELECT 'a:b', '$1', ':x', 'it''s ? %s @x' FROM sales WHERE c = :c"
    analysis = analyse(sql, dialect)
    assert analysis.parameters == ("c",)
    rendered = render(analysis, {"sales": "ds_4"}, dialect)
    # SQLite names each column by its text: an alias in double quotes repeats it.
    for literal in ("'a:b'", "'$1'", "':x'", "'it''s ? %s @x'"):
        assert f"SELECT {literal}" in rendered or f", {literal}" in rendered
    assert rendered.endswith("WHERE c = :c" if dialect == "sqlite" else "WHERE c = $1")


def test_render_keeps_postgres_casts_working() -> None:
    analysis = analyse("SELECT amount::int, :p::text, 'a::b' FROM sales", Backend.POSTGRESQL)
    rendered = render(analysis, {"sales": "ds_5"}, Backend.POSTGRESQL)
    assert rendered == (
        'SELECT CAST(amount AS INT) AS "amount", CAST($1 AS TEXT) AS "text", '
        "'a::b' FROM \"ds_5\" AS sales"
    )


@pytest.mark.parametrize("dialect", DIALECTS)
def test_render_leaves_the_analysed_tree_untouched(dialect: Backend) -> None:
    analysis = analyse("SELECT :p FROM sales", dialect)
    before = analysis.tree.sql()
    render(analysis, {"sales": "ds_6"}, dialect)
    render(analysis, {"sales": "ds_7"}, dialect)
    assert analysis.tree.sql() == before
    assert render(analysis, {"sales": "ds_8"}, dialect).count("ds_8") == 1


@pytest.mark.parametrize("dialect", DIALECTS)
def test_render_drops_comments(dialect: Backend) -> None:
    analysis = analyse("SELECT 1 -- */ DROP TABLE x; /*\n FROM sales", dialect)
    rendered = render(analysis, {"sales": "ds_9"}, dialect)
    if dialect == "postgresql":
        assert rendered == 'SELECT 1 FROM "ds_9" AS sales'
    else:  # SQLite names the column by its text, comment included: a quoted name, not SQL
        assert rendered == 'SELECT 1 AS "1 -- */ DROP TABLE x; /*" FROM "ds_9" AS sales'


@pytest.mark.parametrize("dialect", DIALECTS)
def test_render_needs_every_dataset(dialect: Backend) -> None:
    analysis = analyse("SELECT * FROM sales, returns", dialect)
    with pytest.raises(KeyError):
        render(analysis, {"sales": "ds_1"}, dialect)


# -- common table expressions ----------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cte_named_like_a_dataset_is_not_a_dataset_reference(dialect: Backend) -> None:
    analysis = analyse("WITH sales AS (SELECT 1 AS a) SELECT * FROM sales", dialect)
    assert analysis.tables == frozenset()
    assert render(analysis, {}, dialect) == "WITH sales AS (SELECT 1 AS a) SELECT * FROM sales"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cte_in_a_subquery_does_not_hide_an_outer_reference(dialect: Backend) -> None:
    sql = (
        "SELECT * FROM (WITH sales AS (SELECT 1 AS a) SELECT * FROM sales) AS x JOIN sales ON true"
    )
    analysis = analyse(sql, dialect)
    assert analysis.tables == {"sales"}
    rendered = render(analysis, {"sales": "ds_1"}, dialect)
    assert 'JOIN "ds_1" AS sales' in rendered
    assert "SELECT * FROM sales)" in rendered


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cte_is_visible_in_nested_subqueries_and_both_sides_of_a_union(dialect: Backend) -> None:
    sql = (
        "WITH s AS (SELECT 1 AS a) SELECT * FROM s WHERE a IN (SELECT a FROM s) "
        "UNION SELECT * FROM (SELECT * FROM s) AS x"
    )
    assert analyse(sql, dialect).tables == frozenset()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_recursive_cte_refers_to_itself(dialect: Backend) -> None:
    sql = (
        "WITH RECURSIVE walk(id) AS (SELECT id FROM nodes WHERE id = :root "
        "UNION ALL SELECT e.dst FROM edges e JOIN walk w ON e.src = w.id) SELECT * FROM walk"
    )
    analysis = analyse(sql, dialect)
    assert analysis.tables == {"nodes", "edges"}
    assert analysis.parameters == ("root",)
    rendered = render(analysis, {"nodes": "ds_n", "edges": "ds_e"}, dialect)
    assert "JOIN walk AS w" in rendered


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cte_without_recursive_reads_the_dataset_of_its_own_name(dialect: Backend) -> None:
    analysis = analyse("WITH a AS (SELECT * FROM a) SELECT * FROM a", dialect)
    assert analysis.tables == {"a"}
    rendered = render(analysis, {"a": "ds_a"}, dialect)
    assert rendered == 'WITH a AS (SELECT * FROM "ds_a" AS a) SELECT * FROM a'


@pytest.mark.parametrize("dialect", DIALECTS)
def test_reference_to_a_later_cte_counts_as_a_dataset(dialect: Backend) -> None:
    analysis = analyse("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", dialect)
    assert analysis.tables == {"b"}


def test_postgres_cte_matches_names_as_postgres_folds_them() -> None:
    analysis = analyse('WITH Foo AS (SELECT 1) SELECT * FROM foo, FOO, "Foo"', Backend.POSTGRESQL)
    assert analysis.tables == {"Foo"}  # only the quoted one misses the folded CTE name


def test_sqlite_cte_matches_names_without_case() -> None:
    analysis = analyse('WITH Foo AS (SELECT 1) SELECT * FROM foo, FOO, "Foo"', Backend.SQLITE)
    assert analysis.tables == frozenset()


# -- statements ----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("sql", "line", "column"),
    [
        ("SELECT 1; DROP TABLE t", 1, 11),
        ("SELECT 1; SELECT 2", 1, 11),
        ("SELECT 1 -- first\n;\n  SELECT 2;", 3, 3),
    ],
)
def test_second_statement_is_refused_where_it_starts(
    dialect: Backend, sql: str, line: int, column: int
) -> None:
    error = refused(sql, dialect)
    assert error.code == "multiple_statements"
    assert (error.line, error.column) == (line, column)
    assert error.message == (
        f"only one statement may be sent; found a second one at line {line}, column {column}"
    )


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "sql", ["SELECT 1 -- a; comment\n", "SELECT 1 /* ; */ ;", "SELECT ';' ; -- ;"]
)
def test_semicolon_in_a_comment_or_string_is_not_a_second_statement(
    dialect: Backend, sql: str
) -> None:
    assert analyse(sql, dialect).tables == frozenset()


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("sql", ["", "   \n", "-- only a comment", "/* ; */", ";", " ; ; "])
def test_statement_of_only_comments_or_whitespace_is_empty(dialect: Backend, sql: str) -> None:
    assert refused(sql, dialect).code == "empty_query"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("sql", ["else", "  ELSE"])
def test_a_keyword_that_starts_no_statement_is_a_syntax_error_not_a_crash(
    dialect: Backend, sql: str
) -> None:
    """Found by the fuzzer: sqlglot parses a lone ELSE into no statement at all."""
    error = refused(sql, dialect)
    assert error.code == "syntax_error"
    assert error.message == f"syntax error near '{sql.split()[0]}'"
    assert (error.line, error.column) == (1, sql.index(sql.split()[0]) + 1)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_syntax_error_points_at_the_offending_token(dialect: Backend) -> None:
    error = refused("SELECT a\n  FROM WHERE", dialect)
    assert error.code == "syntax_error"
    assert (error.line, error.column) == (2, 8)
    assert "WHERE" in error.message


@pytest.mark.parametrize("dialect", DIALECTS)
def test_unterminated_string_is_a_syntax_error(dialect: Backend) -> None:
    error = refused("SELECT 'abc FROM sales", dialect)
    assert error.code == "syntax_error"
    assert (error.line, error.column) == (1, 8)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_too_deeply_nested_query_is_refused(dialect: Backend) -> None:
    error = refused("SELECT " + "(" * 3000 + "1" + ")" * 3000, dialect)
    assert error.code == "syntax_error"


WRITES_BOTH = [
    ("INSERT INTO t VALUES (1)", "INSERT"),
    ("UPDATE t SET a = 1", "UPDATE"),
    ("DELETE FROM t", "DELETE"),
    ("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", "MERGE"),
    ("DROP TABLE t", "DROP"),
    ("CREATE TABLE x (a int)", "CREATE"),
    ("CREATE VIEW v AS SELECT 1", "CREATE"),
    ("ALTER TABLE t ADD COLUMN b int", "ALTER"),
    ("TRUNCATE t", "TRUNCATE"),
    ("COPY t TO STDOUT", "COPY"),
    ("GRANT SELECT ON t TO x", "GRANT"),
    ("SET search_path = x", "SET"),
    ("RESET search_path", "RESET"),
    ("SHOW search_path", "SHOW"),
    ("EXPLAIN SELECT 1", "EXPLAIN"),
    ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN"),
    ("VACUUM", "VACUUM"),
    ("ANALYZE t", "ANALYZE"),
    ("PRAGMA table_info(t)", "PRAGMA"),
    ("DETACH y", "DETACH"),
    ("BEGIN", "BEGIN"),
    ("COMMIT", "COMMIT"),
    ("ROLLBACK", "ROLLBACK"),
    ("CALL f()", "CALL"),
    ("LISTEN x", "LISTEN"),
    ("NOTIFY x", "NOTIFY"),
    ("SAVEPOINT a", "SAVEPOINT"),
    ("PREPARE p AS SELECT 1", "PREPARE"),
    ("EXECUTE p", "EXECUTE"),
]
WRITES_POSTGRES = [("DO $$ BEGIN END $$", "DO"), ("LOCK TABLE t", "LOCK")]
WRITES_SQLITE = [("ATTACH 'other.db' AS other", "ATTACH"), ("REPLACE INTO t VALUES (1)", "REPLACE")]


@pytest.mark.parametrize(
    ("dialect", "sql", "keyword"),
    [
        *((d, sql, keyword) for d in DIALECTS for sql, keyword in WRITES_BOTH),
        *((Backend.POSTGRESQL, sql, keyword) for sql, keyword in WRITES_POSTGRES),
        *((Backend.SQLITE, sql, keyword) for sql, keyword in WRITES_SQLITE),
    ],
)
def test_statement_that_is_not_a_query_is_refused(dialect: Backend, sql: str, keyword: str) -> None:
    error = refused(sql, dialect)
    assert error.code == "not_read_only"
    assert error.message == (
        f"only read-only queries (SELECT, WITH, UNION/INTERSECT/EXCEPT) may run; found {keyword}"
    )
    assert (error.line, error.column) == (1, 1)


def test_table_shorthand_reads_the_dataset_on_postgres_only() -> None:
    analysis = analyse("TABLE sales", Backend.POSTGRESQL)
    assert (
        render(analysis, {"sales": "ds_1"}, Backend.POSTGRESQL) == 'SELECT * FROM "ds_1" AS sales'
    )
    assert refused("TABLE sales", Backend.SQLITE).code == "not_read_only"


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        (Backend.POSTGRESQL, "ATTACH 'other.db' AS other"),
        (Backend.SQLITE, "DO $$ BEGIN END $$"),
        (Backend.SQLITE, "LOCK TABLE t"),
    ],
)
def test_statement_foreign_to_the_dialect_is_a_syntax_error(dialect: Backend, sql: str) -> None:
    assert refused(sql, dialect).code == "syntax_error"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("sql", "keyword", "column"),
    [
        ("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", "DELETE", 12),
        ("WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", "INSERT", 12),
        ("WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x", "UPDATE", 12),
        ("WITH x AS (VACUUM) SELECT 1", "VACUUM", 12),
        ("WITH x AS (LISTEN y) SELECT 1", "LISTEN", 12),
        ("WITH x AS (SELECT 1) DELETE FROM t", "DELETE", 22),
        ("SELECT * INTO newtable FROM t", "SELECT ... INTO", 10),
        ("SELECT 1 INTO TEMP x", "SELECT ... INTO", 10),
    ],
)
def test_write_nested_in_a_query_is_refused(
    dialect: Backend, sql: str, keyword: str, column: int
) -> None:
    error = refused(sql, dialect)
    assert error.code == "not_read_only"
    assert error.message.endswith(f"found {keyword}")
    assert (error.line, error.column) == (1, column)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("sql", "column"),
    [
        ("SELECT * FROM t FOR UPDATE", 17),
        ("SELECT * FROM t FOR SHARE", 17),
        ("SELECT * FROM t FOR NO KEY UPDATE", 17),
        ("SELECT * FROM t FOR KEY SHARE", 17),
        ("SELECT * FROM t FOR UPDATE OF t SKIP LOCKED", 17),
        ("SELECT * FROM (SELECT * FROM t FOR UPDATE) AS s", 32),
        ("(SELECT * FROM t LIMIT 1 FOR SHARE)", 26),
    ],
)
def test_locking_clause_is_refused(dialect: Backend, sql: str, column: int) -> None:
    error = refused(sql, dialect)
    assert error.code == "locking_clause"
    assert (error.line, error.column) == (1, column)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_construct_outside_the_allow_list_is_refused(dialect: Backend) -> None:
    error = refused("SELECT * FROM t TABLESAMPLE SYSTEM (10)", dialect)
    assert error.code == "syntax_error"
    assert "TABLESAMPLE" in error.message


def test_syntax_sqlglot_cannot_render_for_sqlite_is_refused() -> None:
    # sqlglot would silently drop the column names, changing what the query means.
    error = refused("SELECT * FROM (VALUES (1, 'a')) AS v(n, s)", Backend.SQLITE)
    assert error.code == "syntax_error"
    assert "not supported" in error.message


# -- tables --------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("sql", "column"),
    [
        ("SELECT * FROM public.t", 15),
        ('SELECT * FROM "public"."t"', 15),
        ("SELECT * FROM main.t", 15),
        ("SELECT * FROM temp.t", 15),
        ("SELECT * FROM a.b.c", 15),
        ("SELECT * FROM pg_catalog.pg_class", 15),
        ("SELECT * FROM information_schema.tables", 15),
        ("SELECT * FROM sales JOIN main.sqlite_master ON true", 26),
        ("SELECT * FROM sales WHERE a IN (SELECT a FROM other.t)", 47),
    ],
)
def test_qualified_table_name_is_refused(dialect: Backend, sql: str, column: int) -> None:
    error = refused(sql, dialect)
    assert error.code == "table_not_allowed"
    assert (error.line, error.column) == (1, column)
    assert "without a schema or database" in error.message


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("sql", "name"),
    [
        ("SELECT * FROM pg_class", "pg_class"),
        ('SELECT * FROM "pg_authid"', "pg_authid"),
        ("SELECT * FROM PG_STAT_ACTIVITY", "PG_STAT_ACTIVITY"),
        ("SELECT * FROM sqlite_master", "sqlite_master"),
        ('SELECT * FROM "sqlite_schema"', "sqlite_schema"),
        ("SELECT * FROM information_schema", "information_schema"),
        ("WITH x AS (SELECT * FROM pg_user) SELECT * FROM x", "pg_user"),
    ],
)
def test_system_catalogue_is_refused(dialect: Backend, sql: str, name: str) -> None:
    error = refused(sql, dialect)
    assert error.code == "table_not_allowed"
    assert error.message == f"'{name}' is not allowed: system catalogues cannot be queried"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_in_followed_by_a_bare_name_is_refused(dialect: Backend) -> None:
    # SQLite would look the value up in the table of that name, bypassing the dataset names.
    error = refused("SELECT 1 FROM sales WHERE 5 NOT IN users", dialect)
    assert error.code == "syntax_error"
    assert analyse("SELECT 1 FROM sales WHERE 5 IN (users)", dialect).tables == SALES


def test_sqlite_index_name_is_not_a_dataset() -> None:
    error = refused("SELECT a FROM sales INDEXED BY sales_idx", Backend.SQLITE)
    assert error.code == "syntax_error"
    assert (error.line, error.column) == (1, 32)


@pytest.mark.parametrize(
    ("dialect", "sql", "code"),
    [
        (Backend.POSTGRESQL, "SELECT 'pg_class'::regclass", "table_not_allowed"),
        (Backend.POSTGRESQL, "SELECT CAST(16384 AS regclass)", "table_not_allowed"),
        (Backend.POSTGRESQL, "SELECT (null::users).*", "syntax_error"),
        (Backend.SQLITE, "SELECT CAST(1 AS users)", "syntax_error"),
    ],
)
def test_casts_to_catalogue_and_table_types_are_refused(
    dialect: Backend, sql: str, code: str
) -> None:
    assert refused(sql, dialect).code == code


# -- parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "sql", "found"),
    [
        (Backend.POSTGRESQL, "SELECT * FROM t WHERE a = $1", "$1"),
        (Backend.POSTGRESQL, "SELECT * FROM t WHERE a = ?", "?"),
        (Backend.POSTGRESQL, "SELECT * FROM t WHERE a = %s", "%s"),
        (Backend.POSTGRESQL, "SELECT * FROM t WHERE a = %(x)s", "%(x)s"),
        (Backend.POSTGRESQL, "SELECT * FROM t WHERE a = @x", "@x"),
        (Backend.POSTGRESQL, "SELECT * FROM t WHERE a = $x", "$x"),
        (Backend.POSTGRESQL, 'SELECT * FROM t WHERE a = :"x y"', ':"x y"'),
        (Backend.SQLITE, "SELECT * FROM t WHERE a = $1", "$1"),
        (Backend.SQLITE, "SELECT * FROM t WHERE a = ?", "?"),
        (Backend.SQLITE, "SELECT * FROM t WHERE a = @x", "@x"),
        (Backend.SQLITE, "SELECT * FROM t WHERE a = $x", "$x"),
        (Backend.SQLITE, 'SELECT * FROM t WHERE a = :"x y"', ':"x y"'),
    ],
)
def test_parameter_style_other_than_named_is_refused(
    dialect: Backend, sql: str, found: str
) -> None:
    error = refused(sql, dialect)
    assert error.code == "parameter_style"
    assert (error.line, error.column) == (1, 27)
    assert error.message == f"only named parameters like :name are supported; found '{found}'"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_quoted_name_starting_with_a_parameter_mark_is_a_column(dialect: Backend) -> None:
    assert analyse('SELECT "$x", "@y" FROM t', dialect).parameters == ()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_named_parameter_cannot_be_a_column_alias(dialect: Backend) -> None:
    error = refused("SELECT a:b FROM t", dialect)
    assert error.code == "syntax_error"
    assert (error.line, error.column) == (1, 9)


# -- functions -----------------------------------------------------------------------------


def _calls(dialects: list[Backend], groups: dict[str, list[str]]) -> list[object]:
    return [
        pytest.param(dialect, call, id=f"{dialect}-{group}-{call}")
        for dialect in dialects
        for group, calls in groups.items()
        for call in calls
    ]


@pytest.mark.parametrize(
    ("dialect", "call"),
    _calls(DIALECTS, ALLOWED_CALLS_BOTH)
    + _calls([Backend.POSTGRESQL], ALLOWED_CALLS_POSTGRES)
    + _calls([Backend.SQLITE], ALLOWED_CALLS_SQLITE),
)
def test_allowed_function_passes(dialect: Backend, call: str) -> None:
    analysis = analyse(f"SELECT {call} FROM sales", dialect)
    assert analysis.tables == SALES
    _, tree = rendered_tree(analysis, dialect)
    assert tree.find(exp.Table) is not None


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "call",
    [
        "json_each(sales.data)",
        "jsonb_each(sales.data)",
        "json_array_elements(sales.data)",
        "jsonb_array_elements(sales.data)",
    ],
)
def test_json_table_function_may_be_read_from(dialect: Backend, call: str) -> None:
    analysis = analyse(f"SELECT e.* FROM sales, {call} AS e", dialect)
    assert analysis.tables == SALES


REFUSED_CALLS = [
    ("pg_sleep(1)", "pg_sleep"),
    ("PG_SLEEP(1)", "PG_SLEEP"),
    ("pg_sleep_for('1 second')", "pg_sleep_for"),
    ("pg_sleep_until(now())", "pg_sleep_until"),
    ("set_config('a', 'b', false)", "set_config"),
    ("current_setting('a')", "current_setting"),
    ("query_to_xml('select 1', true, true, '')", "query_to_xml"),
    ("pg_read_file('x')", "pg_read_file"),
    ("pg_read_binary_file('x')", "pg_read_binary_file"),
    ("pg_ls_dir('.')", "pg_ls_dir"),
    ("lo_import('x')", "lo_import"),
    ("lo_export(1, 'x')", "lo_export"),
    ("dblink('a', 'b')", "dblink"),
    ("dblink_exec('a', 'b')", "dblink_exec"),
    ("load_extension('x')", "load_extension"),
    ("pg_terminate_backend(1)", "pg_terminate_backend"),
    ("pg_cancel_backend(1)", "pg_cancel_backend"),
    ("txid_current()", "txid_current"),
    ("pg_advisory_lock(1)", "pg_advisory_lock"),
    ("pg_advisory_xact_lock(1)", "pg_advisory_xact_lock"),
    ("nextval('s')", "nextval"),
    ("setval('s', 1)", "setval"),
    ("generate_series(1, 3)", "generate_series"),
    ("pragma_table_info('users')", "pragma_table_info"),
    ("readfile('x')", "readfile"),
    ("writefile('x', 'y')", "writefile"),
    ("fts3_tokenizer('x')", "fts3_tokenizer"),
    ("version()", "version"),
    ("sqlite_version()", "sqlite_version"),
    ("current_user", "current_user"),
    ("current_database()", "current_database"),
    ("format('%s', b)", "format"),
    ("printf('%d', a)", "printf"),
    ("has_table_privilege('t', 'select')", "has_table_privilege"),
    ("to_regclass('t')", "to_regclass"),
]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("call", "name"), REFUSED_CALLS)
def test_dangerous_function_is_refused_at_its_name(dialect: Backend, call: str, name: str) -> None:
    error = refused(f"SELECT {call} FROM sales", dialect)
    assert error.code == "function_not_allowed"
    assert error.message == (
        f"function '{name}' is not allowed; see the list of allowed functions in docs/api.md"
    )
    assert (error.line, error.column) == (1, 8)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM generate_series(1, 3) AS g",
        "SELECT * FROM pragma_table_info('users')",
        "SELECT * FROM sales, pg_ls_dir('.')",
        "SELECT * FROM sales WHERE a = (SELECT pg_sleep(1))",
        "WITH x AS (SELECT current_setting('a') AS s) SELECT * FROM x",
        "SELECT count(*) FILTER (WHERE pg_sleep(1) IS NULL) FROM sales",
    ],
)
def test_refused_function_is_found_wherever_it_is_called(dialect: Backend, sql: str) -> None:
    assert refused(sql, dialect).code == "function_not_allowed"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("sql", "name"),
    [
        ("SELECT pg_catalog.pg_sleep(1)", "pg_catalog.pg_sleep"),
        ("SELECT pg_catalog.lower(b) FROM t", "pg_catalog.lower"),
        ("SELECT public.f(1)", "public.f"),
    ],
)
def test_qualified_function_name_is_refused(dialect: Backend, sql: str, name: str) -> None:
    error = refused(sql, dialect)
    assert error.code == "function_not_allowed"
    assert error.message.startswith(f"function '{name}' is not allowed")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_quoted_function_name_is_refused_unless_sqlglot_knows_it(dialect: Backend) -> None:
    assert refused('SELECT "pg_sleep"(1)', dialect).code == "function_not_allowed"
    assert refused('SELECT "every"(a) FROM t', dialect).code == "function_not_allowed"
    assert analyse('SELECT "lower"(b) FROM t', dialect).tables == {"t"}


@pytest.mark.parametrize(
    "word", ["user", "current_role", "session_user", "current_catalog", "current_schema"]
)
def test_postgres_session_word_is_a_function_unless_quoted(word: str) -> None:
    error = refused(f"SELECT {word} FROM t", Backend.POSTGRESQL)
    assert error.code == "function_not_allowed"
    assert (error.line, error.column) == (1, 8)
    assert analyse(f'SELECT "{word}", t.{word} FROM t', Backend.POSTGRESQL).tables == {"t"}


def test_sqlite_reads_user_as_a_column() -> None:
    assert analyse("SELECT user FROM t", Backend.SQLITE).tables == {"t"}


def test_allow_list_names_are_lowercase_and_exclude_dangerous_ones() -> None:
    assert all(name == name.lower() for name in functions.ALLOWED_NAMES)
    for _, name in REFUSED_CALLS:
        assert name.lower() not in functions.ALLOWED_NAMES


# -- resource burners ----------------------------------------------------------------------


def test_generated_size_limit_is_one_million() -> None:
    assert MAX_GENERATED_SIZE == 1_000_000


@pytest.mark.parametrize(
    ("dialect", "call"),
    [
        (Backend.POSTGRESQL, "repeat(b, 1000000)"),
        (Backend.POSTGRESQL, "lpad(b, 1000000, 'x')"),
        (Backend.POSTGRESQL, "rpad(b, 1000000)"),
        (Backend.SQLITE, "randomblob(1000000)"),
        (Backend.SQLITE, "zeroblob(1000000)"),
        (Backend.POSTGRESQL, "repeat(repeat(b, 1000), 1000)"),
        (Backend.POSTGRESQL, "lpad(repeat(b, 1000000), 10)"),
    ],
)
def test_generator_up_to_the_limit_passes(dialect: Backend, call: str) -> None:
    assert analyse(f"SELECT {call} FROM t", dialect).tables == {"t"}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("call", "name"),
    [
        ("repeat(b, 1000001)", "repeat"),
        ("lpad(b, 2000000, 'x')", "lpad"),
        ("rpad(b, 1000001)", "rpad"),
        ("randomblob(1000001)", "randomblob"),
        ("zeroblob(99999999999)", "zeroblob"),
    ],
)
def test_generator_above_the_limit_is_refused(dialect: Backend, call: str, name: str) -> None:
    error = refused(f"SELECT {call} FROM t", dialect)
    assert error.code == "argument_too_large"
    assert error.message.startswith(f"{name}() may build at most 1000000 characters or bytes")
    assert (error.line, error.column) == (1, 8)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "call", ["repeat(b, :n)", "repeat(b, a)", "repeat(b, -1)", "zeroblob(1 + 1)", "rpad(b, 1.5)"]
)
def test_generator_size_must_be_a_whole_number_literal(dialect: Backend, call: str) -> None:
    error = refused(f"SELECT {call} FROM t", dialect)
    assert error.code == "argument_too_large"
    assert "must be a whole-number literal no larger than 1000000" in error.message


@pytest.mark.parametrize("dialect", DIALECTS)
def test_nested_repeat_multiplies_its_size(dialect: Backend) -> None:
    error = refused("SELECT repeat(upper(repeat(b, 1001)), 1000) FROM t", dialect)
    assert error.code == "argument_too_large"
    assert error.message.endswith("this one could build 1001000")
    assert (error.line, error.column) == (1, 21)


# -- functions that multiply sizes -----------------------------------------------------------

MULTIPLIED_PAST_THE_LIMIT = [
    ("replace(repeat('a', 1000000), 'a', repeat('b', 300))", "could build 300000000"),
    ("repeat('x', 1000000) || repeat('x', 1000000)", "could build 2000000"),
    ("concat(lpad(b, 600000), rpad(b, 600000))", "could build 1200000"),
    ("repeat('abc', 1000000)", "could build 3000000"),
    ("regexp_replace(repeat('a', 1000000), 'a', 'bb', 'g')", "could build 3000003"),
    ("string_agg(repeat('x', 1000000), '')", "once per row"),
    ("string_agg(b, repeat(',', 5000))", "once per row"),
    ("json_agg(lpad(b, 2000))", "once per row"),
    ("replace(b, 'a', repeat(c, 1000))", "applied to each other's results"),
    ("replace(replace(b, 'a', c), 'a', c)", "applied to each other's results"),
    ("string_agg(replace(b, 'a', 'bb'), ',')", "applied to each other's results"),
    (", ".join(["repeat('x', 1000000)"] * 17), "statement together"),
]


@pytest.mark.parametrize(
    ("expression", "says"), MULTIPLIED_PAST_THE_LIMIT, ids=[e for e, _ in MULTIPLIED_PAST_THE_LIMIT]
)
def test_multipliers_composed_past_the_limit_are_refused(expression: str, says: str) -> None:
    error = refused(f"SELECT {expression} FROM t", Backend.POSTGRESQL)
    assert error.code == "argument_too_large"
    assert says in error.message


@pytest.mark.parametrize(
    "expression",
    [
        "replace(b, 'a', 'bb')",
        "replace(replace(b, 'a', 'bb'), 'c', 'dd')",  # literal factors: 4 in all
        "replace(b, '{name}', c)",
        "regexp_replace(b, '\\s+', ' ', 'g')",
        "string_agg(b, ', ' ORDER BY b)",
        "string_agg(upper(b) || ': ' || lpad(c, 20), ', ')",
        "array_agg(b)",
        "repeat('-', 80) || b",
        "lpad(b, 10) || rpad(c, 10)",
        ", ".join(["repeat('x', 1000000)"] * 16),
    ],
)
def test_multipliers_within_the_limit_pass(expression: str) -> None:
    assert analyse(f"SELECT {expression} FROM t", Backend.POSTGRESQL).tables == {"t"}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_group_concat_of_a_large_piece_is_refused_on_both(dialect: Backend) -> None:
    error = refused("SELECT group_concat(lpad(b, 5000)) FROM t", dialect)
    assert error.code == "argument_too_large"
    assert "once per row" in error.message
