"""Damage a closed SQLite file one bit at a time and recover it.

For every damaged copy the outcome must be an error that names what is
damaged (a record's table, runtime and id; or SQLite's complaint naming the
file), or a recovery that returns every acknowledged input, every record
and every receipt exactly as from the undamaged file: never fewer inputs
without an error, never a changed payload.

The offsets are a deterministic sample spread over each kind of page (the
file header, the schema, table and index b-tree pages, overflow pages and
free pages), so every kind is hit in every run. ``MEERKAT_CORRUPTION_OFFSETS``
sets how many (``make fuzz`` uses a few thousand); the tally is printed
(``-s`` shows it).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from pathlib import Path

import pytest

from tests.corruption.damage import PageMap, build, outcome, page_map, recover

DEFAULT_OFFSETS = 480
KINDS = ("header", "schema", "table", "index", "overflow", "free")


def sample(pages: PageMap, size: int, count: int) -> list[int]:
    """``count`` offsets, as evenly shared among the kinds as the kinds
    allow, each drawn from a generator seeded by its kind."""
    by_kind: dict[str, list[int]] = {kind: [] for kind in KINDS}
    for offset in range(size):
        by_kind[pages.kind_at(offset)].append(offset)
    chosen: list[int] = []
    share = count // len(KINDS)
    for kind in KINDS:
        offsets = by_kind[kind]
        assert offsets, f"the file has no {kind} bytes to damage"
        chosen += random.Random(kind).sample(offsets, min(share, len(offsets)))
    return sorted(chosen)


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corruption") / "original.db"
    build(path)
    return path


def test_one_flipped_bit_is_named_or_harmless(original: Path, tmp_path: Path) -> None:
    count = int(os.environ.get("MEERKAT_CORRUPTION_OFFSETS", DEFAULT_OFFSETS))
    data = original.read_bytes()
    pages = page_map(original)
    clean_copy = tmp_path / "clean.db"
    clean_copy.write_bytes(data)
    baseline = asyncio.run(recover(clean_copy))
    assert sum(len(records) for records, _ in baseline.values()) == 60
    tally: Counter[tuple[str, str]] = Counter()
    failures: list[str] = []
    damaged_path = tmp_path / "damaged.db"
    offsets = sample(pages, len(data), count)
    for offset in offsets:
        damaged = bytearray(data)
        damaged[offset] ^= 1 << (offset % 8)
        for leftover in tmp_path.glob("damaged.db*"):
            leftover.unlink()
        damaged_path.write_bytes(damaged)
        kind = pages.kind_at(offset)
        result = outcome(damaged_path, baseline)
        if result not in ("clean", "named", "sqlite"):
            failures.append(f"offset {offset} ({kind}): {result}")
            result = "FAILED"
        tally[kind, result] += 1
    print(f"\ncorruption tally: {len(offsets)} offsets, one bit flipped at each")
    for kind in KINDS:
        row = {r: n for (k, r), n in tally.items() if k == kind}
        print(f"  {kind:9} " + ", ".join(f"{r} {n}" for r, n in sorted(row.items())))
    assert not failures, "\n".join(failures)


# Offsets where one flipped bit made an arrival-index entry point at another
# row of the table: the load returned as many rows as the table holds, one
# of them twice, and the count check alone passed (found by `make fuzz`).
INDEX_ENTRY_POINTS_ELSEWHERE = (36872, 36877, 40018)


@pytest.mark.parametrize("offset", INDEX_ENTRY_POINTS_ELSEWHERE)
def test_an_index_entry_pointing_at_another_row_is_named(
    original: Path, tmp_path: Path, offset: int
) -> None:
    data = bytearray(original.read_bytes())
    assert page_map(original).kind_at(offset) == "index"
    baseline = asyncio.run(recover(original))
    data[offset] ^= 1 << (offset % 8)
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(data)
    assert outcome(damaged, baseline) in ("clean", "named", "sqlite")
