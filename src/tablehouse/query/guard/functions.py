"""The functions a query may call: a conservative allow-list, grouped by kind.

sqlglot parses a call it knows into a typed class (``count(x)`` is ``exp.Count``, ``->`` is
``exp.JSONExtract``) and any other call into ``exp.Anonymous`` with the name as written, so
each group lists both. Which calls are typed differs by dialect (``json_agg`` is typed on
PostgreSQL, anonymous on SQLite), hence some names appear although the other backend types
them. Both backends share the lists: a function one backend lacks fails there with "no such
function", which is harmless. What must never pass is a call that reads the server, its files
or its settings, sleeps, locks, writes, or reaches another database; none of those is listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp


@dataclass(frozen=True, slots=True)
class Group:
    classes: frozenset[type[exp.Func]]
    names: frozenset[str]  # lowercase


def _group(classes: tuple[type[exp.Func], ...], names: tuple[str, ...] = ()) -> Group:
    return Group(frozenset(classes), frozenset(names))


AGGREGATE = _group(
    (
        exp.Count,
        exp.Sum,
        exp.Avg,
        exp.Min,
        exp.Max,
        exp.GroupConcat,  # string_agg, group_concat
        exp.ArrayAgg,
        exp.LogicalAnd,  # bool_and
        exp.LogicalOr,  # bool_or
        exp.Stddev,
        exp.StddevPop,
        exp.StddevSamp,
        exp.Variance,  # variance, var_samp
        exp.VariancePop,
        exp.PercentileCont,
        exp.PercentileDisc,
        exp.Mode,
        exp.Corr,
        exp.CovarPop,
        exp.CovarSamp,
        exp.JSONArrayAgg,  # json_agg (PostgreSQL), json_group_array (SQLite)
        exp.JSONObjectAgg,  # json_object_agg (PostgreSQL), json_group_object (SQLite)
        exp.JSONBObjectAgg,
    ),
    (
        "every",
        "total",  # SQLite
        "json_agg",
        "jsonb_agg",
        "json_object_agg",
        "jsonb_object_agg",
        "json_group_array",
        "json_group_object",
    ),
)

WINDOW = _group(
    (
        exp.RowNumber,
        exp.Rank,
        exp.DenseRank,
        exp.PercentRank,
        exp.CumeDist,
        exp.Ntile,
        exp.Lag,
        exp.Lead,
        exp.FirstValue,
        exp.LastValue,
        exp.NthValue,
    )
)

MATH = _group(
    (
        exp.Abs,
        exp.Round,
        exp.Ceil,
        exp.Floor,
        exp.Trunc,
        exp.Sign,
        exp.Sqrt,
        exp.Cbrt,
        exp.Pow,  # power, pow, and the ^ operator
        exp.Exp,
        exp.Ln,
        exp.Log,  # log, log10, log2
        exp.Greatest,
        exp.Least,
        exp.Pi,
        exp.Rand,  # random
        exp.Degrees,
        exp.Radians,
        exp.Sin,
        exp.Cos,
        exp.Tan,
        exp.Asin,
        exp.Acos,
        exp.Atan,
        exp.Atan2,
    ),
    ("mod", "gcd", "lcm"),
)

STRING = _group(
    (
        exp.Lower,
        exp.Upper,
        exp.Length,  # length, char_length, character_length
        exp.Substring,  # substr, substring
        exp.Trim,  # trim, ltrim, rtrim, btrim
        exp.Replace,
        exp.Concat,
        exp.ConcatWs,
        exp.StrPosition,  # position, strpos, instr
        exp.Left,
        exp.Right,
        exp.SplitPart,
        exp.StartsWith,
        exp.RegexpReplace,  # regexes can be slow; the executor's time limit bounds them
        exp.RegexpLike,  # regexp_like, and the ~ operator
        exp.RegexpILike,  # ~*
        exp.Reverse,
        exp.Initcap,
        exp.MD5,
        exp.Ascii,
        exp.Chr,  # chr, char
        exp.Unicode,
        exp.Hex,
        exp.Translate,
        exp.Repeat,  # size-checked by the guard
        exp.Pad,  # lpad, rpad: size-checked by the guard
    ),
    (
        "btrim",
        "octet_length",
        "regexp_match",
        "randomblob",  # SQLite: size-checked by the guard
        "zeroblob",  # SQLite: size-checked by the guard
    ),
)

DATE_TIME = _group(
    (
        exp.CurrentDate,
        exp.CurrentTime,
        exp.CurrentTimestamp,  # now(), current_timestamp
        exp.Localtime,
        exp.Localtimestamp,
        exp.TimestampTrunc,  # date_trunc (PostgreSQL)
        exp.DateTrunc,  # date_trunc (SQLite spelling of the same call)
        exp.Extract,  # extract, date_part
        exp.TimeFromParts,  # make_time
        exp.TimestampFromParts,  # make_timestamp
        exp.UnixToTime,  # to_timestamp(seconds)
        exp.StrToTime,  # to_timestamp(text, format)
        exp.StrToDate,  # to_date
        exp.TimeToStr,  # to_char (PostgreSQL), strftime (SQLite)
        exp.TsOrDsToTimestamp,  # inside SQLite's strftime
        exp.Date,
        exp.Time,
        exp.Datetime,
    ),
    (
        "now",
        "date_part",
        "date_trunc",
        "age",
        "make_date",
        "make_time",
        "make_timestamp",
        "to_timestamp",
        "to_date",
        "date",
        "time",
        "datetime",
        "julianday",
        "strftime",
        "unixepoch",
    ),
)

CONDITIONAL = _group(
    (exp.Coalesce, exp.Nullif, exp.If, exp.Case),  # also ifnull, nvl, iif
    ("coalesce", "nullif", "ifnull", "iif"),
)

CAST = _group(
    (exp.Cast, exp.TryCast, exp.Typeof),  # Cast covers CAST(...) and ::
    ("typeof",),
)

JSON = _group(
    (
        exp.JSONExtract,  # ->, json_extract_path, json_extract (PostgreSQL)
        exp.JSONExtractScalar,  # ->>, json_extract_path_text, json_extract (SQLite)
        exp.JSONBExtract,  # #>
        exp.JSONBExtractScalar,  # #>>
        exp.JSONBContains,
        exp.JSONBContainsTopKey,  # ?
        exp.JSONBContainsAnyTopKeys,  # ?|
        exp.JSONBContainsAllTopKeys,  # ?&
        exp.JSONObject,  # json_object
        exp.JSONType,  # json_type (SQLite)
    ),
    (
        "json_extract",
        "json_extract_path",
        "json_extract_path_text",
        "jsonb_extract_path",
        "jsonb_extract_path_text",
        "json_array_length",
        "jsonb_array_length",
        "json_typeof",
        "jsonb_typeof",
        "json_type",
        "json_valid",
        "json",
        "json_object",
        "json_build_object",
        "jsonb_build_object",
        "json_array",
        "json_build_array",
        "jsonb_build_array",
        "to_json",
        "to_jsonb",
        # Table-valued: they read only the value they are given.
        "json_each",
        "json_tree",  # SQLite
        "jsonb_each",
        "json_array_elements",
        "jsonb_array_elements",
        "json_array_elements_text",
        "jsonb_array_elements_text",
    ),
)

ARRAY = _group(
    (
        exp.Array,  # ARRAY[...]
        exp.Unnest,
        exp.ArrayContainsAll,  # @>
        exp.ArrayContainedBy,  # <@
        exp.ArrayOverlaps,  # &&
    ),
)

# Operators sqlglot models as functions.
OPERATORS = _group((exp.And, exp.Or, exp.Exists, exp.Collate))

GROUPS = (AGGREGATE, WINDOW, MATH, STRING, DATE_TIME, CONDITIONAL, CAST, JSON, ARRAY, OPERATORS)
ALLOWED_CLASSES: frozenset[type[exp.Func]] = frozenset().union(*(g.classes for g in GROUPS))
ALLOWED_NAMES: frozenset[str] = frozenset().union(*(g.names for g in GROUPS))


def is_allowed(call: exp.Func) -> bool:
    if isinstance(call, exp.Anonymous):
        return call.name.lower() in ALLOWED_NAMES
    return type(call) in ALLOWED_CLASSES


def size_argument(call: exp.Func) -> exp.Expr | None:
    """For a call that builds a value as large as one of its arguments says, that argument.

    None for any other call, and for such a call made without its size, which the database
    refuses anyway.
    """
    if isinstance(call, exp.Repeat):
        return call.args.get("times")
    if isinstance(call, exp.Pad):
        return call.args.get("expression")
    if isinstance(call, exp.Anonymous) and call.name.lower() in ("randomblob", "zeroblob"):
        return call.expressions[0] if call.expressions else None
    return None
