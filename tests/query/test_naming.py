"""Answer columns are named as the database itself names the SQL the user wrote: each
expression's name from our rendering is compared with the name the database gives the text
as written, run directly on a table of its own."""

from __future__ import annotations

from sqlalchemy import text

from tablehouse.config import Settings
from tablehouse.core.database import Backend, backend_of
from tablehouse.query import guard
from tests.support.databases import connected

TABLE = {
    "postgresql": "CREATE TABLE t (amount bigint, name text, at timestamptz)",
    "sqlite": "CREATE TABLE t (amount INTEGER, name TEXT, at TEXT)",
}
COMMON = [
    "count(*)",
    "max(amount)",
    "Max( amount )",
    "amount",
    "AMOUNT",
    "t.amount",
    "(amount)",
    "amount + 1",
    "-amount",
    "true",
    "1",
    "'x'",
    "cast(amount as text)",
    "coalesce(amount, 0)",
    "nullif(amount, 0)",
    "upper(name) /* loud */",
    "lower(name) || 'x'",
    "length(name)",
    "round(avg(amount), 2)",
    "count(distinct amount)",
    "sum(amount) over ()",
    "name like 'a%'",
    "amount is null",
    "amount between 1 and 2",
    "case when amount > 1 then 'a' else name end",
    "case when amount > 1 then 1 end",
    "(select max(amount) from t)",
    "exists(select 1 from t)",
    "current_timestamp",
    "current_date",
    "count(*) filter (where amount > 1)",
]
EXPRESSIONS = {
    "postgresql": [
        *COMMON,
        "now()",
        "substr(name, 1, 2)",
        "strpos(name, 'a')",
        "char_length(name)",
        "mod(amount, 2)",
        "1::integer",
        "amount::text",
        "'1'::float",
        "trim(name)",
        "trim(leading 'x' from name)",
        "greatest(amount, 1)",
        "array[1, 2]",
        "at at time zone 'UTC'",
        "extract(year from at)",
        "date_trunc('day', at)",
        "interval '1 day'",
        "date '2020-01-01'",
        '"upper"(name)',
        "percentile_cont(0.5) within group (order by amount)",
        "string_agg(name, ',')",
    ],
    "sqlite": [
        *COMMON,
        "ifnull(amount, 0)",
        "iif(amount > 1, 1, 0)",
        "substr(name, 1, 2)",
        "strftime('%Y', at)",
        "date(at)",
        "typeof(amount)",
        "group_concat(name)",
        "json_extract('{\"a\": 1}', '$.a')",
        "'{\"a\": 1}' ->> '$.a'",
        "x'ab'",
        "1e3",
        "0x10",
    ],
}


async def names(settings: Settings, sql: str) -> list[str]:
    async with connected(settings) as connection:
        await connection.execute(text(TABLE[backend_of(connection)]))
        return list((await connection.exec_driver_sql(sql)).keys())


async def test_each_expression_is_named_as_the_database_names_its_text(
    settings: Settings, backend: str
) -> None:
    dialect = Backend(backend)
    expressions = EXPRESSIONS[dialect]
    written = "SELECT " + ", ".join(expressions) + " FROM t GROUP BY amount, name, at"
    rendered = guard.render(guard.analyse(written, dialect), {"t": "t"}, dialect)

    assert await names(settings, rendered) == await names(settings, written)
