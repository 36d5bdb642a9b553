"""Pieces the SQLite benchmarks (durable.py, sessions.py) share: scratch
database files (under the system's temporary directory unless ``--dir``
says otherwise), a row count, and a store that records its commit groups and
can profile its writer thread. Not a benchmark itself."""

from __future__ import annotations

import cProfile
import itertools
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meerkat_runtime.store.sqlite import SqliteRuntimeStore


class Scratch:
    """Database files in one temporary directory, each removed after use."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._names = itertools.count()

    def path(self, name: str) -> Path:
        return self.dir / f"{name}-{next(self._names)}.db"

    @staticmethod
    def remove(path: Path) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def copy(self, source: Path, name: str) -> Path:
        """A copy of a closed database (and its WAL, if any), fsynced."""
        target = self.path(name)
        for suffix in ("", "-wal"):
            if Path(f"{source}{suffix}").exists():
                shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")
                fd = os.open(f"{target}{suffix}", os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return target


@contextmanager
def scratch_dir(parent: Path | None, benchmark: str) -> Iterator[Scratch]:
    """A fresh directory under ``parent`` (None: the system's temporary
    directory), removed with everything in it at the end."""
    directory = Path(tempfile.mkdtemp(prefix=f"meerkat-bench-{benchmark}-", dir=parent))
    try:
        yield Scratch(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def describe_file_system(scratch: Scratch) -> None:
    """Print where the database files go, and warn when that file system is
    memory: an fsync there costs nothing, so durable figures say little."""
    df = subprocess.run(
        ["df", "-hT", str(scratch.dir)], capture_output=True, text=True, check=False
    )
    print(f"database files in {scratch.dir} (removed afterwards); df -hT:")
    for row in df.stdout.splitlines():
        print(f"  {row}")
    if " tmpfs " in df.stdout:
        print(
            "WARNING: tmpfs keeps files in memory and fsync costs nothing: "
            "pass --dir with a directory on a disk"
        )


def count(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        return int(row[0])
    finally:
        conn.close()


class GroupCountingStore(SqliteRuntimeStore):
    """The SQLite store, recording the requests of each commit group and,
    while ``profiling`` is set, profiling its writer thread's commits
    (cProfile hooks only the thread that enables it)."""

    def __init__(self, path: Path) -> None:
        self.groups: list[int] = []
        self.profiling = False
        self.writer_profile = cProfile.Profile()
        super().__init__(path)
        self.writer.hooks.group = self._group
        self.writer.hooks.group_done = self._group_done

    def _group(self, size: int) -> None:  # in the writer thread
        self.groups.append(size)
        if self.profiling:
            self.writer_profile.enable()

    def _group_done(self, size: int) -> None:  # noqa: ARG002 - the hook's signature
        if self.profiling:
            self.writer_profile.disable()
