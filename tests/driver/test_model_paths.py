"""Model-based tests of the persistent driver: paths planned from the spec
(``model_paths.py``) that together fire every input-lifecycle and
runtime-control transition a driver operation can fire, run over both
stores. After every operation the input's phase and attempt count and the
runtime's phase equal the spec's, the lanes hold exactly the queued inputs
in arrival order, and the store holds what memory holds (staging excepted:
it is never written, D-2).

A transition the plan does not fire is listed with the reason, in
``UNREACHABLE`` (no driver operation can fire it) or ``NOT_PLANNED`` (an
operation can, but the plan does not model it; another test pins it). The
test pins those lists to the transitions the plan leaves uncovered, so a
transition added to the spec fails here until it is mapped or listed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from meerkat_runtime import codec
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.driver.core import RuntimeControlCommand
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.generated.policy_table import QueueMode
from meerkat_runtime.generated.spec_types import InputAbandonReason
from meerkat_runtime.ids import InputId, LogicalRuntimeId, RunId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import Input
from meerkat_runtime.ledger import Lane
from meerkat_runtime.runs import RunCancelled, RunCompleted
from meerkat_runtime.store import (
    InMemoryRuntimeStore,
    RuntimeStore,
    SqliteRuntimeStore,
)
from tests.driver.helpers import (
    RoutingPolicyTable,
    boundary,
    failed,
    operation,
    prompt,
)
from tests.driver.model_paths import Move, Plan, load_machines, plan

RID = LogicalRuntimeId("rt-model")

UNREACHABLE = {
    "recover_requeue": (
        "needs an applied input whose boundary receipt is missing at recovery; "
        "the driver writes the receipt and the applied states in one commit "
        "(D-6), so only a store that lost half a commit holds that"
    ),
    "recover_requeue_exhausted": "as recover_requeue, on the last attempt",
    "stamp_receipt": (
        "stores stamp receipt metadata directly (stamp_receipt_metadata, "
        "L-9), not through the authority's transition"
    ),
    "rc:initialize": "fired when a driver is built, before any operation",
    "rc:recover_requested": (
        "no driver operation sends RecoverRequested: recovery restores the "
        "stored phase through the spec's restore inputs (D-11 step 9)"
    ),
    "rc:recover_requested_from_running": "as rc:recover_requested",
    "rc:recovery_succeeded": "only leaves the phase rc:recover_requested enters",
    "rc:begin_run_from_recovering": (
        "recovering only lasts inside one recycle call: no run can begin then"
    ),
    "rc:resume_requested": (
        "resume is a no-op outside recovering, which no operation leaves the runtime in"
    ),
}
NOT_PLANNED = {
    "rc:admission_queue_quiet": (
        "a queue-lane input accepted while a run is open; the plan's runs "
        "stage its only input (tests/driver/test_control.py pins the signals)"
    ),
}

PLAN: Plan = plan(load_machines())
StoreFactory = Callable[[], RuntimeStore]


def test_the_plan_fires_every_transition_but_the_listed_ones() -> None:
    assert PLAN.uncovered == set(UNREACHABLE) | set(NOT_PLANNED)
    assert len(PLAN.covered) + len(UNREACHABLE) + len(NOT_PLANNED) == len(
        PLAN.transitions
    )


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "memory":
        return InMemoryRuntimeStore
    return lambda: SqliteRuntimeStore(tmp_path / "runtime.db")


def _name(path: tuple[Move, ...]) -> str:
    return "-".join(move.op for move in path)


@pytest.mark.parametrize("path", PLAN.paths, ids=_name)
def test_driver_follows_the_spec(
    path: tuple[Move, ...], make_store: StoreFactory
) -> None:
    async def main() -> None:
        store = make_store()
        try:
            await _Walk(store, path).run()
        finally:
            await store.close()

    asyncio.run(main())


def test_a_walk_notices_a_driver_that_leaves_the_spec(tmp_path: Path) -> None:
    """The checks bite: the consuming path with the model's last phase
    changed to queued fails at that step."""
    path = next(p for p in PLAN.paths if "consume" in p[-1].transitions)
    last = path[-1]
    wrong_config = ("queued", *last.target.config[1:])
    wrong = Move(last.op, last.transitions, replace(last.target, config=wrong_config))

    async def main() -> None:
        store = SqliteRuntimeStore(tmp_path / "runtime.db")
        try:
            await _Walk(store, (*path[:-1], wrong)).run()
        finally:
            await store.close()

    with pytest.raises(AssertionError, match=f"step {len(path) - 1} "):
        asyncio.run(main())


_FIRST: dict[str, Callable[[], Input]] = {
    "accept_queued": lambda: prompt(scope="s"),
    "accept_steer": lambda: prompt(scope="s", steer=True),
    "accept_consumed": operation,
}


class _Walk:
    """Runs one path against a driver and checks it after every step."""

    def __init__(self, store: RuntimeStore, path: tuple[Move, ...]) -> None:
        self.store = store
        self.path = path
        ops = {move.op for move in path}
        mode = QueueMode.COALESCE if "coalesce" in ops else QueueMode.SUPERSEDE
        self.table = RoutingPolicyTable({"prompt": mode})
        self.driver = self._new_driver()
        self.arrivals: list[InputId] = []  # every input accepted, in order
        self.target: InputId | None = None
        self.run_id: RunId | None = None

    def _new_driver(self) -> PersistentRuntimeDriver:
        return PersistentRuntimeDriver(
            RID, self.store, MemoryBlobStore(), policy_table=self.table
        )

    async def run(self) -> None:
        for index, move in enumerate(self.path):
            where = f"step {index} ({_name(self.path[: index + 1])})"
            await self._perform(move)
            self._check_ledger(move, where)
            self._check_lanes(where)
            await self._check_store(move, where)

    # ------------------------------------------------------------ operations

    async def _perform(self, move: Move) -> None:
        driver, op = self.driver, move.op
        if op.startswith("accept"):
            self.target = await self._accept(_FIRST[op]())
        elif op in ("supersede", "coalesce"):
            await self._accept(prompt("newer", scope="s"))
        elif op == "stage":
            self.run_id = RunId.new()
            driver.start_run(self.run_id)
            driver.stage_batch([self._target()], self.run_id)
        elif op == "boundary":
            await driver.on_run_event(boundary(self._run(), [self._target()]))
        elif op == "run_completed":
            applied = "consume" in move.transitions
            consumed = [self._target()] if applied else []
            await driver.on_run_event(
                RunCompleted(run_id=self._run(), consumed_input_ids=consumed)
            )
        elif op == "run_failed":
            await driver.on_run_event(failed(self._run()))
        elif op == "run_cancelled":
            await driver.on_run_event(RunCancelled(run_id=self._run()))
        else:
            await self._control(op)

    async def _control(self, op: str) -> None:
        driver = self.driver
        if op == "restart":
            self.driver = self._new_driver()
            await self.driver.recover()
        elif op == "reset":
            await driver.reset()
        elif op == "abandon_pending":
            await driver.abandon_pending_inputs(InputAbandonReason.Cancelled())
        elif op == "destroy":
            await driver.destroy()
        elif op == "retire":
            await driver.retire()
        elif op == "attach":
            driver.attach()
        elif op == "detach":
            driver.detach()
        elif op == "recycle":
            await driver.recycle_preserving_work()
        else:
            assert op == "stop", op
            await driver.on_runtime_control(RuntimeControlCommand.STOP)

    async def _accept(self, inp: Input) -> InputId:
        assert (await self.driver.accept_input(inp)).is_accepted()
        self.arrivals.append(inp.id())
        return inp.id()

    def _target(self) -> InputId:
        assert self.target is not None
        return self.target

    def _run(self) -> RunId:
        assert self.run_id is not None
        return self.run_id

    # ------------------------------------------------------------ checks

    def _state(self, input_id: InputId) -> InputState:
        state = self.driver.input_state(input_id)
        assert state is not None, f"{input_id} is missing from the ledger"
        return state

    def _check_ledger(self, move: Move, where: str) -> None:
        state = self._state(self._target())
        phase, *fields = move.target.config
        names = [f.name for f in PLAN.machines.lifecycle.fields]
        expected = dict(zip(names, fields, strict=True))
        assert state.current_state().value == phase, where
        assert state.attempt_count() == expected["attempt_count"], where
        assert state.is_consistent(), where
        assert self.driver.runtime_state().value == move.target.runtime_phase, where

    def _check_lanes(self, where: str) -> None:
        queued = [
            i for i in self.arrivals if self._state(i).current_state().value == "queued"
        ]
        lanes = self.driver.queued_input_ids(Lane.QUEUE)
        lanes += self.driver.queued_input_ids(Lane.STEER)
        assert lanes == queued, where

    async def _check_store(self, move: Move, where: str) -> None:
        stored = {s.input_id: s for s in await self.store.load_input_states(RID)}
        assert set(stored) == set(self.arrivals), where
        for input_id in self.arrivals:
            memory = self._state(input_id)
            if move.op == "stage" and input_id == self.target:
                # D-2: staging is never written; the store keeps it queued.
                assert stored[input_id].current_state().value == "queued", where
                continue
            assert _record(stored[input_id]) == _record(memory), where


def _record(state: InputState) -> bytes:
    return codec.encode(state.to_record())
