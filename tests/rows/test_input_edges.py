"""Input at the edges of what values can be: each is refused with a 4xx naming what was wrong,
or stored and read back exactly, on both backends (issue 13, findings 9 and 12-16)."""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tablehouse.config import Settings
from tablehouse.rows.convert.layout import Layout
from tablehouse.rows.convert.values import INT64_MAX, INT64_MIN, MAX_JSON_DEPTH
from tests.support import databases
from tests.support.accounts import bearer, signed_up
from tests.support.row_tables import SCHEMAS, define, insert_rows, layout_of

ROWS = f"{SCHEMAS}/edges/rows"
EDGES: dict[str, Any] = {
    "name": "edges",
    "fields": [
        {"name": "id", "type": "integer", "primary_key": True},
        {"name": "at", "type": "datetime"},
        {"name": "doc", "type": "json"},
        {"name": "x", "type": "float"},
        {"name": "n", "type": "integer"},
        {"name": "title", "type": "string"},
    ],
}
# Keyed by a date-time, so a date-time also arrives in a path and in a cursor.
MOMENTS: dict[str, Any] = {
    "name": "moments",
    "fields": [{"name": "at", "type": "datetime", "primary_key": True}],
}
FORMATS = ("json", "ndjson", "csv")
# Each is a valid ISO 8601 date-time whose UTC equivalent is outside years 1-9999.
BEYOND_UTC = ("9999-12-31T23:00:00-05:00", "0001-01-01T01:00:00+05:00")
MAX_BYTES = 10 * 1024 * 1024


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return databases.settings_for(database_url, tmp_path / "data", max_ingest_bytes=MAX_BYTES)


@pytest.fixture
async def headers(client: httpx.AsyncClient) -> dict[str, str]:
    auth = bearer((await signed_up(client, "edges@example.com"))["access_token"])
    await define(client, auth, EDGES)
    return auth


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def body_of(kind: str, rows: list[dict[str, Any]]) -> tuple[bytes, str]:
    """``rows`` as a body of ``kind``; numbers written exactly (stdlib json) as a client would."""
    if kind == "json":
        return json.dumps(rows).encode(), "application/json"
    if kind == "ndjson":
        return "".join(json.dumps(row) + "\n" for row in rows).encode(), "application/x-ndjson"
    names = list(dict.fromkeys(name for row in rows for name in row))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([[_cell(row.get(name)) for name in names] for row in rows])
    return text.getvalue().encode(), "text/csv"


async def post(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    kind: str,
    rows: list[dict[str, Any]],
    **extra: str,
) -> httpx.Response:
    content, content_type = body_of(kind, rows)
    return await client.post(
        ROWS, content=content, headers={**headers, "Content-Type": content_type, **extra}
    )


async def stored(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get(ROWS, params={"limit": 1000}, headers=headers)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["rows"]
    return rows


def problems(response: httpx.Response) -> list[tuple[int, str]]:
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_rows"
    return [(p["row"], p["field"]) for p in response.json()["detail"]]


def nested(depth: int) -> Any:
    """A JSON value ``depth`` arrays deep (``[[...]]``; 0 is a number)."""
    value: Any = 7
    for _ in range(depth):
        value = [value]
    return value


# Finding 9: date-times whose UTC equivalent is outside the range.


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("moment", BEYOND_UTC)
async def test_date_time_beyond_the_utc_range_is_422_in_every_format(
    client: httpx.AsyncClient, headers: dict[str, str], kind: str, moment: str
) -> None:
    response = await post(client, headers, kind, [{"id": 1, "at": moment}])
    assert problems(response) == [(0, "at")]
    assert "outside the range" in response.json()["detail"][0]["message"]
    assert await stored(client, headers) == []


@pytest.mark.parametrize("kind", FORMATS)
async def test_date_times_at_the_ends_of_the_range_round_trip(
    client: httpx.AsyncClient, headers: dict[str, str], kind: str
) -> None:
    rows = [
        {"id": 1, "at": "0001-01-01T00:00:00+00:00"},
        {"id": 2, "at": "9999-12-31T23:59:59.999999+00:00"},
        {"id": 3, "at": "9999-12-31T18:59:59-05:00"},
        {"id": 4, "at": "0001-01-01T05:00:00+05:00"},
    ]
    response = await post(client, headers, kind, rows)
    assert response.status_code == 201, response.text
    assert [row["at"] for row in await stored(client, headers)] == [
        "0001-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59.999999+00:00",
        "9999-12-31T23:59:59+00:00",
        "0001-01-01T00:00:00+00:00",
    ]


@pytest.mark.parametrize("moment", BEYOND_UTC)
async def test_date_time_beyond_the_utc_range_in_a_filter_is_422_naming_it(
    client: httpx.AsyncClient, headers: dict[str, str], moment: str
) -> None:
    for value in (f"gt.{moment}", f"in.({moment})"):
        response = await client.get(ROWS, params={"at": value}, headers=headers)
        assert response.status_code == 422, response.text
        [problem] = response.json()["detail"]
        assert problem["loc"] == ["query", "at"]
        assert "outside the range" in problem["msg"]


@pytest.mark.parametrize("moment", BEYOND_UTC)
async def test_date_time_beyond_the_utc_range_in_a_patch_is_422_naming_the_field(
    client: httpx.AsyncClient, headers: dict[str, str], moment: str
) -> None:
    assert (await post(client, headers, "json", [{"id": 1}])).status_code == 201
    response = await client.patch(f"{ROWS}/1", json={"at": moment}, headers=headers)
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "at"]
    assert "outside the range" in problem["msg"]


