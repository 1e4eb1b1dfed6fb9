"""Waiting for something to happen, in one place: poll a condition until it holds or a
deadline passes, never sleep for a guessed time.

A deadline is a ceiling, not a measurement: a condition that holds returns at once, so
generous deadlines cost a passing test nothing and keep a loaded machine (the suite runs on
every core) from failing it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL = 0.01  # seconds between two looks: short, each look is cheap


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    within: float = 10,
    what: str = "the condition",
    poll: float = POLL,
) -> float:
    """Look at ``condition`` (plain or async) until it holds; the seconds it took.
    Fails after ``within`` s."""
    started = time.monotonic()
    while True:
        outcome = condition()
        if outcome if isinstance(outcome, bool) else await outcome:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(poll)


async def eventually(
    look: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    within: float = 10,
    poll: float = POLL,
) -> T:
    """``look()`` again until ``done`` says its answer is complete; the last answer, complete
    or not once ``within`` s have passed (the test's assertions then say what is missing)."""
    deadline = time.monotonic() + within
    while True:
        answer = await look()
        if done(answer) or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(poll)


def wait_until_sync(
    condition: Callable[[], bool],
    *,
    within: float = 10,
    what: str = "the condition",
    poll: float = POLL,
) -> float:
    """``wait_until`` for code without an event loop (real server processes, threads)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(poll)
    return time.monotonic() - started


def eventually_sync(
    look: Callable[[], T], done: Callable[[T], bool], *, within: float = 10, poll: float = POLL
) -> T:
    """``eventually`` for code without an event loop."""
    deadline = time.monotonic() + within
    while True:
        answer = look()
        if done(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(poll)
