"""Quoting a client's input back in an error without repeating all of it.

An error names what was wrong, often by quoting it: a value, a field name, a piece of SQL. A
client controls how long that is, so an error that quoted it whole would answer a 1 MiB
field with a 1 MiB error (or, quoting each of many items, with far more). What an error
quotes is cut to a few hundred characters, with a marker that says how much was left out.
"""

from __future__ import annotations

from collections.abc import Mapping

# Characters of one quoted string kept in an error: enough to recognise a value or a name.
MAX_QUOTED_CHARS = 200
_KEPT_AT_END = 40


def clip(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """``text``, or its start and end around a marker when it is longer than ``limit``.

    The end is kept too, because messages often quote the input first and say what is wrong
    with it after: "'<sql>' cannot be read from".
    """
    if len(text) <= limit:
        return text
    tail = min(_KEPT_AT_END, limit // 4)
    head = limit - tail
    cut = len(text) - head - tail
    return f"{text[:head]}…[{cut:,} characters cut]…{text[len(text) - tail :]}"


def quoted(value: object) -> object:
    """A JSON value to repeat in an error: itself when short, else a short stand-in.

    A long string is clipped; a list or object whose JSON would be long is replaced by a
    string naming what it was, as its items could be long or many.
    """
    if isinstance(value, str):
        return clip(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, list | tuple | Mapping):
        return value if _fits(value, MAX_QUOTED_CHARS) >= 0 else _summary(value)
    # A number, or whatever else an error carries (bytes, an exception): kept when short.
    try:
        text = str(value)
    except ValueError:  # an integer past Python's 4,300-digit limit for str()
        return f"<a {type(value).__name__}, too long to repeat>"
    return value if len(text) <= MAX_QUOTED_CHARS else clip(text)


def _fits(value: object, budget: int) -> int:
    """The budget left after ``value``'s JSON text, roughly; negative once it is spent.

    Stops as soon as the budget is spent, so a huge or deeply nested value costs no more
    than a short one.
    """
    if isinstance(value, str):
        return budget - len(value) - 2
    if isinstance(value, Mapping):
        for key, item in value.items():
            budget = _fits(item, _fits(key, budget) - 2)
            if budget < 0:
                return budget
        return budget - 2
    if isinstance(value, list | tuple):
        for item in value:
            budget = _fits(item, budget - 1)
            if budget < 0:
                return budget
        return budget - 2
    return budget - len(str(value))


def _summary(value: list[object] | tuple[object, ...] | Mapping[object, object]) -> str:
    if isinstance(value, Mapping):
        return f"{{an object of {_count(len(value), 'member')}, too long to repeat}}"
    return f"[a list of {_count(len(value), 'item')}, too long to repeat]"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"
