"""Benchmark: durable accepts beside other Python libraries that persist
work to SQLite, one caller and 64 callers.

Theory of operation: each peer writes the same 1.5 KB prompts, one record
per call, to a fresh file of its own in one directory (one file system),
and every figure runs once per round, the rounds interleaved (best of
several), so a slow spell of the machine hits all peers alike:

* **meerkat**: ``PersistentRuntimeDriver.accept_input`` on a
  ``SqliteRuntimeStore``; 64 callers are 64 drivers on one store.
* **raw sqlite3**: ``BEGIN IMMEDIATE; INSERT; COMMIT`` per row on one
  connection, the row encoded beforehand; 64 callers are 64 asyncio tasks
  handing rows to one writer thread that commits all waiting rows at once
  (``group_commit.RawGroupWriter``).
* **LangGraph** (``langgraph-checkpoint-sqlite``): ``SqliteSaver.put`` of a
  checkpoint holding the prompt (64 callers: 64 tasks, each ``put`` in a
  worker thread, ``asyncio.to_thread``), and ``AsyncSqliteSaver.aput``
  (64 callers: 64 tasks).
* **DBOS**: ``Queue.enqueue`` of a workflow taking the prompt, SQLite as
  the system database, the process listening to no queue (nothing runs the
  workflows); 64 callers: 64 tasks awaiting ``enqueue_async``.

Each peer keeps its own settings; the report prints the journal mode and
the ``synchronous`` level each one's connection actually had (read with
PRAGMA). A peer whose package is missing prints "not installed"; the
``bench`` extra installs them (``pip install -e '.[bench]'``).

Run with ``.venv/bin/python bench/peers.py`` (``--quick`` for small sizes,
``--dir`` for the file system to measure).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from durable_parts import INSERT_ROW, SESSIONS, raw_connect, rounds, text
from goals import goal
from group_commit import RawGroupWriter
from sqlite_tools import Scratch, describe_file_system, scratch_dir

from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.inputs import PromptInput
from meerkat_runtime.store.sqlite import SqliteRuntimeStore

ONE_CALLER_GOAL = 1.0  # meerkat / LangGraph SqliteSaver.put, one caller

Settings = tuple[str, str]  # (journal_mode, synchronous) as PRAGMA read them
SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def settings(journal: Any, synchronous: Any) -> Settings:
    return str(journal).upper(), SYNCHRONOUS.get(int(synchronous), str(synchronous))


def pragmas(conn: sqlite3.Connection) -> Settings:
    return settings(
        conn.execute("PRAGMA journal_mode").fetchone()[0],
        conn.execute("PRAGMA synchronous").fetchone()[0],
    )


@dataclass(slots=True)
class Figure:
    """Seconds per record of one repeat, and the settings the peer used."""

    seconds: float
    settings: Settings


# A peer's one repeat: (file, texts, callers) -> Figure.
Run = Callable[[Path, list[str], int], Figure]


def timed(count: int, body: Callable[[], Awaitable[Settings]]) -> Figure:
    """``body`` run once on a fresh event loop; seconds per record."""

    async def clocked() -> Figure:
        start = time.perf_counter()
        found = await body()
        return Figure((time.perf_counter() - start) / count, found)

    return asyncio.run(clocked())


async def fan_out(
    texts: list[str], callers: int, one: Callable[[int, str], Awaitable[None]]
) -> None:
    """``callers`` tasks, each writing its share of ``texts`` in turn."""

    async def caller(index: int) -> None:
        for k in range(index, len(texts), callers):
            await one(index, texts[k])

    await asyncio.gather(*(caller(i) for i in range(callers)))


def module(name: str) -> Any:
    """A peer's module, imported only when that peer runs (the peers are
    optional: the ``bench`` extra), and untyped here for the same reason."""
    return importlib.import_module(name)


# ------------------------------------------------------------ meerkat


def meerkat(path: Path, texts: list[str], callers: int) -> Figure:
    inputs = [PromptInput.new(t) for t in texts]

    async def body() -> Settings:
        store = SqliteRuntimeStore(path)
        try:
            drivers = [
                PersistentRuntimeDriver(
                    LogicalRuntimeId(f"peer-{i:02d}"), store, MemoryBlobStore()
                )
                for i in range(callers)
            ]
            by_text = dict(zip(texts, inputs, strict=True))

            async def one(index: int, prompt: str) -> None:
                await drivers[index].accept_input(by_text[prompt])

            await fan_out(texts, callers, one)
            return settings(
                store.writer_setting("journal_mode"),
                store.writer_setting("synchronous"),
            )
        finally:
            await store.close()

    return timed(len(texts), body)


# ------------------------------------------------------------ raw sqlite3


def raw(path: Path, texts: list[str], callers: int) -> Figure:
    rows = [("raw", f"input-{i:08d}", t.encode()) for i, t in enumerate(texts)]
    conn = raw_connect(path)
    conn.close()
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous = FULL")

    async def one_caller() -> Settings:
        for row in rows:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT_ROW, row)
            conn.execute("COMMIT")
        return pragmas(conn)

    async def many() -> Settings:
        writer = RawGroupWriter(conn)
        by_text = dict(zip(texts, rows, strict=True))
        try:
            await fan_out(
                texts, callers, lambda _, prompt: writer.write(by_text[prompt])
            )
        finally:
            writer.stop()
        return pragmas(conn)

    try:
        return timed(len(texts), one_caller if callers == 1 else many)
    finally:
        conn.close()


# ------------------------------------------------------------ LangGraph


def _checkpoint(index: int, prompt: str) -> Any:
    checkpoint = module("langgraph.checkpoint.base").empty_checkpoint()
    checkpoint["id"] = f"{index:08d}-{time.perf_counter_ns()}"
    checkpoint["channel_values"] = {"prompt": prompt}
    return checkpoint


def _config(index: int) -> Any:
    return {"configurable": {"thread_id": f"peer-{index:02d}", "checkpoint_ns": ""}}


def langgraph_put(path: Path, texts: list[str], callers: int) -> Figure:
    saver_class = module("langgraph.checkpoint.sqlite").SqliteSaver
    checkpoints = [_checkpoint(i, t) for i, t in enumerate(texts)]
    by_text = dict(zip(texts, checkpoints, strict=True))
    with saver_class.from_conn_string(str(path)) as saver:
        saver.setup()

        def put(index: int, prompt: str) -> None:
            metadata = {"source": "input", "step": 0}
            saver.put(_config(index), by_text[prompt], metadata, {})

        async def body() -> Settings:
            if callers == 1:
                for prompt in texts:
                    put(0, prompt)
            else:
                await fan_out(texts, callers, lambda i, p: asyncio.to_thread(put, i, p))
            return pragmas(saver.conn)

        return timed(len(texts), body)


def langgraph_aput(path: Path, texts: list[str], callers: int) -> Figure:
    saver_class = module("langgraph.checkpoint.sqlite.aio").AsyncSqliteSaver
    checkpoints = [_checkpoint(i, t) for i, t in enumerate(texts)]
    by_text = dict(zip(texts, checkpoints, strict=True))

    async def body() -> Settings:
        async with saver_class.from_conn_string(str(path)) as saver:
            await saver.setup()

            async def aput(index: int, prompt: str) -> None:
                metadata = {"source": "input", "step": 0}
                await saver.aput(_config(index), by_text[prompt], metadata, {})

            start = time.perf_counter()
            await fan_out(texts, callers, aput)
            elapsed = time.perf_counter() - start
            found = []
            for pragma in ("journal_mode", "synchronous"):
                async with saver.conn.execute(f"PRAGMA {pragma}") as cursor:
                    row = await cursor.fetchone()
                    found.append(row[0] if row else "?")
        figure.append(elapsed)
        return settings(*found)

    figure: list[float] = []
    measured = asyncio.run(body())
    return Figure(figure[0] / len(texts), measured)


# ------------------------------------------------------------ DBOS


def dbos_enqueue(path: Path, texts: list[str], callers: int) -> Figure:
    DBOS = module("dbos").DBOS  # noqa: N806 - the library's name
    logging.getLogger("dbos").setLevel(logging.ERROR)
    DBOS(
        config={
            "name": "meerkat-peers",
            "system_database_url": f"sqlite:///{path}",
            "log_level": "ERROR",
        }
    )

    def workflow(prompt: str) -> int:
        return len(prompt)

    peer_workflow = DBOS.workflow(name=f"peer_workflow_{path.stem}")(workflow)

    DBOS.listen_queues([])  # enqueue only: nothing here runs the workflows
    DBOS.launch()
    try:
        queue = DBOS.register_queue("peers")

        async def body() -> Settings:
            if callers == 1:
                for prompt in texts:
                    queue.enqueue(peer_workflow, prompt)
            else:

                async def one(_: int, prompt: str) -> None:
                    await queue.enqueue_async(peer_workflow, prompt)

                await fan_out(texts, callers, one)
            engine = module("dbos._dbos")._get_dbos_instance()._sys_db.engine
            with engine.connect() as conn:
                return settings(
                    conn.exec_driver_sql("PRAGMA journal_mode").scalar(),
                    conn.exec_driver_sql("PRAGMA synchronous").scalar(),
                )

        return timed(len(texts), body)
    finally:
        DBOS.destroy(destroy_registry=True)


# ------------------------------------------------------------ report


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    run: Run
    package: str | None  # the module that must be importable, if any


PEERS = (
    Peer("meerkat accept_input", meerkat, None),
    Peer("raw sqlite3", raw, None),
    Peer("LangGraph SqliteSaver.put", langgraph_put, "langgraph.checkpoint.sqlite"),
    Peer(
        "LangGraph AsyncSqliteSaver.aput", langgraph_aput, "langgraph.checkpoint.sqlite"
    ),
    Peer("DBOS Queue.enqueue", dbos_enqueue, "dbos._dbos"),
)


def installed(peer: Peer) -> bool:
    if peer.package is None:
        return True
    with contextlib.suppress(ModuleNotFoundError):
        return importlib.util.find_spec(peer.package) is not None
    return False


def repeat(scratch: Scratch, peer: Peer, texts: list[str], callers: int) -> Any:
    found: list[Settings] = []

    def run() -> float:
        path = scratch.path(peer.name.split()[0].lower())
        try:
            figure = peer.run(path, texts, callers)
        finally:
            scratch.remove(path)
        found.append(figure.settings)
        return figure.seconds

    return run, found


def report(
    title: str,
    best: dict[str, float],
    found: dict[str, list[Settings]],
    missing: list[str],
) -> None:
    print(f"\n{title}")
    meerkat_s, raw_s = best["meerkat accept_input"], best["raw sqlite3"]
    for name, seconds in best.items():
        journal, synchronous = found[name][-1]
        print(
            f"  {name:<34} {1 / seconds:>9,.0f}/s  {meerkat_s / seconds:>5.2f}x meerkat"
            f"  {raw_s / seconds:>5.2f}x raw  ({journal}, synchronous={synchronous})"
        )
    for name in missing:
        print(f"  {name:<34} not installed")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--dir", type=Path, default=None, help="temp dir parent")
    args = parser.parse_args(argv)
    n_one, per_caller, repeats = (30, 2, 1) if args.quick else (500, 20, 3)
    texts_one = [text(i) for i in range(n_one)]
    texts_many = [text(n_one + i) for i in range(SESSIONS * per_caller)]
    present = [p for p in PEERS if installed(p)]
    missing = [p.name for p in PEERS if not installed(p)]
    with scratch_dir(args.dir, "peers") as scratch:
        describe_file_system(scratch)
        print(
            f"1.5 KB prompts, one record per call; best of {repeats} interleaved "
            "rounds; each peer with its own settings (printed as read by PRAGMA)"
        )
        runs: dict[str, Any] = {}
        found: dict[str, dict[str, list[Settings]]] = {"1": {}, "64": {}}
        for peer in present:
            for label, texts, callers in (
                ("1", texts_one, 1),
                ("64", texts_many, SESSIONS),
            ):
                run, settings_found = repeat(scratch, peer, texts, callers)
                runs[f"{label}|{peer.name}"] = run
                found[label][peer.name] = settings_found
        figures = rounds(repeats, runs)
        for label, title in (
            ("1", f"one caller, {n_one:,} sequential writes"),
            ("64", f"{SESSIONS} callers, {len(texts_many):,} writes in all"),
        ):
            best = {
                key.split("|", 1)[1]: min(values)
                for key, values in figures.items()
                if key.startswith(f"{label}|")
            }
            report(title, best, found[label], missing)
        lang = "LangGraph SqliteSaver.put"
        if f"1|{lang}" in figures:
            ratio = min(figures[f"1|{lang}"]) / min(figures["1|meerkat accept_input"])
            print(goal("one-caller accepts", ratio, ONE_CALLER_GOAL, unit="x", of=lang))
        else:
            print(f"(goal one-caller accepts ≥ {lang}: not measured, not installed)")


if __name__ == "__main__":
    main()
