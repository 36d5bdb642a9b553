"""``RuntimeControlPlane``: many runtimes addressed by id (docs/behaviour.md §10).

Rules: CP-1 .. CP-11 with decisions 6, 7 and 25, plus K-4's control-plane
rows. Each test drives an adapter's ``control_plane`` with toy executors; the
persistent variant (CP-10) uses SQLite and a file blob store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from meerkat_runtime import (
    FileBlobStore,
    InputLifecycleState,
    LogicalRuntimeId,
    MemoryBlobStore,
    RecoveryReport,
    RecycleReport,
    RetireReport,
    RunControlCommand,
    RunId,
    RuntimeControlPlaneError,
    RuntimeEventEnvelope,
    RuntimeSessionAdapter,
    RuntimeState,
    SessionId,
    SqliteRuntimeStore,
)
from meerkat_runtime.events import RuntimeStateChange
from meerkat_runtime.sessions.completion import (
    CompletedWithoutResult,
    RuntimeTerminated,
)

from .executors import Step, ToyExecutor
from .helpers import (
    GatedStore,
    derived_prompt,
    drained,
    event,
    held,
    outcome_of,
    progress_peer,
    prompt,
    state_of,
    turn_over,
)

Body = Callable[[RuntimeSessionAdapter, SessionId, LogicalRuntimeId], Awaitable[None]]


def run(body: Body) -> None:
    async def main() -> None:
        adapter = RuntimeSessionAdapter.ephemeral(retry_delay=0.001)
        sid = SessionId.new()
        try:
            await body(adapter, sid, LogicalRuntimeId(str(sid)))
        finally:
            await adapter.close()

    asyncio.run(main())


# ---------------------------------------------------------------- CP-1


@pytest.mark.parametrize("text", ["not-a-uuid", "new-session"])
def test_unknown_runtime_is_not_found(text: str) -> None:
    """CP-1: an id that is no registered session (or no UUID at all) gives
    NotFound(id) with the text "Runtime not found: {id}" from every method."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, _rid: LogicalRuntimeId
    ) -> None:
        await adapter.register_session(sid)  # another runtime exists
        rid = LogicalRuntimeId(str(SessionId.new()) if text == "new-session" else text)
        cp = adapter.control_plane
        envelope = RuntimeEventEnvelope.wrap(
            rid,
            RuntimeStateChange(
                from_state=RuntimeState.IDLE, to_state=RuntimeState.ATTACHED
            ),
        )
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: cp.ingest(rid, prompt()),
            lambda: cp.publish_event(envelope),
            lambda: cp.retire(rid),
            lambda: cp.recycle(rid),
            lambda: cp.reset(rid),
            lambda: cp.recover(rid),
            lambda: cp.runtime_state(rid),
            lambda: cp.destroy(rid),
        ]
        for call in calls:
            with pytest.raises(RuntimeControlPlaneError.NotFound) as caught:
                await call()
            assert caught.value.runtime_id == rid
            assert str(caught.value) == f"Runtime not found: {rid}"
        assert await adapter.runtime_state(sid) is RuntimeState.IDLE

    run(body)


# ---------------------------------------------------------------- CP-2, CP-3, CP-8


def test_ingest_accepts_and_wakes_the_loop() -> None:
    """CP-2: ingest is an accept without a handle; it wakes a live loop.
    CP-8: runtime_state reads the control phase."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, rid: LogicalRuntimeId
    ) -> None:
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        cp = adapter.control_plane
        assert await cp.runtime_state(rid) is RuntimeState.ATTACHED
        p = prompt()
        outcome = await cp.ingest(rid, p)
        assert outcome.is_accepted()
        await drained(adapter, sid)
        assert executor.applied_ids() == [p.id()]
        assert await cp.runtime_state(rid) is RuntimeState.ATTACHED

    run(body)


def test_ingest_errors_are_internal_and_rejections_are_values() -> None:
    """CP-2: a driver error is wrapped as Internal with the driver's text (a
    retired runtime: "Internal error: Runtime not ready: retired");
    Rejected and Deduplicated outcomes are returned, not raised."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, rid: LogicalRuntimeId
    ) -> None:
        await adapter.register_session(sid)
        cp = adapter.control_plane
        assert (await cp.ingest(rid, derived_prompt())).is_rejected()
        p = prompt(key="k")
        assert (await cp.ingest(rid, p)).is_accepted()
        assert (await cp.ingest(rid, prompt(key="k"))).is_deduplicated()
        report = await cp.retire(rid)
        assert report == RetireReport(inputs_abandoned=1, inputs_pending_drain=0)
        with pytest.raises(RuntimeControlPlaneError.Internal) as caught:
            await cp.ingest(rid, prompt())
        assert str(caught.value) == "Internal error: Runtime not ready: retired"

    run(body)


