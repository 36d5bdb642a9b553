"""``inspect`` says what actually failed, and shows a failed run's error.

Permission problems need a user the permissions apply to: when the tests
run as root (who may read anything), the inspection runs in a forked child
that has switched to the unprivileged ``nobody`` user first.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meerkat_runtime import (
    CoreApplyOutput,
    MemoryBlobStore,
    RunControlCommand,
    RunId,
    RunPrimitive,
    RuntimeSessionAdapter,
    SessionId,
    SqliteRuntimeStore,
)
from meerkat_runtime.cli import main
from meerkat_runtime.inspection import InspectionError, load_database
from tests.sessions.helpers import outcome_of, prompt

NOBODY = 65534


def unprivileged(check: Callable[[], str]) -> str:
    """``check()`` as a user file permissions apply to: in a child switched
    to ``nobody`` when this process is root (its answer comes back through a
    pipe), in this process otherwise."""
    if os.geteuid() != 0:
        return check()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        answer = "child failed"
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            answer = check()
        finally:
            os.write(write_end, answer.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    return answer


def inspection_error(path: Path) -> Callable[[], str]:
    def check() -> str:
        try:
            load_database(path)
        except InspectionError as exc:
            return str(exc)
        return "no error"

    return check


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's own are private)."""
    directory = Path(tempfile.mkdtemp(prefix="meerkat-inspect-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        directory.chmod(0o755)
        shutil.rmtree(directory)


def make_database(path: Path) -> None:
    async def fill() -> None:
        store = SqliteRuntimeStore(path)
        adapter = RuntimeSessionAdapter.persistent(store, MemoryBlobStore())
        sid = SessionId.new()
        await adapter.register_session(sid)
        await adapter.accept_input(sid, prompt("kept"))
        await adapter.close()
        await store.close()

    asyncio.run(fill())
    path.chmod(0o644)


def test_a_read_only_directory_is_named_not_called_a_non_sqlite_file(
    shared_dir: Path,
) -> None:
    """A WAL database in a directory the user cannot write: reading needs
    the -shm file created there. The error said "not an SQLite file"."""
    database = shared_dir / "runtime.db"
    make_database(database)
    shared_dir.chmod(0o555)
    message = unprivileged(inspection_error(database))
    assert message.startswith(f"{database}: permission denied")
    assert str(shared_dir) in message
    assert "not an SQLite file" not in message


def test_an_unreadable_file_says_permission_denied(shared_dir: Path) -> None:
    database = shared_dir / "runtime.db"
    make_database(database)
    database.chmod(0o000)
    message = unprivileged(inspection_error(database))
    assert message == f"{database}: permission denied: this user cannot read the file"


def test_a_file_that_is_not_sqlite_says_so_once(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all\n" * 20)
    with pytest.raises(InspectionError) as caught:
        load_database(text)
    assert str(caught.value) == f"{text} is not a meerkat database (not an SQLite file)"


class ModelDown:
    async def apply(self, run_id: RunId, primitive: RunPrimitive) -> CoreApplyOutput:
        inputs = len(primitive.contributing_input_ids)
        raise RuntimeError(f"model down for {inputs} input(s) of run {run_id}")

    async def control(self, command: RunControlCommand) -> None:
        pass


def test_inspect_shows_each_failed_attempts_error(tmp_path: Path) -> None:
    database = tmp_path / "runtime.db"

    async def fail() -> None:
        store = SqliteRuntimeStore(database)
        adapter = RuntimeSessionAdapter.persistent(
            store, MemoryBlobStore(), retry_delay=0.001
        )
        sid = SessionId.new()
        await adapter.register_session_with_executor(sid, ModelDown())
        _, handle = await adapter.accept_input_with_completion(sid, prompt("q"))
        await outcome_of(handle)
        await adapter.close()
        await store.close()

    asyncio.run(fail())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["inspect", str(database)]) == 0
    text = out.getvalue()
    assert text.count("error: RuntimeError: model down for 1 input(s)") == 3, text
