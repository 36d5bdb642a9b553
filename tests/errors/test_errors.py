"""The error tree: one root, typed store errors, and who may retry what."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import meerkat_runtime
from meerkat_runtime import (
    InputLifecycleError,
    LogicalRuntimeId,
    MemoryBlobStore,
    PersistentRuntimeDriver,
    PromptInput,
    RunId,
    RuntimeControlError,
    RuntimeDriverError,
    RuntimeSessionAdapter,
    RuntimeState,
    RuntimeStoreError,
    SessionId,
)
from meerkat_runtime.errors import MeerkatError, is_retryable
from meerkat_runtime.sessions.completion import RuntimeTerminated
from meerkat_runtime.store import InMemoryRuntimeStore, SqliteRuntimeStore
from meerkat_runtime.store.base import CommittedThenCancelled, SessionDelta
from meerkat_runtime.testing.conformance import receipt_for, rich_state
from meerkat_runtime.testing.faults import Fault, FaultyStore, SimulatedCrash
from tests.sessions.executors import ToyExecutor
from tests.sessions.helpers import outcome_of, prompt

RID = LogicalRuntimeId("errors")

# Not errors of the library but signals that must pass every `except
# Exception` (a simulated process death) or be a cancellation.
SIGNALS = {SimulatedCrash, CommittedThenCancelled}


def run(body: object) -> None:
    asyncio.run(body())  # type: ignore[operator]


def library_exceptions() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for module_info in pkgutil.walk_packages(
        meerkat_runtime.__path__, f"{meerkat_runtime.__name__}."
    ):
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith(
                "meerkat_runtime"
            ):
                found.add(value)
    return found


def test_every_error_class_of_the_library_derives_from_the_one_root() -> None:
    errors = library_exceptions() - SIGNALS
    assert RuntimeStoreError.Unavailable in errors  # the walk found the families
    assert InputLifecycleError in errors
    assert RuntimeControlError in errors
    # A private error (a leading underscore) never leaves its module: it is
    # translated there (blobs.py turns a refused link into BlobStoreError).
    strays = sorted(
        e.__qualname__
        for e in errors
        if not issubclass(e, MeerkatError) and not e.__name__.startswith("_")
    )
    assert strays == []


def test_api_names_stay_and_the_new_variants_sit_where_callers_look() -> None:
    """API.md's variants are still there; a conflict is still a WriteFailed
    and a corrupt record still a ReadFailed (what callers caught before)."""
    assert issubclass(RuntimeStoreError.Conflict, RuntimeStoreError.WriteFailed)
    assert issubclass(RuntimeStoreError.Corrupt, RuntimeStoreError.ReadFailed)
    for variant in ("WriteFailed", "ReadFailed", "NotFound", "Internal"):
        assert issubclass(getattr(RuntimeStoreError, variant), RuntimeStoreError)
    fenced = RuntimeStoreError.Fenced(RID, 7)
    assert (fenced.runtime_id, fenced.epoch) == (RID, 7)
    assert "errors" in str(fenced)
    assert "7" in str(fenced)


def test_only_an_unreachable_store_is_retryable() -> None:
    assert RuntimeStoreError.Unavailable("disk full").retryable
    for error in (
        RuntimeStoreError.WriteFailed("bad value"),
        RuntimeStoreError.Conflict("receipt conflict"),
        RuntimeStoreError.Corrupt("corrupt record"),
        RuntimeStoreError.Internal("closed"),
        RuntimeStoreError.Fenced(RID, 1),
        RuntimeDriverError.NotReady(RuntimeState.RETIRED),
        ValueError("not ours"),
    ):
        assert not is_retryable(error), error


def test_the_driver_keeps_the_store_error_it_wraps() -> None:
    """The driver's Internal keeps its text but also the store error itself
    (as its cause and as ``store_error``) and passes on ``retryable``."""

    async def body() -> None:
        store = FaultyStore(InMemoryRuntimeStore())
        driver = PersistentRuntimeDriver(RID, store, MemoryBlobStore())
        await driver.recover()
        store.arm(Fault.FAIL, "persist_input_state")
        with pytest.raises(RuntimeDriverError.Internal) as raised:
            await driver.accept_input(PromptInput.new("x"))
        error = raised.value
        assert str(error) == (
            "Internal error: Store unavailable: injected failure in persist_input_state"
        )
        assert isinstance(error.store_error, RuntimeStoreError.Unavailable)
        assert error.__cause__ is error.store_error
        assert error.retryable

    run(body)


def test_receipt_conflicts_are_typed_in_every_store(tmp_path: Path) -> None:
    async def body() -> None:
        for store in (InMemoryRuntimeStore(), SqliteRuntimeStore(tmp_path / "c.db")):
            async with store:
                first = receipt_for(RunId.new(), [rich_state(1).input_id])
                await store.atomic_apply(RID, None, first, [])
                other = receipt_for(first.run_id, [])
                with pytest.raises(
                    RuntimeStoreError.Conflict, match="receipt conflict"
                ):
                    await store.atomic_apply(
                        RID, SessionDelta(session_snapshot=b"x"), other, []
                    )

    run(body)


def test_a_closed_store_names_each_kind_of_error_once(tmp_path: Path) -> None:
    """Through the driver and the control plane, a closed store's error
    used to read "Internal error: Internal error: Internal error: ..."."""

    async def body() -> None:
        store = SqliteRuntimeStore(tmp_path / "closed.db")
        adapter = RuntimeSessionAdapter.persistent(store, MemoryBlobStore())
        sid = SessionId.new()
        await adapter.register_session(sid)
        await store.close()
        with pytest.raises(MeerkatError) as raised:
            await adapter.control_plane.retire(LogicalRuntimeId(str(sid)))
        text = str(raised.value)
        assert text.count("Internal error") == 1, text
        assert text.startswith("Internal error: retire persist failed: ")
        assert text.count("Store internal error: ") == 1
        assert text.endswith("closed.db is closed")
        await adapter.close()

    run(body)


class RefusingEndStore(FaultyStore):
    """Refuses every run end (a lifecycle commit) with ``error``."""

    def __init__(self, error: RuntimeStoreError) -> None:
        super().__init__(InMemoryRuntimeStore())
        self.error = error
        self.refusing = False
        self.refused = 0

    async def atomic_lifecycle_commit(
        self, runtime_id: object, runtime_state: RuntimeState, input_states: object
    ) -> None:
        if self.refusing:
            self.refused += 1
            raise self.error
        await super().atomic_lifecycle_commit(runtime_id, runtime_state, input_states)  # type: ignore[arg-type]


def test_a_run_end_the_store_refuses_for_good_is_not_retried() -> None:
    """The loop used to retry any Internal error for ever. A failure that
    would fail the same way again (here a corrupt record) is tried once; the
    loop ends and its waiter learns so; the input stays in the store."""

    async def body() -> None:
        store = RefusingEndStore(RuntimeStoreError.Corrupt("corrupt record in x"))
        adapter = RuntimeSessionAdapter.persistent(
            store, MemoryBlobStore(), retry_delay=0.001
        )
        sid = SessionId.new()
        await adapter.register_session(sid)
        p = prompt()
        _, handle = await adapter.accept_input_with_completion(sid, p)
        store.refusing = True
        await adapter.register_session_with_executor(sid, ToyExecutor())
        assert await outcome_of(handle) == RuntimeTerminated(
            reason="runtime loop exited"
        )
        assert store.refused == 1
        assert await store.load_input_state(LogicalRuntimeId(str(sid)), p.id())
        await adapter.close()

    run(body)