def test_publish_event_is_routed_and_changes_nothing() -> None:
    """CP-3: routed by the envelope's runtime id; drivers take no action."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, rid: LogicalRuntimeId
    ) -> None:
        await adapter.register_session(sid)
        await adapter.accept_input(sid, prompt())
        envelope = RuntimeEventEnvelope.wrap(
            rid,
            RuntimeStateChange(
                from_state=RuntimeState.IDLE, to_state=RuntimeState.STOPPED
            ),
        )
        await adapter.control_plane.publish_event(envelope)
        assert await adapter.runtime_state(sid) is RuntimeState.IDLE
        assert len(await adapter.list_active_inputs(sid)) == 1

    run(body)


# ---------------------------------------------------------------- CP-4 retire


def test_retire_with_loop_drains() -> None:
    """CP-4 (= X-11): with a live loop the retired runtime drains and stays
    Retired; nothing abandoned."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, rid: LogicalRuntimeId
    ) -> None:
        executor = ToyExecutor([Step.HOLD])
        await adapter.register_session_with_executor(sid, executor)
        a, b = prompt("a"), prompt("b")
        _, ha = await adapter.accept_input_with_completion(sid, a)
        await held(executor.held)
        _, hb = await adapter.accept_input_with_completion(sid, b)
        report = await adapter.control_plane.retire(rid)
        assert report == RetireReport(inputs_abandoned=0, inputs_pending_drain=2)
        executor.release.set()
        assert await outcome_of(ha) == CompletedWithoutResult()
        assert await outcome_of(hb) == CompletedWithoutResult()
        assert await adapter.control_plane.runtime_state(rid) is RuntimeState.RETIRED

    run(body)


def test_retire_twice_is_internal() -> None:
    """CP-4: driver errors (retiring a retired runtime) become Internal."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, rid: LogicalRuntimeId
    ) -> None:
        await adapter.register_session(sid)
        await adapter.control_plane.retire(rid)
        with pytest.raises(RuntimeControlPlaneError.Internal, match="retired"):
            await adapter.control_plane.retire(rid)

    run(body)


# ---------------------------------------------------------------- CP-6 reset


def test_reset_refused_while_running_changes_nothing() -> None:
    """CP-6 / decision 6: reset while Running is InvalidState(running), with
    the text "Invalid state for operation: running"; no input is abandoned,
    no waiter resolved, and the runtime finishes its work normally."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, rid: LogicalRuntimeId
    ) -> None:
        executor = ToyExecutor([Step.HOLD])
        await adapter.register_session_with_executor(sid, executor)
        a, b = prompt("a"), prompt("b")
        _, ha = await adapter.accept_input_with_completion(sid, a)
        await held(executor.held)
        _, hb = await adapter.accept_input_with_completion(sid, b)
        with pytest.raises(RuntimeControlPlaneError.InvalidState) as caught:
            await adapter.control_plane.reset(rid)
        assert caught.value.state is RuntimeState.RUNNING
        assert str(caught.value) == "Invalid state for operation: running"
        assert await adapter.runtime_state(sid) is RuntimeState.RUNNING
        assert await state_of(adapter, sid, a) is InputLifecycleState.STAGED
        assert await state_of(adapter, sid, b) is InputLifecycleState.QUEUED
        assert hb is not None
        assert not hb.done()
        executor.release.set()
        assert await outcome_of(ha) == CompletedWithoutResult()
        assert await outcome_of(hb) == CompletedWithoutResult()

    run(body)


