"""``meerkat-runtime worker DB``: one fleet worker process (PD-67).

Opens the store (a SQLite file, or a PostgreSQL DSN, ``postgresql://`` URL
or ``host=... dbname=...`` conninfo, with its ``--schema``), loads the executor factory named ``module:attribute`` (a
callable taking the session id and returning a ``CoreExecutor``; by default
``meerkat_runtime.sessions.fleet:echo_executor``, which applies every run
at once and answers its text back), and runs a ``FleetWorker`` until
SIGTERM or SIGINT. Then it stops placing, drains for ``--drain`` seconds,
stops its loops and releases every lease it holds, closes the store and
exits 0, so the other workers take its runtimes at their next round.

It logs one line per claim and release on stderr (``--quiet``: warnings
only) and prints ``worker <owner> ready`` on stdout once it places.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from meerkat_runtime.blobs import BlobStore, FileBlobStore, MemoryBlobStore
from meerkat_runtime.errors import MeerkatError
from meerkat_runtime.sessions.fleet import (
    DEFAULT_IDLE_RELEASE,
    DEFAULT_MAX_RUNTIMES,
    DEFAULT_SCAN_INTERVAL,
    ExecutorFactory,
    FleetWorker,
)
from meerkat_runtime.store.base import RuntimeStore
from meerkat_runtime.store.leases import DEFAULT_LEASE_TTL
from meerkat_runtime.targets import is_dsn

DEFAULT_EXECUTOR = "meerkat_runtime.sessions.fleet:echo_executor"


class WorkerSetupError(MeerkatError):
    """The worker cannot start: a bad ``--executor``, an unusable target."""


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    target: str
    schema: str = "meerkat"
    executor: str = DEFAULT_EXECUTOR
    lease_ttl: float = DEFAULT_LEASE_TTL
    max_runtimes: int = DEFAULT_MAX_RUNTIMES
    idle_release: float = DEFAULT_IDLE_RELEASE
    scan_interval: float = DEFAULT_SCAN_INTERVAL
    drain: float = 0.0
    owner: str | None = None
    blobs: Path | None = None
    quiet: bool = False


def load_factory(spec: str) -> ExecutorFactory:
    """The callable ``module:attribute`` names, refused by name otherwise."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise WorkerSetupError(
            f"--executor must be module:factory (e.g. {DEFAULT_EXECUTOR}), not {spec!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WorkerSetupError(
            f"--executor {spec}: cannot import {module_name}: {exc}"
        ) from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise WorkerSetupError(
            f"--executor {spec}: {module_name} has no callable {attribute}"
        )
    return cast(ExecutorFactory, factory)


async def open_store(options: WorkerOptions) -> RuntimeStore:
    if is_dsn(options.target):
        try:
            from meerkat_runtime.store.postgres import PostgresRuntimeStore
        except ImportError as exc:
            raise WorkerSetupError(
                f"PostgreSQL needs the postgres extra ({exc})"
            ) from None
        return await PostgresRuntimeStore.open(
            options.target, schema=options.schema, lease_ttl=options.lease_ttl
        )
    from meerkat_runtime.store.sqlite import SqliteRuntimeStore

    refuse_foreign_database(Path(options.target))
    return await SqliteRuntimeStore.open(
        Path(options.target), lease_ttl=options.lease_ttl
    )


def refuse_foreign_database(path: Path) -> None:
    """A SQLite file that holds tables but none of meerkat's belongs to
    something else: the worker would add its tables to it. Refused as
    ``inspect`` refuses it; a missing or empty file is a new store, and one
    SQLite cannot read is left to the store's own error."""
    from meerkat_runtime.inspection import REQUIRED_TABLES

    if not path.is_file():
        return
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            tables = {str(name) for (name,) in rows}
        finally:
            conn.close()
    except sqlite3.Error:
        return
    if tables and tables.isdisjoint(REQUIRED_TABLES):
        raise WorkerSetupError(
            f"{path} is not a meerkat database (it holds other tables and "
            f"no {', '.join(REQUIRED_TABLES)}); name a new file or a meerkat one"
        )


def _blob_store(options: WorkerOptions) -> BlobStore:
    """Image blobs must be shared by every worker: a directory they all see
    (``--blobs``; beside a SQLite file by default). Over PostgreSQL without
    ``--blobs`` they are kept in memory, fine for inputs without images."""
    if options.blobs is not None:
        return FileBlobStore(options.blobs)
    if is_dsn(options.target):
        return MemoryBlobStore()
    return FileBlobStore(Path(f"{options.target}.blobs"))


async def serve(options: WorkerOptions) -> int:
    """Run one worker until SIGTERM/SIGINT; 0 after a clean shutdown."""
    factory = load_factory(options.executor)
    store = await open_store(options)
    try:
        worker = FleetWorker(
            store,
            factory,
            blob_store=_blob_store(options),
            owner=options.owner,
            max_runtimes=options.max_runtimes,
            idle_release=options.idle_release,
            scan_interval=options.scan_interval,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        worker.start()
        print(f"worker {worker.owner} ready", flush=True)
        await stop.wait()
        held = len(worker.held)
        await worker.close(drain=options.drain)
        print(
            f"worker {worker.owner} stopped: {worker.claims} claimed, "
            f"{held} released at shutdown",
            flush=True,
        )
    finally:
        await store.close()
    return 0


def run_worker(options: WorkerOptions) -> int:
    logging.basicConfig(
        level=logging.WARNING if options.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(serve(options))
