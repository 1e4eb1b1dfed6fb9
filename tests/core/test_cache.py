"""SizedCache: least recently used entries go first, so that both the bytes and the count
of what is kept stay within their bounds."""

from __future__ import annotations

from tablehouse.core.cache import SizedCache


def test_least_recently_used_entries_are_dropped_to_stay_within_the_bytes() -> None:
    cache: SizedCache[str, str] = SizedCache(max_bytes=100, max_entries=10)
    cache.put("a", "A", 40)
    cache.put("b", "B", 40)
    assert cache.get("a") == "A"  # now "b" is the least recently used

    cache.put("c", "C", 40)

    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == ("A", "C")
    assert cache.size == 80


def test_count_is_bounded_as_well() -> None:
    cache: SizedCache[int, int] = SizedCache(max_bytes=1000, max_entries=3)
    for key in range(5):
        cache.put(key, key, 1)

    assert len(cache) == 3
    assert [cache.get(key) for key in range(5)] == [None, None, 2, 3, 4]
    assert cache.size == 3


def test_entry_larger_than_the_whole_budget_is_not_kept() -> None:
    cache: SizedCache[str, str] = SizedCache(max_bytes=100, max_entries=10)
    cache.put("small", "s", 10)

    cache.put("huge", "h", 101)

    assert cache.get("huge") is None
    assert cache.get("small") == "s"
    assert cache.size == 10


def test_entry_put_again_is_counted_once() -> None:
    cache: SizedCache[str, str] = SizedCache(max_bytes=100, max_entries=10)
    cache.put("a", "first", 30)
    cache.put("a", "second", 50)

    assert cache.get("a") == "second"
    assert (len(cache), cache.size) == (1, 50)


def test_a_budget_of_nothing_keeps_nothing() -> None:
    cache: SizedCache[str, str] = SizedCache(max_bytes=0, max_entries=0)
    cache.put("a", "A", 0)

    assert cache.get("a") is None
    assert (len(cache), cache.size) == (0, 0)


def test_each_value_let_go_of_is_handed_to_dropped() -> None:
    dropped: list[str] = []
    cache: SizedCache[str, str] = SizedCache(max_bytes=100, max_entries=2, dropped=dropped.append)
    cache.put("a", "A", 10)
    cache.put("b", "B", 10)
    cache.put("c", "C", 10)  # past the count: "a" goes
    cache.put("b", "B2", 10)  # replaced
    cache.put("huge", "H", 101)  # never kept

    assert dropped == ["A", "B", "H"]
    assert (cache.get("b"), cache.get("c")) == ("B2", "C")
