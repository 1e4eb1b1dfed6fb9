"""The spool on its own: order, progress across processes, rotation, damaged lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tablehouse.analytics.pipeline.spool import DEAD_LETTER, Spool

COLUMNS = ("n",)


def batch(token: str, *values: int) -> tuple[str, str, tuple[str, ...], list[tuple[int]]]:
    return ("t", token, COLUMNS, [(v,) for v in values])


def drain(spool: Spool) -> list[str]:
    tokens = []
    while (found := spool.peek()) is not None:
        tokens.append(found.token)
        spool.confirm()
    return tokens


def segments(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("slot-*/spool-*"))


def test_batches_come_back_oldest_first_with_their_rows(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([batch("a", 1, 2), batch("b", 3)])
    spool.append([batch("c", 4)])
    spool.sync()
    assert (spool.batches, spool.events) == (3, 4)
    found = spool.peek()
    assert found is not None
    assert (found.table, found.token, found.columns, found.rows) == ("t", "a", COLUMNS, [[1], [2]])
    assert drain(spool) == ["a", "b", "c"]
    assert (spool.batches, spool.events) == (0, 0)
    assert segments(tmp_path) == []
    spool.close()


def test_a_new_process_resumes_after_the_last_confirmed_batch(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.append([batch("a", 1), batch("b", 2), batch("c", 3)])
    first.peek()
    first.confirm()
    first.close()  # the process ends with two batches unconfirmed

    second = Spool(tmp_path)
    second.open()
    assert (second.batches, second.events) == (2, 2)
    second.append([batch("d", 4)])
    assert len(segments(tmp_path)) == 3  # a new segment (and the old one's .pos)
    assert drain(second) == ["b", "c", "d"]
    assert segments(tmp_path) == []
    second.close()


def test_segments_rotate_and_are_deleted_once_replayed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=100)
    for i in range(6):
        spool.append([batch(f"k{i}", *range(10))])
    assert len(list(spool.directory.glob("spool-*.ndjson"))) > 1
    spool.close()
    reopened = Spool(tmp_path)
    reopened.open()
    assert drain(reopened) == [f"k{i}" for i in range(6)]
    assert segments(tmp_path) == []
    reopened.close()


def test_damaged_lines_are_set_aside_and_the_rest_replayed(tmp_path: Path) -> None:
    good = [
        orjson.dumps(dict(zip(("table", "token", "columns", "rows"), b, strict=True)))
        for b in (batch("a", 1), batch("b", 2))
    ]
    (tmp_path / "slot-0").mkdir()
    segment = tmp_path / "slot-0" / "spool-000000000001.ndjson"
    segment.write_bytes(good[0] + b"\n" + b"not json\n" + good[1] + b"\n" + b'{"table":"t","to')
    spool = Spool(tmp_path)
    spool.open()
    assert drain(spool) == ["a", "b"]
    letters: list[dict[str, Any]] = [
        orjson.loads(line) for line in (spool.directory / DEAD_LETTER).read_bytes().splitlines()
    ]
    assert [entry["reason"] for entry in letters] == ["corrupt_line", "torn_line"]
    assert letters[0]["raw"] == "not json"
    assert spool.dead_lettered == 2
    spool.close()
    again = Spool(tmp_path)
    again.open()
    assert again.dead_lettered == 2  # counted from the file, across processes
    again.close()


def test_a_spool_found_fully_replayed_is_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([batch("a", 1), batch("b", 2)])
    spool.peek()
    spool.confirm()
    spool.close()
    # Simulate a crash after the last confirmation was recorded but before the delete.
    segment = next(tmp_path.glob("slot-0/spool-*.ndjson"))
    segment.with_suffix(".pos").write_text(str(segment.stat().st_size))
    reopened = Spool(tmp_path)
    reopened.open()
    assert reopened.batches == 0
    assert segments(tmp_path) == []
    reopened.close()


def test_processes_sharing_a_root_each_claim_a_slot(tmp_path: Path) -> None:
    first, second = Spool(tmp_path), Spool(tmp_path)
    first.append([batch("a", 1)])
    second.append([batch("b", 2)])
    assert (first.directory.name, second.directory.name) == ("slot-0", "slot-1")
    first.close()  # the first process ends: the next one adopts its slot and its batches
    third = Spool(tmp_path)
    third.open()
    assert third.directory.name == "slot-0"
    assert drain(third) == ["a"]
    assert drain(second) == ["b"]
    second.close()
    third.close()
