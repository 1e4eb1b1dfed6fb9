"""How large the values a statement builds can grow, read from its text.

Some functions multiply the size of what they are given: ``repeat(s, n)`` by ``n``,
``replace(s, from, to)`` by the length of ``to``, ``regexp_replace`` by the length of its
replacement, and aggregates that join rows (``string_agg``, ``array_agg``, ``json_agg``, ...)
by the number of rows. Each is harmless alone; composed, they multiply each other
(``replace(repeat('a', 1000000), 'a', repeat('b', 300))`` builds 300 MB). The rule:

- along the path from any part of the statement to the top, the factors that literals give
  multiply to at most ``MAX_GENERATED_SIZE`` (as ``repeat(b, 1000000)`` alone may);
- a factor the text does not give (rows, a replacement that is not a literal) may stand
  alone, but not with a second multiplier on the same path;
- a part whose size the text gives (literals, ``repeat``/``lpad``/``rpad`` of them, their
  concatenations) may build at most ``MAX_GENERATED_SIZE`` with the factors around it, and
  at most ``MAX_REPEATED_PIECE`` where a factor the text does not give repeats it;
- the sized calls of a statement build at most ``MAX_STATEMENT_GENERATED`` together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

MAX_GENERATED_SIZE = 1_000_000
MAX_REPEATED_PIECE = 1_000
# All the sized calls of one statement together (many columns of repeat(), one row).
MAX_STATEMENT_GENERATED = 16 * MAX_GENERATED_SIZE

_JOINING_AGGREGATES = (
    exp.GroupConcat,  # string_agg, group_concat
    exp.ArrayAgg,
    exp.JSONArrayAgg,
    exp.JSONObjectAgg,
    exp.JSONBObjectAgg,
)
_JOINING_NAMES = frozenset(
    {"json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg"}
    | {"json_group_array", "json_group_object", "string_agg", "group_concat", "array_agg"}
)
# Calls whose result is at most as long as their first argument.
_NOT_LONGER = (
    exp.Alias,
    exp.Paren,
    exp.Upper,
    exp.Lower,
    exp.Initcap,
    exp.Reverse,
    exp.Trim,
    exp.Translate,
    exp.Substring,
    exp.Left,
    exp.Right,
)


@dataclass(frozen=True, slots=True)
class Growth:
    """The factors applied to a part of the statement by the calls around it."""

    known: int = 1  # the product of the factors literals give
    unknown: int = 0  # how many factors depend on rows or data

    def times(self, factor: int | None) -> Growth:
        if factor is None:
            return Growth(self.known, self.unknown + 1)
        return Growth(self.known * max(factor, 1), self.unknown)


@dataclass(frozen=True, slots=True)
class Oversize:
    """Where the rule is broken: ``built`` is what ``node`` could build (None when a factor
    the text does not give takes part), ``limit`` the most it may."""

    node: exp.Expr
    built: int | None
    limit: int


def whole_number(node: exp.Expr | None) -> int | None:
    if isinstance(node, exp.Literal) and not node.is_string and node.name.isdigit():
        return int(node.name)
    return None


def generated_size(call: exp.Expr) -> int | None:
    """What a call that builds a value of a given size builds; None for any other call."""
    if isinstance(call, exp.Repeat):
        return whole_number(call.args.get("times"))
    if isinstance(call, exp.Pad):
        return whole_number(call.args.get("expression"))
    if isinstance(call, exp.Anonymous) and call.name.lower() in ("randomblob", "zeroblob"):
        return whole_number(call.expressions[0]) if call.expressions else None
    return None


def find_oversize(tree: exp.Expr) -> Oversize | None:
    """The first part of ``tree`` (outermost first) that breaks the rule, if any."""
    nodes = list(tree.walk(bfs=True))
    bounds: dict[int, int | None] = {}
    for node in reversed(nodes):  # children before their parents
        bounds[id(node)] = _bound(node, lambda child: bounds.get(id(child)))
    growth: dict[int, Growth] = {id(tree): Growth()}
    generated = 0
    for node in nodes:  # parents before their children
        around = growth.get(id(node), Growth())
        problem = _check(node, bounds[id(node)], around)
        if problem is not None:
            return problem
        generated += (generated_size(node) or 0) * around.known
        if generated > MAX_STATEMENT_GENERATED:
            return Oversize(node, generated, MAX_STATEMENT_GENERATED)
        for child in node.iter_expressions():
            factor = _factor(node, child.arg_key or "", lambda part: bounds.get(id(part)))
            growth[id(child)] = around.times(factor)
    return None


def _check(node: exp.Expr, bound: int | None, around: Growth) -> Oversize | None:
    own = generated_size(node)
    if own is not None or (bound is not None and not isinstance(node, exp.Literal)):
        built = max(own or 0, bound or 0) * around.known
        if around.unknown == 0 and built > MAX_GENERATED_SIZE:
            return Oversize(node, built, MAX_GENERATED_SIZE)
        if around.unknown > 0 and built > MAX_REPEATED_PIECE:
            return Oversize(node, None, MAX_REPEATED_PIECE)
        return None
    stacked = around.unknown > 1 or (around.unknown == 1 and around.known > 1)
    if bound is None and (stacked or around.known > MAX_GENERATED_SIZE):
        return Oversize(node, None, MAX_GENERATED_SIZE)
    return None


Bounds = Callable[[exp.Expr | None], int | None]


def _factor(parent: exp.Expr, key: str, bound: Bounds) -> int | None:
    """How many times ``parent`` can repeat what its argument ``key`` holds."""
    if isinstance(parent, exp.Repeat):
        return whole_number(parent.args.get("times")) if key == "this" else 1
    if isinstance(parent, exp.Replace):
        if key == "this":
            return _at_least_one(bound(parent.args.get("replacement")))
        return _at_least_one(bound(parent.this)) if key == "replacement" else 1
    if isinstance(parent, exp.RegexpReplace):
        if key == "this":
            return _plus_one(bound(parent.args.get("replacement")))
        return _plus_one(bound(parent.this)) if key == "replacement" else 1
    if _joins_rows(parent):
        return None
    return 1


def _bound(node: exp.Expr, bound: Bounds) -> int | None:
    """The most characters or bytes ``node`` can build, when its text says; else None."""
    if isinstance(node, exp.Literal):
        return len(node.name)
    if isinstance(node, exp.Null | exp.Boolean):
        return 5
    own = generated_size(node)
    if isinstance(node, exp.Repeat):
        return _product(bound(node.this), own)
    if own is not None:  # lpad, rpad, zeroblob, randomblob: exactly that size
        return own
    if isinstance(node, exp.Replace):
        return _product(bound(node.this), _at_least_one(bound(node.args.get("replacement"))))
    if isinstance(node, exp.RegexpReplace):
        replacement = bound(node.args.get("replacement"))
        return _product(_plus_one(bound(node.this)), _plus_one(replacement))
    if isinstance(node, exp.DPipe | exp.Concat | exp.ConcatWs):
        parts = [bound(part) for part in node.iter_expressions()]
        return None if None in parts else sum(part or 0 for part in parts) * _gaps(node)
    if isinstance(node, _NOT_LONGER):
        return bound(node.this)
    return None


def _gaps(node: exp.Expr) -> int:
    # concat_ws(sep, a, b, c) writes sep between each two: at most as many times as parts.
    return len(node.expressions) if isinstance(node, exp.ConcatWs) else 1


def _joins_rows(node: exp.Expr) -> bool:
    if isinstance(node, exp.Anonymous):
        return node.name.lower() in _JOINING_NAMES
    return isinstance(node, _JOINING_AGGREGATES)


def _product(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a * b


def _at_least_one(value: int | None) -> int | None:
    return None if value is None else max(value, 1)


def _plus_one(value: int | None) -> int | None:
    return None if value is None else value + 1