async def test_date_time_beyond_the_utc_range_in_a_key_or_cursor_is_4xx(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    await define(client, headers, MOMENTS)
    moments = f"{SCHEMAS}/moments/rows"
    loaded = await client.post(
        moments, json=[{"at": "2026-01-01T00:00:00Z"}, {"at": "2026-01-02T00:00:00Z"}],
        headers=headers,
    )  # fmt: skip
    assert loaded.status_code == 201, loaded.text
    for moment in BEYOND_UTC:
        by_key = await client.get(f"{moments}/{moment}", headers=headers)
        assert by_key.status_code == 422, by_key.text
        assert by_key.json()["detail"][0]["loc"] == ["path", "key", "at"]

    first = await client.get(moments, params={"limit": 1}, headers=headers)
    token = first.json()["next"]
    payload = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    for moment in BEYOND_UTC:
        payload["after"] = [moment]
        forged = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()
        page = await client.get(moments, params={"limit": 1, "cursor": forged}, headers=headers)
        assert page.status_code == 400, page.text
        assert page.json()["code"] == "invalid_cursor"


# Finding 12: JSON nested too deep.


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 300])
async def test_json_nested_deeper_than_the_limit_is_422_naming_row_and_field(
    client: httpx.AsyncClient, headers: dict[str, str], kind: str, depth: int
) -> None:
    response = await post(client, headers, kind, [{"id": 1}, {"id": 2, "doc": nested(depth)}])
    assert problems(response) == [(1, "doc")]
    assert f"{MAX_JSON_DEPTH} levels" in response.json()["detail"][0]["message"]
    assert await stored(client, headers) == []


@pytest.mark.parametrize("kind", FORMATS)
async def test_json_nested_to_the_limit_round_trips(
    client: httpx.AsyncClient, headers: dict[str, str], kind: str
) -> None:
    deepest = {"a": nested(MAX_JSON_DEPTH - 1)}
    response = await post(client, headers, kind, [{"id": 1, "doc": deepest}])
    assert response.status_code == 201, response.text
    assert [row["doc"] for row in await stored(client, headers)] == [deepest]


