"""Integrity of stored records: a checksum frame, and a second count.

Theory of operation: a damaged byte must never make recovery return less
than was acknowledged without saying so. Two defences sit beside the strict
decoding of ``records``:

* **Framed records.** Every record a store writes is ``FRAMED`` (one byte),
  the CRC-32 of the JSON body (eight lower-case hex digits), then the body.
  CRC-32 catches every single-bit flip and every burst up to 32 bits, and
  the standard library computes it far faster than recovery decodes JSON.
  The frame is ASCII, so a record stays valid UTF-8 (text tools, and a
  column cast to text, still read it). Records
  written before framing are bare JSON, which always starts with ``{`` (an
  input or a receipt) or ``"`` (a runtime phase): they are recognised by that
  first byte and read without a checksum, so old files keep opening. The
  frame byte is several bit flips away from both, so one flip cannot turn a
  framed record into one that skips its check, nor the other way round.
* **A second access path.** SQLite finds a runtime's input rows through the
  primary-key index; a damaged index page can hide rows while the page still
  passes ``PRAGMA quick_check``. After loading, the rows are counted again by
  a full scan of the table itself (``NOT INDEXED``), which shares no page
  with the index. A difference is corruption.

Every corruption error is made by ``corruption`` alone, so which error
that is gets decided in one place.
"""

from __future__ import annotations

import sqlite3
import zlib

from meerkat_runtime.store.base import ReadFailedError

FRAMED = 0x01
_HEADER = 9  # the frame byte and the CRC-32 in hex
_LEGACY_FIRST_BYTES = frozenset(b'{"')


def corruption(
    table: str, runtime_id: str, problem: str, kind: str = "", record_id: str = ""
) -> ReadFailedError:
    """The error to raise for damaged stored data (the one place that
    decides which error that is), naming the table, runtime and record."""
    record = f", {kind} {record_id!r}" if kind else ""
    return ReadFailedError(
        f"corrupt record in {table}: runtime {runtime_id!r}{record}: {problem}"
    )


def frame(body: bytes) -> bytes:
    """``body`` as a store keeps it: frame byte, CRC-32, body."""
    return b"%c%08x" % (FRAMED, zlib.crc32(body)) + body


def body_problem(data: bytes) -> tuple[bytes | memoryview, str | None]:
    """The JSON body of a stored record and ``None``; or, for a record that
    is damaged (a checksum that does not match, a frame it cannot be), the
    data and a sentence saying why. A bare JSON record predates framing and
    is passed through for the strict decoder to judge."""
    first = data[0] if data else None
    if first == FRAMED and len(data) >= _HEADER:
        body = memoryview(data)[_HEADER:]
        computed = b"%08x" % zlib.crc32(body)
        if data[1:_HEADER] == computed:
            return body, None
        return data, (
            f"checksum mismatch (stored {data[1:_HEADER]!r}, computed "
            f"{computed.decode()}): the record was damaged"
        )
    if first in _LEGACY_FIRST_BYTES:
        return data, None
    shown = "empty" if first is None else f"first byte 0x{first:02x}"
    return data, f"not a record this store writes ({shown})"


# The rows of one runtime, counted by a full scan of the table: the load goes
# through the primary-key index, so the two share no b-tree page.
_COUNT_BY_TABLE_SCAN = (
    "SELECT count(*) FROM runtime_input_states NOT INDEXED WHERE runtime_id = ?"
)


def check_input_count(conn: sqlite3.Connection, runtime_id: str, loaded: int) -> None:
    """Fail when a load returned a number of input rows other than the table
    holds for ``runtime_id``. Run it after the load, on a connection that
    saw the same data: nothing writes a runtime while it is being recovered
    (a driver's operations do not interleave)."""
    (held,) = conn.execute(_COUNT_BY_TABLE_SCAN, (runtime_id,)).fetchone()
    if held != loaded:
        raise corruption(
            "runtime_input_states",
            runtime_id,
            f"the index found {loaded} input rows but the table holds {held}: "
            "its primary-key index or its pages are damaged",
        )
