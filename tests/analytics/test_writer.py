"""The buffered event writer against in-memory stores that fail, refuse and hang on demand."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from structlog.testing import capture_logs

from tablehouse.analytics.pipeline.spool import DEAD_LETTER, SlotBusy, waiting_slots
from tablehouse.analytics.pipeline.writer import EventWriter, WriterSettings, is_rejection
from tablehouse.analytics.store.tables import QUERY_LOGS
from tablehouse.query.events import QueryExecuted
from tests.support.waiting import wait_until

USER = uuid.UUID(int=7)
START = datetime(2026, 1, 1, tzinfo=UTC)


class StoreRejected(Exception):
    """Named like the real store's refusal: the writer recognises it by class name."""


class Refused(Exception):
    rejected = True


class FakeStore:
    """Stores rows like ClickHouse with insert dedup tokens; fails, refuses or hangs on demand."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.tokens: set[str] = set()
        self.calls: list[tuple[str, int, str | None]] = []
        self.down = False
        self.fail_after_storing = 0  # calls that store the rows, then raise (a lost answer)
        self.poison: str | None = None
        self.refusal: type[Exception] = StoreRejected
        self.gate: asyncio.Event | None = None
        self.during_insert: Callable[[], None] | None = None
        self.columns: tuple[str, ...] = ()  # of the last insert

    async def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        dedup_token: str | None = None,
    ) -> None:
        self.calls.append((table, len(rows), dedup_token))
        if self.during_insert is not None:
            self.during_insert()
        assert table == "query_logs"
        # Every column, or the first ones (a batch spooled by a version that had only those).
        assert tuple(columns) == QUERY_LOGS.columns[: len(columns)]
        self.columns = tuple(columns)
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise ConnectionRefusedError("cannot reach http://analytics:s3cret@localhost:1")
        if self.poison and any(self.poison in row[2] for row in rows):
            raise self.refusal(f"Cannot parse input: {self.poison}")
        if dedup_token not in self.tokens:
            assert dedup_token is not None
            self.tokens.add(dedup_token)
            self.rows.extend(tuple(row) for row in rows)
        if self.fail_after_storing:
            self.fail_after_storing -= 1
            raise TimeoutError("read timed out")

    @property
    def texts(self) -> list[str]:
        return [row[2] for row in self.rows]


def event(i: int, text: str | None = None) -> QueryExecuted:
    return QueryExecuted(
        query_id=uuid.UUID(int=i + 1),
        user_id=USER,
        query_text=text if text is not None else f"SELECT {i}",
        status="ok",
        error=None,
        execution_time_ms=1.6,
        rows_read=i,
        bytes_read=8 * i,
        timestamp=START + timedelta(milliseconds=i),
    )


def texts(n: int) -> list[str]:
    return [f"SELECT {i}" for i in range(n)]


def make(directory: Path, store: FakeStore, **options: Any) -> EventWriter:
    defaults: dict[str, Any] = {
        "batch_size": 10,
        "flush_interval": 0.05,
        "queue_size": 1000,
        "retry_initial": 0.01,
        "retry_max": 0.05,
    }
    return EventWriter(store, WriterSettings(spool_dir=directory, **(defaults | options)))


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    await wait_until(condition, within=within, poll=0.005)


def segments(root: Path) -> list[Path]:
    return sorted(root.glob("slot-*/spool-*.ndjson"))


def dead_letters(root: Path) -> list[dict[str, Any]]:
    [path] = root.glob(f"slot-*/{DEAD_LETTER}")
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_a_full_batch_goes_out_at_once_the_rest_at_stop(tmp_path: Path) -> None:
    store = FakeStore()
    writer = make(tmp_path, store, flush_interval=60)
    await writer.start()
    for i in range(25):
        writer.emit(event(i))
    await until(lambda: len(store.calls) == 2)
    assert [n for _, n, _ in store.calls] == [10, 10]
    assert writer.counts().pending == 5
    await writer.stop()
    assert store.texts == texts(25)
    assert writer.counts().written == 25
    assert segments(tmp_path) == []


async def test_a_partial_batch_goes_out_after_the_interval(tmp_path: Path) -> None:
    store = FakeStore()
    writer = make(tmp_path, store, batch_size=1000)
    await writer.start()
    for i in range(3):
        writer.emit(event(i))
    assert store.calls == []
    await until(lambda: len(store.rows) == 3, within=1.0)
    assert [n for _, n, _ in store.calls] == [3]
    await writer.stop()


async def test_a_timed_flush_writes_what_it_found_not_what_arrives_meanwhile(
    tmp_path: Path,
) -> None:
    """Under steady load, events keep arriving while a flush inserts. Draining until empty
    would then insert a few rows at a time, back to back: the flush stops at what it found."""
    store = FakeStore()
    writer = make(tmp_path, store, batch_size=1000, flush_interval=0.5)
    arrivals = iter(range(1_000, 1_100))
    inserts: list[float] = []

    def arrive() -> None:  # one more event lands during every insert
        inserts.append(time.monotonic())
        writer.emit(event(next(arrivals)))

    store.during_insert = arrive
    await writer.start()
    for i in range(5):
        writer.emit(event(i))
    # The next insert is the next timed flush, a whole interval after the first (a machine
    # however slow can only make it later), with the one event that arrived meanwhile.
    await until(lambda: len(store.calls) >= 2, within=5.0)

    assert [n for _, n, _ in store.calls[:2]] == [5, 1]
    assert inserts[1] - inserts[0] >= 0.5 * 0.9, inserts  # 10%: the loop's clock rounding
    await writer.stop()


async def test_rows_are_converted_for_clickhouse(tmp_path: Path) -> None:
    store = FakeStore()
    writer = make(tmp_path, store)
    await writer.start()
    paris = timezone(timedelta(hours=1))
    writer.emit(
        QueryExecuted(
            query_id=uuid.UUID(int=1),
            user_id=USER,
            query_text="SELECT 1",
            status="error",
            error="boom",
            execution_time_ms=-0.4,
            rows_read=3,
            bytes_read=24,
            timestamp=datetime(2026, 1, 1, 1, tzinfo=paris),
            api_key_id=uuid.UUID(int=9),
        )
    )
    writer.emit(event(1))  # sent with a login session: no API key
    await writer.stop()
    [row, by_session] = store.rows
    key = uuid.UUID(int=9)
    # A negative time (a clock step) is clamped to 0 in both columns; the source is api.
    assert row == (
        uuid.UUID(int=1),
        USER,
        "SELECT 1",
        "error",
        "boom",
        0,
        3,
        24,
        START,
        key,
        0,
        "api",
    )
    assert row[8].tzinfo == UTC
    assert by_session[9] == uuid.UUID(int=0)


async def test_ten_thousand_events_while_the_store_is_down_are_written_once_in_order(
    tmp_path: Path,
) -> None:
    store = FakeStore()
    store.down = True
    writer = make(tmp_path, store, batch_size=100, queue_size=500, flush_interval=0.02)
    with capture_logs() as logs:
        await writer.start()
        most = 0
        for i in range(10_000):
            writer.emit(event(i))
            most = max(most, writer.counts().pending)
            if i % 50 == 0:
                await asyncio.sleep(0)
        await until(lambda: writer.counts().spooled == 10_000)
        counts = writer.counts()
        assert (counts.pending, counts.written, counts.lost) == (0, 0, 0)
        assert most <= 500 + 100
        assert counts.failures >= 1
        assert not counts.store_available
        assert counts.last_error is not None
        assert "s3cret" not in counts.last_error
        assert store.rows == []

        store.down = False
        await until(lambda: writer.counts().written == 10_000)
        await writer.stop()
    assert store.texts == texts(10_000)
    assert writer.counts().spooled == 0
    assert segments(tmp_path) == []
    events = [entry["event"] for entry in logs]
    assert events.count("analytics.store_unavailable") == 1
    assert events.count("analytics.store_available") == 1


async def test_while_the_store_is_away_full_batches_join_the_spool_at_once_partial_ones_later(
    tmp_path: Path,
) -> None:
    """A short flush interval must not fill the spool with tiny batches (each one is an
    insert on replay): full batches go at once, the rest at most every
    ``partial_spool_interval``."""
    store = FakeStore()
    store.down = True
    writer = make(
        tmp_path,
        store,
        batch_size=10,
        flush_interval=0.05,
        retry_initial=10.0,
        partial_spool_interval=2.0,  # the default is 1 s: margin for a slow machine
    )
    await writer.start()
    writer.emit(event(0))
    await until(lambda: writer.counts().spooled_batches == 1)  # the failed flush's batch
    first_spooled = time.monotonic()

    for i in range(1, 4):
        writer.emit(event(i))
    assert (writer.counts().spooled_batches, writer.counts().pending) == (1, 3)

    for i in range(4, 14):
        writer.emit(event(i))
    await until(lambda: writer.counts().spooled_batches == 2, within=1.0)  # a full batch
    assert writer.counts().pending == 3

    await until(lambda: writer.counts().spooled_batches == 3, within=5.0)  # the rest, later:
    # not at any of the forty flushes meanwhile, but a partial_spool_interval after the last
    # spool of a partial batch (the first; a slow machine can only make it later).
    assert time.monotonic() - first_spooled >= 2.0 * 0.9
    assert writer.counts().pending == 0
    await writer.stop()

    store.down = False
    replaying = make(tmp_path, store)
    await replaying.start()
    await until(lambda: replaying.counts().written == 14)
    await replaying.stop()
    assert store.texts == texts(14)


async def test_a_batch_stored_before_its_insert_failed_is_not_stored_twice(tmp_path: Path) -> None:
    store = FakeStore()
    store.fail_after_storing = 1
    writer = make(tmp_path, store)
    await writer.start()
    for i in range(10):
        writer.emit(event(i))
    await until(lambda: writer.counts().written == 10)
    await writer.stop()
    assert store.texts == texts(10)
    first, second = store.calls[0], store.calls[1]
    assert first[2] == second[2]  # the replay re-sent the batch with its token
    assert writer.counts().failures == 1


@pytest.mark.parametrize("refusal", [StoreRejected, Refused])
async def test_a_refused_event_is_dead_lettered_and_the_rest_written(
    tmp_path: Path, refusal: type[Exception]
) -> None:
    store = FakeStore()
    store.poison, store.refusal = "POISON", refusal
    writer = make(tmp_path, store)
    await writer.start()
    sent = [f"SELECT {i}" if i not in (3, 7) else f"POISON {i}" for i in range(10)]
    for i, text in enumerate(sent):
        writer.emit(event(i, text))
    await until(lambda: writer.counts().written == 8)
    await writer.stop()
    assert store.texts == [t for t in sent if "POISON" not in t]
    letters = dead_letters(tmp_path)
    assert [entry["row"][2] for entry in letters] == ["POISON 3", "POISON 7"]
    assert {entry["reason"] for entry in letters} == {"rejected"}
    assert all("Cannot parse input" in entry["error"] for entry in letters)
    assert writer.counts().dead_lettered == 2
    assert writer.counts().store_available


def test_rejections_are_told_from_unavailability() -> None:
    assert is_rejection(StoreRejected("x"))
    assert is_rejection(Refused("x"))
    assert not is_rejection(ConnectionRefusedError("x"))
    assert not is_rejection(TimeoutError("x"))


@pytest.mark.parametrize("then_fails", [False, True])
async def test_a_full_queue_overflows_to_the_spool_and_loses_nothing(
    tmp_path: Path, then_fails: bool
) -> None:
    store = FakeStore()
    store.gate = asyncio.Event()  # the store hangs: the flusher cannot keep up
    writer = make(tmp_path, store, queue_size=30, flush_interval=60)
    await writer.start()
    for i in range(10):
        writer.emit(event(i))
    await until(lambda: len(store.calls) == 1)  # the first batch is in flight
    for i in range(10, 100):
        writer.emit(event(i))
        assert writer.counts().pending <= 30 + 10
    assert segments(tmp_path) != []
    assert writer.counts().spooled >= 70
    # The batch in flight was spooled too (it is older than what overflowed), so its
    # outcome, stored or not, cannot break the order.
    store.down = then_fails
    store.gate.set()
    if then_fails:
        await until(lambda: writer.counts().failures == 1)
        store.down = False
    await until(lambda: writer.counts().spooled == 0 and writer.counts().pending == 0)
    await writer.stop()
    assert store.texts == texts(100)
    assert (writer.counts().written, writer.counts().lost) == (100, 0)


async def test_a_queue_full_before_start_overflows_to_the_spool(tmp_path: Path) -> None:
    store = FakeStore()
    writer = make(tmp_path, store, queue_size=30)
    for i in range(100):
        writer.emit(event(i))
    assert writer.counts().pending <= 30
    await writer.start()
    await until(lambda: writer.counts().written == 100)
    await writer.stop()
    assert store.texts == texts(100)


async def test_stop_flushes_a_writer_that_was_never_started(tmp_path: Path) -> None:
    store = FakeStore()
    writer = make(tmp_path, store)
    for i in range(3):
        writer.emit(event(i))
    await writer.stop()
    assert store.texts == texts(3)


async def test_emit_does_no_io_below_the_bound(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    writer = make(directory, FakeStore(), queue_size=100)
    for i in range(100):
        writer.emit(event(i))
    assert not directory.exists()
    assert writer.counts().pending == 100


async def test_stop_with_the_store_down_spools_and_the_next_start_replays(
    tmp_path: Path,
) -> None:
    store = FakeStore()
    store.down = True
    first = make(tmp_path, store, batch_size=1000, flush_interval=60)
    await first.start()
    for i in range(5):
        first.emit(event(i))
    await first.stop()
    assert first.counts().spooled == 5
    assert first.counts().pending == 0
    [segment] = segments(tmp_path)
    with segment.open("ab") as f:  # killed while spooling: a torn last line
        f.write(b'{"table":"query_logs","token":"abc","columns":["query_')

    store.down = False
    second = make(tmp_path, store)
    with capture_logs() as logs:
        await second.start()
        await until(lambda: second.counts().written == 5)
        await second.stop()
    assert store.texts == texts(5)
    assert segments(tmp_path) == []
    assert "spool.torn_line" in [entry["event"] for entry in logs]
    [letter] = dead_letters(tmp_path)
    assert letter["reason"] == "torn_line"
    assert letter["raw"].startswith('{"table":"query_logs"')


async def test_a_batch_spooled_before_a_column_was_added_is_replayed(tmp_path: Path) -> None:
    store = FakeStore()
    store.down = True
    first = make(tmp_path, store, batch_size=1000, flush_interval=60)
    await first.start()
    first.emit(event(0))
    await first.stop()
    [segment] = segments(tmp_path)
    line = orjson.loads(segment.read_bytes())
    # As the version before api_key_id wrote it.
    line["columns"], line["rows"] = line["columns"][:-1], [row[:-1] for row in line["rows"]]
    segment.write_bytes(orjson.dumps(line) + b"\n")

    store.down = False
    second = make(tmp_path, store)
    await second.start()
    await until(lambda: second.counts().written == 1)
    await second.stop()
    assert store.texts == texts(1)
    assert store.columns == QUERY_LOGS.columns[:-1]
    assert second.counts().dead_lettered == 0


async def test_stop_gives_up_on_a_hanging_store_and_spools_the_batch(tmp_path: Path) -> None:
    store = FakeStore()
    store.gate = asyncio.Event()
    first = make(tmp_path, store)
    await first.start()
    for i in range(15):
        first.emit(event(i))
    await until(lambda: len(store.calls) == 1)
    await first.stop(timeout=0.05)
    assert first.counts().spooled == 15
    store.gate.set()
    second = make(tmp_path, store)
    await second.start()
    await until(lambda: second.counts().written == 15)
    await second.stop()
    assert store.texts == texts(15)


async def test_events_emitted_after_stop_are_spooled(tmp_path: Path) -> None:
    store = FakeStore()
    first = make(tmp_path, store)
    await first.start()
    await first.stop()
    first.emit(event(0))
    assert first.counts().spooled == 1
    second = make(tmp_path, store)
    await second.start()
    await until(lambda: second.counts().written == 1)
    await second.stop()
    assert store.texts == texts(1)


@dataclass(frozen=True)
class Unknown:
    kind: ClassVar[str] = "request.finished"
    path: str

    def record(self) -> Mapping[str, Any]:
        return {"path": self.path}


async def test_events_that_fit_no_table_are_dead_lettered(tmp_path: Path) -> None:
    store = FakeStore()
    writer = make(tmp_path, store)
    await writer.start()
    writer.emit(Unknown("/health"))
    naive = event(1)
    writer.emit(
        replace(naive, timestamp=datetime(2026, 1, 1))  # noqa: DTZ001
    )
    writer.emit(event(2))
    await writer.stop()
    assert store.texts == ["SELECT 2"]
    unknown, unconvertible = dead_letters(tmp_path)
    assert (unknown["reason"], unknown["kind"]) == ("unknown_kind", "request.finished")
    assert unknown["record"] == {"path": "/health"}
    assert unconvertible["reason"] == "unconvertible"
    assert "naive" in unconvertible["error"]
    assert (writer.counts().dead_lettered, writer.counts().lost) == (2, 0)


async def test_emit_never_raises_when_the_spool_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    store = FakeStore()
    store.down = True
    writer = make(tmp_path / "file" / "spool", store, queue_size=20)
    with capture_logs() as logs:
        await writer.start()
        for i in range(50):
            writer.emit(event(i))
    assert [e["event"] for e in logs if e["log_level"] == "error"] == [
        "analytics.spool_unusable",  # at start
        "analytics.spool_failed",  # once, though every spill failed
        "analytics.events_lost",  # once, for the first
    ]
    assert writer.counts().lost == 30  # memory is full: what the spool cannot take is counted
    writer.emit(Unknown("/health"))  # the dead-letter file cannot be written either
    await writer.stop()  # the 20 in memory can go nowhere
    writer.emit(event(50))
    counts = writer.counts()
    assert (counts.lost, counts.pending, counts.written) == (52, 0, 0)


async def test_emit_from_another_thread_reaches_the_loop(tmp_path: Path) -> None:
    store = FakeStore()
    writer = make(tmp_path, store)
    await writer.start()
    thread = threading.Thread(target=writer.emit, args=(event(0),))
    thread.start()
    thread.join()
    await until(lambda: writer.counts().written == 1)
    await writer.stop()
    assert store.texts == texts(1)


async def test_a_slot_whose_process_ended_is_adopted_and_a_held_one_is_left_alone(
    tmp_path: Path,
) -> None:
    """A command spools its events while a server holds the store; the server adopts them."""
    store = FakeStore()
    server = make(tmp_path, store)
    await server.start()  # holds slot-0
    command = make(tmp_path, FakeStore())
    await command.stop()  # as tablehouse query does when the store is held elsewhere
    for i in range(3):
        command.emit(event(i))
    assert command.counts().spooled == 3
    server.emit(event(9))  # in memory: stays the server's own

    with pytest.raises(SlotBusy):
        await EventWriter(store, WriterSettings(spool_dir=tmp_path), slot=0).adopt()
    adopter = EventWriter(store, WriterSettings(spool_dir=tmp_path), slot=1)
    await adopter.adopt()
    await server.stop()

    assert adopter.counts().written == 3
    assert store.texts[:3] == texts(3)
    assert sorted(store.texts) == sorted([*texts(3), "SELECT 9"])
    assert segments(tmp_path) == []
    assert waiting_slots(tmp_path) == []


def test_a_query_event_carries_its_source_and_microseconds() -> None:
    row = QUERY_LOGS.row(replace(event(0), execution_time_ms=0.412, source="cli").record())
    values = dict(zip(QUERY_LOGS.columns, row, strict=True))

    assert values["source"] == "cli"
    assert values["execution_time_us"] == 412
    assert values["execution_time_ms"] == 0  # the spec's whole milliseconds, kept as they were
    assert (
        dict(zip(QUERY_LOGS.columns, QUERY_LOGS.row(event(0).record()), strict=True))["source"]
        == "api"
    )