def test_reset_abandons_queued_progress_peer_before_it_runs() -> None:
    """CP-6 (upstream's ignored contract test): a queued progress peer is
    abandoned (reset), never reaches the executor; the runtime is Idle with
    no active inputs (decision 25) and the waiter is terminated."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, rid: LogicalRuntimeId
    ) -> None:
        executor = ToyExecutor(block_controls=True)
        await adapter.register_session_with_executor(sid, executor)
        await adapter.stop_runtime_executor(sid, RunControlCommand.CancelCurrentRun())
        await held(executor.control_entered)  # the loop is busy in control()
        peer = progress_peer()
        _, handle = await adapter.accept_input_with_completion(sid, peer)
        report = await adapter.control_plane.reset(rid)
        assert report.inputs_abandoned == 1
        assert await outcome_of(handle) == RuntimeTerminated(reason="runtime reset")
        executor.control_release.set()
        await held(turn_over(adapter, sid))  # the loop had its chance to run it
        assert executor.calls == []
        assert await adapter.runtime_state(sid) is RuntimeState.IDLE
        assert await adapter.list_active_inputs(sid) == []

    run(body)


# ---------------------------------------------------------------- CP-5 recycle


def test_recycle_keeps_queued_prompts_in_order_and_idle() -> None:
    """CP-5 / decision 7: two queued prompts survive recycle as Queued in the
    same order, the runtime is Idle; a waiter of a preserved input completes
    once an executor is attached later."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, rid: LogicalRuntimeId
    ) -> None:
        await adapter.register_session(sid)
        a, b = prompt("a"), prompt("b")
        _, ha = await adapter.accept_input_with_completion(sid, a)
        await adapter.accept_input(sid, b)
        report = await adapter.control_plane.recycle(rid)
        assert report == RecycleReport(inputs_transferred=2)
        assert await adapter.runtime_state(sid) is RuntimeState.IDLE
        assert await adapter.list_active_inputs(sid) == [a.id(), b.id()]
        assert await state_of(adapter, sid, a) is InputLifecycleState.QUEUED
        assert await state_of(adapter, sid, b) is InputLifecycleState.QUEUED
        assert ha is not None
        assert not ha.done()
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        assert await outcome_of(ha) == CompletedWithoutResult()
        await drained(adapter, sid)
        assert executor.batches() == [[a.id()], [b.id()]]

    run(body)


def test_recycle_of_attached_runtime_reattaches_and_drains_once() -> None:
    """CP-5: an Attached runtime with a queued progress peer comes back
    Attached after recycle and the peer is drained exactly once."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, rid: LogicalRuntimeId
    ) -> None:
        executor = ToyExecutor(block_controls=True)
        await adapter.register_session_with_executor(sid, executor)
        await adapter.stop_runtime_executor(sid, RunControlCommand.CancelCurrentRun())
        await held(executor.control_entered)
        peer = progress_peer()
        _, handle = await adapter.accept_input_with_completion(sid, peer)
        assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED
        report = await adapter.control_plane.recycle(rid)
        assert report == RecycleReport(inputs_transferred=1)
        assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED
        executor.control_release.set()
        assert await outcome_of(handle) == CompletedWithoutResult()
        assert executor.applied_ids() == [peer.id()]
        assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED

    run(body)


def test_recycle_of_retired_runtime_is_idle_and_accepting() -> None:
    """Decision 7 / CP-5: a recycled retired runtime comes back accepting with
    its pending work preserved (Idle, then Attached again: a loop is live)."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, rid: LogicalRuntimeId
    ) -> None:
        executor = ToyExecutor(block_controls=True)
        await adapter.register_session_with_executor(sid, executor)
        await adapter.stop_runtime_executor(sid, RunControlCommand.CancelCurrentRun())
        await held(executor.control_entered)
        a = prompt("a")
        _, ha = await adapter.accept_input_with_completion(sid, a)
        await adapter.control_plane.retire(rid)
        report = await adapter.control_plane.recycle(rid)
        assert report == RecycleReport(inputs_transferred=1)
        assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED
        b = prompt("b")
        assert (await adapter.control_plane.ingest(rid, b)).is_accepted()
        executor.control_release.set()
        assert await outcome_of(ha) == CompletedWithoutResult()
        await drained(adapter, sid)
        assert executor.applied_ids() == [a.id(), b.id()]

    run(body)