async def test_json_nested_too_deep_in_a_patch_is_422_naming_the_field(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert (await post(client, headers, "json", [{"id": 1}])).status_code == 201
    for depth in (MAX_JSON_DEPTH + 1, 300):
        response = await client.patch(f"{ROWS}/1", json={"doc": nested(depth)}, headers=headers)
        assert response.status_code == 422, response.text
        [problem] = response.json()["detail"]
        assert problem["loc"] == ["body", "doc"]
        assert f"{MAX_JSON_DEPTH} levels" in problem["msg"]


async def test_a_row_stored_too_deep_before_the_limit_still_reads(
    client: httpx.AsyncClient, headers: dict[str, str], settings: Settings
) -> None:
    """Rows stored before the depth limit existed: reading them is never a 500."""
    await insert_rows(settings, "edges", [{"id": 1, "doc": nested(300)}, {"id": 2}])
    one = await client.get(f"{ROWS}/1", headers=headers)
    assert one.status_code == 200, one.text
    assert one.json()["doc"] == nested(300)
    assert [row["doc"] for row in await stored(client, headers)] == [nested(300), None]


# Finding 13: integers beyond 64 bits inside JSON values.

BIG = 123456789012345678901234567890


@pytest.mark.parametrize("kind", ["ndjson", "csv"])
@pytest.mark.parametrize("number", [BIG, -BIG, INT64_MAX + 1, INT64_MIN - 1])
async def test_json_integer_beyond_64_bits_is_422_saying_to_send_a_string(
    client: httpx.AsyncClient, headers: dict[str, str], kind: str, number: int
) -> None:
    response = await post(client, headers, kind, [{"id": 1, "doc": {"k": [1, {"n": number}]}}])
    assert problems(response) == [(0, "doc")]
    assert "as strings" in response.json()["detail"][0]["message"]
    assert await stored(client, headers) == []


async def test_json_integer_beyond_64_bits_in_a_json_array_body_is_422(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await post(client, headers, "json", [{"id": 1, "doc": {"n": BIG}}])
    assert problems(response) == [(0, "doc")]


async def test_exact_big_integers_in_json_values_are_refused_by_the_layout(
    settings: Settings, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """What a parser that keeps integers exact (stdlib json, ijson) hands the layout."""
    layout: Layout = await layout_of(settings, "edges")
    record, found = layout.from_mapping({"id": 1, "doc": {"n": BIG}})
    assert record is None
    assert [field for field, _ in found] == ["doc"]
    record, found = layout.from_mapping({"id": 1, "doc": {"n": INT64_MAX}, "n": INT64_MIN})
    assert found == ()


@pytest.mark.parametrize("kind", FORMATS)
async def test_json_integers_at_the_64_bit_limits_and_big_numbers_as_strings_round_trip(
    client: httpx.AsyncClient, headers: dict[str, str], kind: str
) -> None:
    doc = {"max": INT64_MAX, "min": INT64_MIN, "big": str(BIG), "long": "9" * 40, "f": 0.5}
    response = await post(client, headers, kind, [{"id": 1, "doc": doc}])
    assert response.status_code == 201, response.text
    [row] = await stored(client, headers)
    assert row["doc"] == doc


async def test_json_integer_beyond_64_bits_in_a_patch_is_422(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert (await post(client, headers, "json", [{"id": 1}])).status_code == 201
    response = await client.patch(
        f"{ROWS}/1",
        content=f'{{"doc": {{"n": {BIG}}}}}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "doc"]
    assert "as strings" in problem["msg"]
    too_big_for_a_float = await client.patch(
        f"{ROWS}/1",
        content='{"x": 1' + "0" * 400 + "}",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert too_big_for_a_float.status_code == 422, too_big_for_a_float.text
    assert too_big_for_a_float.json()["detail"][0]["loc"] == ["body", "x"]


@pytest.mark.parametrize("kind", ["ndjson", "csv"])
async def test_integer_field_beyond_64_bits_is_422_naming_the_range(
    client: httpx.AsyncClient, headers: dict[str, str], kind: str
) -> None:
    response = await post(client, headers, kind, [{"id": 1, "n": INT64_MAX + 1}])
    assert problems(response) == [(0, "n")]
    assert "64-bit range" in response.json()["detail"][0]["message"]


# Finding 14: a CSV header naming a column twice.


@pytest.mark.parametrize("header", ["id,title,title", "id,title,id", "id, title,title "])
async def test_csv_header_repeating_a_column_is_422_naming_it(
    client: httpx.AsyncClient, headers: dict[str, str], header: str
) -> None:
    response = await client.post(
        ROWS, content=f"{header}\n1,a,b\n", headers={**headers, "Content-Type": "text/csv"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "header"]
    repeated = header.split(",")[-1].strip()
    assert f"'{repeated}' more than once" in problem["msg"]
    assert await stored(client, headers) == []


# Finding 15: byte-order marks and compressed bodies.


@pytest.mark.parametrize("kind", FORMATS)
async def test_body_starting_with_a_byte_order_mark_is_read(
    client: httpx.AsyncClient, headers: dict[str, str], kind: str
) -> None:
    content, content_type = body_of(kind, [{"id": 1, "title": "\ufeffkept inside"}])
    response = await client.post(
        ROWS,
        content=b"\xef\xbb\xbf" + content,
        headers={**headers, "Content-Type": content_type},
    )
    assert response.status_code == 201, response.text
    assert [row["title"] for row in await stored(client, headers)] == ["\ufeffkept inside"]


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "x-gzip", "GZIP", "identity"])
async def test_compressed_body_is_decoded(
    client: httpx.AsyncClient, headers: dict[str, str], kind: str, encoding: str
) -> None:
    content, content_type = body_of(kind, [{"id": n, "title": f"t{n}"} for n in range(2000)])
    compressors: dict[str, Callable[[bytes], bytes]] = {"deflate": zlib.compress, "identity": bytes}
    compress = compressors.get(encoding, gzip.compress)
    response = await client.post(
        ROWS,
        content=compress(b"\xef\xbb\xbf" + content),
        headers={**headers, "Content-Type": content_type, "Content-Encoding": encoding},
    )
    assert response.status_code == 201, response.text
    assert response.json()["inserted"] == 2000


async def test_compressed_body_over_the_limit_once_decoded_is_413(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """A zip bomb: 100 KB that inflates to 100 MB stops at MAX_INGEST_BYTES, not at its end."""
    squeezer = zlib.compressobj(wbits=31)
    start = squeezer.compress(b'{"id": 1, "title": "')
    spaces = b"".join(squeezer.compress(b" " * 1_000_000) for _ in range(100))
    bomb = start + spaces + squeezer.compress(b'"}\n') + squeezer.flush()
    assert len(bomb) < MAX_BYTES / 20
    response = await client.post(
        ROWS,
        content=bomb,
        headers={**headers, "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 413, response.text
    assert "decompressed" in response.json()["detail"]
    assert await stored(client, headers) == []


async def test_unknown_or_broken_content_encoding_is_4xx_naming_it(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    csv_type = {"Content-Type": "text/csv"}
    for encoding in ("br", "zstd", "gzip, gzip"):
        response = await client.post(
            ROWS, content=b"id\n1\n", headers={**headers, **csv_type, "Content-Encoding": encoding}
        )
        assert response.status_code == 415, response.text
        assert response.json()["code"] == "unsupported_content_encoding"
        assert repr(encoding.lower()) in response.json()["detail"]
        assert response.headers["Accept-Encoding"] == "gzip, deflate"
    for encoding, content in (("gzip", b"id\n1\n"), ("gzip", gzip.compress(b"id\n1\n")[:-5])):
        response = await client.post(
            ROWS, content=content, headers={**headers, **csv_type, "Content-Encoding": encoding}
        )
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_content_encoding"
    assert await stored(client, headers) == []


# Finding 16: negative zero.


@pytest.mark.parametrize("kind", FORMATS)
async def test_negative_zero_round_trips_or_is_refused_on_sqlite(
    client: httpx.AsyncClient, headers: dict[str, str], backend: str, kind: str
) -> None:
    response = await post(client, headers, kind, [{"id": 1, "x": -0.0}, {"id": 2, "x": 0.0}])
    if backend == "sqlite":
        assert problems(response) == [(0, "x")]
        assert "-0.0" in response.json()["detail"][0]["message"]
        assert await stored(client, headers) == []
        return
    assert response.status_code == 201, response.text
    assert [str(row["x"]) for row in await stored(client, headers)] == ["-0.0", "0.0"]


async def test_negative_zero_in_a_patch_round_trips_or_is_refused_on_sqlite(
    client: httpx.AsyncClient, headers: dict[str, str], backend: str
) -> None:
    assert (await post(client, headers, "json", [{"id": 1, "x": 1.5}])).status_code == 201
    response = await client.patch(f"{ROWS}/1", json={"x": -0.0}, headers=headers)
    if backend == "sqlite":
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "x"]
        return
    assert response.status_code == 200, response.text
    assert str((await client.get(f"{ROWS}/1", headers=headers)).json()["x"]) == "-0.0"


@pytest.mark.parametrize("kind", FORMATS)
async def test_negative_zero_in_a_json_value_round_trips_or_is_refused_on_postgresql(
    client: httpx.AsyncClient, headers: dict[str, str], backend: str, kind: str
) -> None:
    """jsonb keeps numbers as numeric, which has no negative zero."""
    response = await post(client, headers, kind, [{"id": 1, "doc": {"z": [-0.0]}}])
    if backend == "postgresql":
        assert problems(response) == [(0, "doc")]
        assert "-0.0" in response.json()["detail"][0]["message"]
        return
    assert response.status_code == 201, response.text
    [row] = await stored(client, headers)
    assert str(row["doc"]["z"][0]) == "-0.0"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/query", '{"sql": "select \'\\ud800\'"}'),
        ("/api/v1/query", '{"sql": 5, "params": {"\\ud800": 1}}'),
        ("/api/v1/schemas", '{"name": "\\udfff", "fields": []}'),
    ],
)
async def test_a_lone_surrogate_in_a_json_body_is_a_4xx_not_a_500(
    client: httpx.AsyncClient, headers: dict[str, str], path: str, body: str
) -> None:
    # JSON may escape half of a UTF-16 pair; no UTF-8 text can hold it, so answering with it
    # (a 422 echoing the input) or storing it must not end in an encoding error.
    response = await client.post(
        path, content=body, headers={**headers, "Content-Type": "application/json"}
    )

    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]


async def test_a_lone_surrogate_in_a_row_value_is_422_naming_the_field(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    # Stored, it would come back as "a?b" (both databases replace it): refused instead.
    for row, field in (
        ('{"id": 1, "title": "a\\ud800b"}', "title"),
        ('{"id": 2, "doc": {"k": "\\udfff"}}', "doc"),
    ):
        loaded = await client.post(
            ROWS, content=f"[{row}]", headers={**headers, "Content-Type": "application/json"}
        )

        assert loaded.status_code == 422, loaded.text
        assert loaded.json()["detail"][0]["field"] == field
        assert "lone surrogate" in loaded.json()["detail"][0]["message"]
