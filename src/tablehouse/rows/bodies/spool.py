"""A request body received whole into a local file before any of it is used.

A client sends at its own pace; nothing that holds a lock or a pooled connection should
wait for it. The body goes to a spool (memory up to ``IN_MEMORY``, then an unnamed file on
disk, in TMPDIR) and is read from there at disk speed.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO

from tablehouse.errors import ServiceUnavailable

IN_MEMORY = 1024**2
CHUNK = 64 * 1024


@asynccontextmanager
async def spooled(chunks: AsyncIterator[bytes]) -> AsyncIterator[IO[bytes]]:
    """The whole body, in a file read from its start; the file is gone after the block."""
    with tempfile.SpooledTemporaryFile(max_size=IN_MEMORY) as spool:
        async for chunk in chunks:
            _write(spool, chunk)
        spool.seek(0)
        yield spool


def _write(spool: IO[bytes], chunk: bytes) -> None:
    try:
        spool.write(chunk)
    except OSError as exc:  # the temporary directory is full or unwritable: not the client's doing
        raise ServiceUnavailable(
            f"the server cannot store this body now ({exc.strerror or exc}); retry later",
            code="no_room_for_body",
        ) from None


async def chunks_of(body: IO[bytes]) -> AsyncIterator[bytes]:
    """The spooled body a chunk at a time, as parsers that take a stream want it."""
    while chunk := body.read(CHUNK):
        yield chunk
        # Read at disk speed, the body would keep the event loop to itself between batches.
        await asyncio.sleep(0)
