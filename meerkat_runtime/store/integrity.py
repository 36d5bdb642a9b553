"""Integrity of stored records: a checksum frame, and a second count.

Theory of operation: a damaged byte must never make recovery return less
than was acknowledged without saying so. Two defences sit beside the strict
decoding of ``records``:

* **Framed records.** Every record a store writes is its JSON document
  followed by the CRC-32 of that document, written as 16 characters of JSON
  whitespace (two bits each: space, tab, line feed, carriage return). The
  record stays one valid JSON document, which the decoder reads in place:
  a prefix would have to be sliced off first, and decoding a slice or a
  memoryview cost more than the checksum itself. CRC-32 catches every
  single-bit flip and every burst up to 32 bits. Records written before
  framing end with ``}`` (an input, a receipt) or ``"`` (a phase), never
  with whitespace: they are read without a checksum, so old files keep
  opening. A damaged suffix cannot pass as either: a character that is no
  longer whitespace is trailing garbage to the decoder, one that is still
  whitespace changes the checksum.
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
from collections import Counter
from collections.abc import Collection

from meerkat_runtime.store.base import CorruptError

_WHITESPACE = b" \t\n\r"  # the base-4 digits 0-3 of the checksum
_SUFFIX = 16  # characters: 32 bits, two per character
_TO_DIGITS = bytes.maketrans(_WHITESPACE, b"0123")
_QUADS = [  # a byte of the checksum -> its four characters
    bytes(_WHITESPACE[(byte >> shift) & 3] for shift in (6, 4, 2, 0))
    for byte in range(256)
]
_LEGACY_LAST_BYTES = frozenset(b'}"')


def corruption(
    table: str, runtime_id: str, problem: str, kind: str = "", record_id: str = ""
) -> CorruptError:
    """The error to raise for damaged stored data (the one place that
    decides which error that is), naming the table, runtime and record."""
    record = f", {kind} {record_id!r}" if kind else ""
    return CorruptError(
        f"corrupt record in {table}: runtime {runtime_id!r}{record}: {problem}"
    )


def frame(document: bytes) -> bytes:
    """``document`` as a store keeps it: followed by its checksum."""
    crc = zlib.crc32(document).to_bytes(4, "big")
    return document + b"".join([_QUADS[byte] for byte in crc])


def frame_problem(data: bytes) -> str | None:
    """Why a stored record is damaged (a checksum that does not match, an
    ending no record has), or ``None``. A record from before framing passes
    here, for the strict decoder to judge."""
    suffix = data[-_SUFFIX:]
    if len(data) > _SUFFIX and not suffix.translate(None, _WHITESPACE):
        stored = int(suffix.translate(_TO_DIGITS), 4)
        computed = zlib.crc32(memoryview(data)[:-_SUFFIX])
        if stored == computed:
            return None
        return (
            f"checksum mismatch (stored {stored:08x}, computed {computed:08x}): "
            "the record was damaged"
        )
    if data and data[-1] in _LEGACY_LAST_BYTES:
        return None
    return (
        "not a record this store writes, or its checksum is damaged "
        f"(it ends with {data[-4:]!r})"
    )


# The rows of one runtime, read by a full scan of the table (which shares no
# b-tree page with an index), and counted through the primary-key index. The
# load goes through the arrival index (PD-42) on a file of schema 3 or later;
# the primary key is what every write's upsert finds a row by, so a row it
# hides would be written twice. A damaged index entry can also point at the
# wrong row: the load then returns as many rows as the table holds, one of
# them twice or another runtime's, so the ids are compared, not only counted.
_TABLE_IDS = (
    "SELECT input_id FROM runtime_input_states NOT INDEXED WHERE runtime_id = ?1"
)
_KEYED_COUNT = (
    "SELECT count(*) FROM runtime_input_states "
    "INDEXED BY sqlite_autoindex_runtime_input_states_1 WHERE runtime_id = ?1"
)


def check_input_count(
    conn: sqlite3.Connection, runtime_id: str, loaded: int | Collection[str]
) -> None:
    """Fail when a load, or the primary-key index, finds other input rows
    than the table holds for ``runtime_id``: ``loaded`` is the ids the load
    returned (or only their number, where the caller keeps no ids). Run it
    after the load, on a connection that saw the same data: nothing writes
    a runtime while it is being recovered (a driver's operations do not
    interleave)."""
    held = [row[0] for row in conn.execute(_TABLE_IDS, (runtime_id,))]
    (keyed,) = conn.execute(_KEYED_COUNT, (runtime_id,)).fetchone()
    found = loaded if isinstance(loaded, int) else len(loaded)
    for count, path in ((found, "the index"), (keyed, "the primary-key index")):
        if count != len(held):
            _damaged(
                runtime_id,
                f"{path} found {count} input rows but the table holds {len(held)}",
            )
    if isinstance(loaded, int):
        return
    loaded_set = set(loaded)
    if len(loaded_set) != len(loaded):
        twice = next(i for i, n in Counter(loaded).items() if n > 1)
        _damaged(runtime_id, f"the index returned input {twice!r} twice")
    if loaded_set != set(held):
        stray = sorted(loaded_set.symmetric_difference(held))[0]
        _damaged(runtime_id, f"the index and the table disagree on input {stray!r}")


def _damaged(runtime_id: str, problem: str) -> None:
    raise corruption(
        "runtime_input_states",
        runtime_id,
        f"{problem}: an index or the table's pages are damaged",
    )
