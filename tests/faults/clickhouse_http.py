"""A ClickHouse server, as far as a server process's analytics can tell: ClickHouse's HTTP
interface in front of this test process's chDB engine.

There is no ClickHouse server in the test environment, and chDB opens one data path per
process, so a ``tablehouse serve`` process cannot share the test's store. This gives it the
store over HTTP (``ANALYTICS_URL=http://127.0.0.1:<port>/<database>``), where a proxy can
take it away and give it back, while the test reads what arrived straight from chDB.

It speaks the part of the protocol clickhouse-connect uses: ``GET /ping``; a statement in
the body (or the ``query`` parameter), its ``param_<name>`` values, the ``database``
parameter; an ``INSERT ... FORMAT Native`` whose data follows the statement in a body that
may be chunked and lz4-, gzip- or deflate-encoded; ClickHouse's headers on the answer, and
its ``Code: N. DB::Exception`` errors with ``X-ClickHouse-Exception-Code``. Settings given
as parameters reach inserts (``insert_deduplication_token`` is what makes a resent batch
count once); statements that read take none that would change what they return.
"""

from __future__ import annotations

import gzip
import importlib
import os
import re
import sys
import tempfile
import threading
import uuid
import zlib
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import chdb
import orjson
from chdb.state.sqlitelike import Connection

from tablehouse.analytics.store.client import StoreTarget, quote

# Parameters of the HTTP interface itself, not settings of the statement.
HTTP_PARAMETERS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "compress",
        "decompress",
        "user",
        "password",
        "quota_key",
        "client_protocol_version",
        "wait_end_of_query",
        "buffer_size",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "enable_http_compression",
        "http_zlib_compression_level",
        "cancel_http_readonly_queries_on_client_close",
    }
)
_INSERT_HEAD = re.compile(rb"^\s*(INSERT\s.*?)\s+FORMAT\s+(\w+)\s*$", re.IGNORECASE)
_TRAILING_FORMAT = re.compile(r"\sFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_ERROR_CODE = re.compile(r"Code: (\d+)\.")


class ClickHouseHttp:
    """Serves ``target``'s chDB data path on 127.0.0.1:``port`` until the block ends."""

    def __init__(self, target: StoreTarget) -> None:
        self.target = target
        self.errors: list[str] = []  # failures of the stand-in itself, for the test to show
        self._engine: Connection | None = None
        self._lock = threading.Lock()
        self._database: str | None = None
        self._http = _Server(self)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    def __enter__(self) -> ClickHouseHttp:
        os.makedirs(self.target.path, exist_ok=True)
        self._engine = chdb.connect(self.target.path)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=10)
        with self._lock:
            self._connected().close()

    def _connected(self) -> Connection:
        assert self._engine is not None, "use the stand-in in a with block"
        return self._engine

    def execute(self, statement: bytes, parameters: Mapping[str, str]) -> tuple[bytes, str]:
        """Run one statement; its output and the output's format."""
        engine = self._connected()
        database = parameters.get("database")
        with self._lock:
            if database and database != self._database:
                engine.query(f"USE {quote(database)}", "TabSeparated")
                self._database = database
            first_line, _, data = statement.partition(b"\n")
            insert = _INSERT_HEAD.match(first_line)
            if insert is not None:
                self._insert(insert[1].decode(), insert[2].decode(), data, parameters)
                return b"", "TabSeparated"
            sql = statement.decode()
            values = {
                name.removeprefix("param_"): value
                for name, value in parameters.items()
                if name.startswith("param_")
            }
            result = engine.query(sql, "TabSeparated", params=values)
            found = _TRAILING_FORMAT.search(sql)
            return bytes(result.bytes() or b""), found[1] if found else "TabSeparated"

    def _insert(self, into: str, form: str, data: bytes, parameters: Mapping[str, str]) -> None:
        """chDB takes an insert's data from a file, as clickhouse-connect's own chDB client
        does; the settings go with it."""
        settings = ", ".join(
            f"{name} = {_quote(value)}"
            for name, value in parameters.items()
            if name not in HTTP_PARAMETERS and not name.startswith("param_")
        )
        with tempfile.NamedTemporaryFile(suffix=".native", delete=False) as file:
            file.write(data)
        try:
            with_settings = f" SETTINGS {settings}" if settings else ""
            self._connected().query(
                f"{into} FROM INFILE {_quote(file.name)}{with_settings} FORMAT {form}",
                "TabSeparated",
            )
        finally:
            os.unlink(file.name)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, store: ClickHouseHttp) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.store = store

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that went away mid-request (the proxy cut it) is no error of ours."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.store.errors.append(f"{type(error).__name__}: {error}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the server process logs what it did with the store."""

    def do_GET(self) -> None:
        if urlsplit(self.path).path.rstrip("/") == "/ping":
            self._answer(200, b"Ok.\n", {})
        else:
            self._run(b"")

    def do_POST(self) -> None:
        self._run(self._body())

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = self._chunks()
        else:
            raw = self._read(int(self.headers.get("Content-Length") or 0))
        return _decoded(raw, self.headers.get("Content-Encoding", "").lower())

    def _chunks(self) -> bytes:
        parts = []
        while size := int(self._line().split(b";")[0].strip(), 16):
            parts.append(self._read(size))
            self._line()
        while self._line() not in (b"\r\n", b"\n"):
            pass  # trailers
        return b"".join(parts)

    def _read(self, size: int) -> bytes:
        data = self.rfile.read(size)
        if len(data) < size:
            raise ConnectionResetError("the client went away mid-body")
        return data

    def _line(self) -> bytes:
        line = self.rfile.readline()
        if not line.endswith(b"\n"):
            raise ConnectionResetError("the client went away mid-body")
        return line

    def _run(self, body: bytes) -> None:
        assert isinstance(self.server, _Server)
        store = self.server.store
        parameters = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        query = parameters.get("query", "").encode()
        statement = query + (b"\n" if query and body else b"") + body
        query_id = parameters.get("query_id") or str(uuid.uuid4())
        try:
            output, form = store.execute(statement, parameters)
        except Exception as exc:
            message = str(exc).strip() or type(exc).__name__
            code = _ERROR_CODE.search(message)
            if code is None:  # not ClickHouse refusing: the stand-in failed
                store.errors.append(f"{type(exc).__name__}: {message}")
            headers = {"X-ClickHouse-Exception-Code": code[1] if code else "1001"}
            self._answer(500, (message + "\n").encode(), headers)
            return
        summary = orjson.dumps({"read_rows": "0", "written_rows": "0"}).decode()
        headers = {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Format": form,
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Summary": summary,
        }
        self._answer(200, output, headers)

    def _answer(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "text/plain; charset=UTF-8", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _decoded(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "lz4":
        # lz4 ships no type information; its frame format is what ClickHouse reads.
        frame = importlib.import_module("lz4.frame")
        return bytes(frame.decompress(body))
    raise ValueError(f"Content-Encoding {encoding!r} is not spoken here")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