def test_recycle_refused_while_running() -> None:
    """CP-5: Running -> InvalidState(running); nothing changes."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, rid: LogicalRuntimeId
    ) -> None:
        executor = ToyExecutor([Step.HOLD])
        await adapter.register_session_with_executor(sid, executor)
        _, handle = await adapter.accept_input_with_completion(sid, prompt())
        await held(executor.held)
        with pytest.raises(RuntimeControlPlaneError.InvalidState) as caught:
            await adapter.control_plane.recycle(rid)
        assert caught.value.state is RuntimeState.RUNNING
        assert await adapter.runtime_state(sid) is RuntimeState.RUNNING
        executor.release.set()
        assert await outcome_of(handle) == CompletedWithoutResult()

    run(body)


# ---------------------------------------------------------------- CP-7 recover


def test_recover_keeps_queued_inputs_once_and_wakes() -> None:
    """CP-7: recover on the existing driver: queued inputs are recovered but
    not duplicated in the lanes; a live loop is woken and runs each once."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, rid: LogicalRuntimeId
    ) -> None:
        await adapter.register_session(sid)
        a, e1, e2 = prompt("a"), event("1"), event("2")
        for inp in (a, e1, e2):
            await adapter.accept_input(sid, inp)
        report = await adapter.control_plane.recover(rid)
        assert report == RecoveryReport(
            inputs_recovered=3, inputs_abandoned=0, inputs_requeued=0
        )
        assert await adapter.list_active_inputs(sid) == [a.id(), e1.id(), e2.id()]
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        await drained(adapter, sid)
        assert executor.batches() == [[a.id()], [e1.id(), e2.id()]]
        assert await adapter.control_plane.recover(rid) == RecoveryReport()

    run(body)


# ---------------------------------------------------------------- CP-9 destroy


def test_destroy_with_loop_keeps_session_registered() -> None:
    """CP-9: destroy abandons everything, terminates waiters ("runtime
    destroyed"); the session stays registered and its loop alive but unable
    to process; a second destroy is Internal."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, rid: LogicalRuntimeId
    ) -> None:
        executor = ToyExecutor(block_controls=True)
        await adapter.register_session_with_executor(sid, executor)
        await adapter.stop_runtime_executor(sid, RunControlCommand.CancelCurrentRun())
        await held(executor.control_entered)
        p = prompt()
        _, handle = await adapter.accept_input_with_completion(sid, p)
        report = await adapter.control_plane.destroy(rid)
        assert report.inputs_abandoned == 1
        assert await outcome_of(handle) == RuntimeTerminated(reason="runtime destroyed")
        executor.control_release.set()
        await held(turn_over(adapter, sid))
        assert executor.calls == []
        assert await adapter.control_plane.runtime_state(rid) is RuntimeState.DESTROYED
        assert adapter.sessions[sid].has_live_loop()
        with pytest.raises(RuntimeControlPlaneError.Internal):
            await adapter.control_plane.destroy(rid)
        with pytest.raises(RuntimeControlPlaneError.Internal, match="destroyed"):
            await adapter.control_plane.ingest(rid, prompt())

    run(body)


# ---------------------------------------------------------------- CP-10 receipts


def test_load_boundary_receipt_from_the_store(tmp_path: Path) -> None:
    """CP-10: a persistent adapter returns the receipt the executor answered,
    straight from the store (no registration check; unknown -> None)."""

    async def main() -> None:
        store = SqliteRuntimeStore(tmp_path / "runtime.db")
        adapter = RuntimeSessionAdapter.persistent(
            store, FileBlobStore(tmp_path / "blobs"), retry_delay=0.001
        )
        sid = SessionId.new()
        rid = LogicalRuntimeId(str(sid))
        try:
            executor = ToyExecutor()
            await adapter.register_session_with_executor(sid, executor)
            p = prompt()
            _, handle = await adapter.accept_input_with_completion(sid, p)
            await outcome_of(handle)
            [call] = executor.calls
            receipt = await adapter.control_plane.load_boundary_receipt(
                rid, call.run_id, 0
            )
            assert receipt is not None
            assert receipt.run_id == call.run_id
            assert receipt.contributing_input_ids == [p.id()]
            assert receipt.sequence == 0
            cp = adapter.control_plane
            assert await cp.load_boundary_receipt(rid, call.run_id, 1) is None
            assert await cp.load_boundary_receipt(rid, RunId.new(), 0) is None
            stranger = LogicalRuntimeId("not-registered")
            assert await cp.load_boundary_receipt(stranger, call.run_id, 0) is None
        finally:
            await adapter.close()
            await store.close()

    asyncio.run(main())


def test_load_boundary_receipt_ephemeral_is_none() -> None:
    """CP-10: an ephemeral adapter has no store: always None."""

    async def body(
        adapter: RuntimeSessionAdapter, sid: SessionId, rid: LogicalRuntimeId
    ) -> None:
        executor = ToyExecutor()
        await adapter.register_session_with_executor(sid, executor)
        _, handle = await adapter.accept_input_with_completion(sid, prompt())
        await outcome_of(handle)
        [call] = executor.calls
        assert (
            await adapter.control_plane.load_boundary_receipt(rid, call.run_id, 0)
            is None
        )

    run(body)


# ---------------------------------------------------------------- scale


def test_hundreds_of_sessions_in_one_process() -> None:
    """W-1 / CP-1: 300 sessions, each with its own loop and executor, a few
    inputs each through the control plane and the adapter: all complete,
    each runtime only ever sees its own inputs."""

    async def main() -> None:
        adapter = RuntimeSessionAdapter.ephemeral(retry_delay=0.001)
        sessions = [SessionId.new() for _ in range(300)]
        executors = {sid: ToyExecutor() for sid in sessions}
        expected: dict[SessionId, set[object]] = {}
        try:
            for sid in sessions:
                await adapter.register_session_with_executor(sid, executors[sid])
            handles = []
            for sid in sessions:
                rid = LogicalRuntimeId(str(sid))
                inputs = [prompt("a"), event("b"), prompt("c")]
                expected[sid] = {i.id() for i in inputs}
                await adapter.control_plane.ingest(rid, inputs[0])
                for inp in inputs[1:]:
                    _, h = await adapter.accept_input_with_completion(sid, inp)
                    handles.append(h)
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(h.wait() for h in handles if h is not None)), 5.0
            )
            assert len(outcomes) == 600
            assert all(o == CompletedWithoutResult() for o in outcomes)
            for sid in sessions:
                await drained(adapter, sid)
                assert set(executors[sid].applied_ids()) == expected[sid]
                assert len(executors[sid].applied_ids()) == 3
                assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED
        finally:
            await adapter.close()

    asyncio.run(main())


# ---------------------------------------------------------------- CP-6 under contention


def test_reset_racing_a_run_start_is_invalid_state() -> None:
    """CP-6: reset of a Running runtime is InvalidState(running), also when the
    run starts while the reset waits for the session (a slow store write holds
    it, the loop is queued for it first)."""

    async def main() -> None:
        store = GatedStore()
        adapter = RuntimeSessionAdapter.persistent(store, MemoryBlobStore())
        sid = SessionId.new()
        rid = LogicalRuntimeId(str(sid))
        executor = ToyExecutor([Step.HOLD])
        try:
            await adapter.register_session_with_executor(sid, executor)
            store.gate = first_gate = asyncio.Event()
            first = asyncio.create_task(adapter.accept_input(sid, prompt("p0")))
            await held(store.entered)  # p0's accept holds the session lock
            store.entered.clear()
            second = asyncio.create_task(adapter.accept_input(sid, prompt("p1")))
            await asyncio.sleep(0)  # p1's accept queues for the lock
            store.gate = second_gate = asyncio.Event()
            first_gate.set()  # p0 accepted, the loop woken; p1 takes the lock
            await first
            await held(store.entered)
            await asyncio.sleep(0.01)  # the loop queues for the lock behind p1
            assert await adapter.runtime_state(sid) is RuntimeState.ATTACHED
            reset = asyncio.create_task(adapter.control_plane.reset(rid))
            await asyncio.sleep(0)  # reset passed its check, queues for the lock
            second_gate.set()  # p1 done; the loop starts p0's run; then reset
            with pytest.raises(RuntimeControlPlaneError.InvalidState):
                await asyncio.wait_for(reset, 1.0)
            assert (await asyncio.wait_for(second, 1.0)).is_accepted()
        finally:
            executor.release.set()
            await adapter.close()

    asyncio.run(main())
