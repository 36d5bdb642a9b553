"""A plain reference model of one persistent runtime, for the crash fuzzer.

It knows what each input's lifecycle phase must be (stepped by the generated
authorities, never by hand), what the store must hold, which lanes hold what,
and what a restart must bring back. The fuzzer compares the real driver and
store with it after every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated import runtime_control as rc
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.generated.spec_types import InputAbandonReason
from meerkat_runtime.ids import IdempotencyKey, InputId, RunId
from meerkat_runtime.ledger import Lane

S = il.InputLifecycleState


@dataclass(slots=True)
class ModelInput:
    input_id: InputId
    durable: bool
    lane: Lane
    key: IdempotencyKey | None
    order: int  # acceptance order: both stores load in this order
    auth: il.InputLifecycleAuthority = field(default_factory=il.InputLifecycleAuthority)
    persisted: il.InputLifecycleSnapshot | None = None  # what the store must hold
    acked: bool = True
    recoveries: int = 0  # decision 18: recoveries that loaded it unfinished

    @property
    def phase(self) -> S:
        return self.auth.phase()

    def step(self, inp: il.InputLifecycleInput) -> None:
        self.auth.apply(inp)

    def persist(self) -> None:
        if self.durable:
            self.persisted = self.auth.snapshot()


@dataclass(slots=True)
class Model:
    control: rc.RuntimeControlAuthority = field(
        default_factory=rc.RuntimeControlAuthority
    )
    inputs: dict[InputId, ModelInput] = field(default_factory=dict)
    keys: dict[IdempotencyKey, InputId] = field(default_factory=dict)
    lanes: dict[Lane, list[InputId]] = field(
        default_factory=lambda: {Lane.QUEUE: [], Lane.STEER: []}
    )
    batch: list[InputId] = field(default_factory=list)
    # Each batch input as it was before staging (PD-38: a withdrawal restores it).
    before: dict[InputId, il.InputLifecycleSnapshot] = field(default_factory=dict)
    receipts: dict[RunId, list[InputId]] = field(default_factory=dict)
    persisted_phase: RuntimeState | None = None
    counter: int = 0

    def __post_init__(self) -> None:
        self.control.apply(rc.Initialize())

    @property
    def phase(self) -> RuntimeState:
        return self.control.phase()

    # ---------------------------------------------------------------- accept

    def existing(self, input_id: InputId, key: IdempotencyKey | None) -> InputId | None:
        if key is not None and key in self.keys:
            return self.keys[key]
        return input_id if input_id in self.inputs else None

    def accept(self, item: ModelInput, consumed_on_accept: bool, front: bool) -> None:
        self.counter += 1
        item.order = self.counter
        self.inputs[item.input_id] = item
        if item.key is not None:
            self.keys[item.key] = item.input_id
        if consumed_on_accept:
            item.step(il.ConsumeOnAccept())
        else:
            item.step(il.QueueAccepted())
            lane = self.lanes[item.lane]
            lane.insert(0, item.input_id) if front else lane.append(item.input_id)
        item.persist()

    # ---------------------------------------------------------------- runs

    def active_lane(self) -> Lane:
        return Lane.STEER if self.lanes[Lane.STEER] else Lane.QUEUE

    def begin(self, run_id: RunId, count: int) -> list[InputId]:
        self.control.apply(rc.BeginRun(run_id))
        lane = self.lanes[self.active_lane()]
        self.batch, lane[:] = lane[:count], lane[count:]
        self.before = {i: self.inputs[i].auth.snapshot() for i in self.batch}
        for input_id in self.batch:
            self.inputs[input_id].step(
                il.StageForRun(run_id)
            )  # staging is not persisted
        return list(self.batch)

    def boundary(self, run_id: RunId) -> None:
        for input_id in self.batch:
            item = self.inputs[input_id]
            item.step(il.MarkApplied(run_id))
            item.step(il.MarkAppliedPendingConsumption(0))
            item.persist()
        self.receipts[run_id] = list(self.batch)

    def end_run(self, run_id: RunId, how: str) -> None:
        if how == "completed":
            for input_id in self.batch:
                item = self.inputs[input_id]
                if item.phase is S.APPLIED_PENDING_CONSUMPTION:
                    item.step(il.Consume())
                    item.persist()
        self._roll_back_batch()
        end = {
            "completed": rc.RunCompleted,
            "failed": rc.RunFailed,
            "cancelled": rc.RunCancelled,
        }[how]
        self.control.apply(end(run_id))
        self._persist_phase()

    def withdraw(self, run_id: RunId) -> None:
        """PD-38: the staged inputs are as before staging, at their lane's
        front; the run ends as cancelled; the withdrawal is a lifecycle
        commit (it writes them, and the phase)."""
        back: dict[Lane, list[InputId]] = {Lane.QUEUE: [], Lane.STEER: []}
        for input_id in self.batch:
            item = self.inputs[input_id]
            if item.phase is S.STAGED:
                item.auth = il.InputLifecycleAuthority.restore(self.before[input_id])
                item.persist()
                back[item.lane].append(input_id)
        for lane, ids in back.items():
            self.lanes[lane][:0] = ids
        self.batch = []
        self.control.apply(rc.RunCancelled(run_id))
        self._persist_phase()

    def _roll_back_batch(self) -> None:
        back: dict[Lane, list[InputId]] = {Lane.QUEUE: [], Lane.STEER: []}
        for input_id in self.batch:
            item = self.inputs[input_id]
            if item.phase is S.STAGED:
                item.step(il.RollbackStaged())
                item.persist()
                if item.auth.phase() is S.QUEUED:  # not abandoned (attempts left)
                    back[item.lane].append(input_id)
        for lane, ids in back.items():
            self.lanes[lane][:0] = ids
        self.batch = []

    # ---------------------------------------------------------------- control

    def control_op(self, name: str) -> None:
        step = {
            "retire": rc.RetireRequested(),
            "reset": rc.ResetRequested(),
            "destroy": rc.DestroyRequested(),
            "stop": rc.StopRequested(),
        }[name]
        self.control.apply(step)
        if name != "retire":
            reason = (
                InputAbandonReason.Reset()
                if name == "reset"
                else InputAbandonReason.Destroyed()
            )
            for item in self.inputs.values():
                if not item.phase.is_terminal():
                    item.step(il.Abandon(reason))
                    item.persist()
            for lane in self.lanes.values():
                lane.clear()
            self.batch = []
        if name == "destroy":
            self.keys.clear()
        # A lifecycle commit also writes what staging changed since the last
        # one (upstream writes every ledger state, D-9): a retire during a
        # run stores its batch as staged.
        for input_id in self.batch:
            self.inputs[input_id].persist()
        self._persist_phase()

    def recycle(self) -> None:
        self.control.apply(rc.RecycleRequested())
        self.control.apply(rc.RecycleSucceeded())
        self._persist_phase()

    def admitted_from_inbox(self) -> None:
        """An inbox admission commits the phase with what it admitted."""
        self._persist_phase()

    def _persist_phase(self) -> None:
        phase = self.phase
        if (
            phase is RuntimeState.RUNNING
            and self.control.pre_run_state() is RuntimeState.RETIRED
        ):
            phase = RuntimeState.RETIRED  # a draining runtime stays retired on disk
        self.persisted_phase = (
            RuntimeState.IDLE if phase is RuntimeState.ATTACHED else phase
        )

    # ---------------------------------------------------------------- restart

    def restart(self) -> None:
        """What recovery must rebuild from the store alone."""
        survivors = {i: m for i, m in self.inputs.items() if m.persisted is not None}
        for item in survivors.values():
            assert item.persisted is not None
            item.auth = il.InputLifecycleAuthority.restore(item.persisted)
            if not item.phase.is_terminal():
                item.recoveries += 1
            if item.phase is S.APPLIED_PENDING_CONSUMPTION:  # its receipt was committed
                item.step(il.Consume())
                item.persist()
            elif item.phase is S.STAGED:  # D-11 step 2: back to the queue
                item.step(il.RollbackStaged())
                item.persist()
        self.inputs = survivors
        self.keys = {k: i for k, i in self.keys.items() if i in survivors}
        self.lanes = {Lane.QUEUE: [], Lane.STEER: []}
        for item in sorted(survivors.values(), key=lambda m: m.order):
            if item.phase is S.QUEUED:
                self.lanes[item.lane].append(item.input_id)
        self.batch = []
        self.control = rc.RuntimeControlAuthority()
        self.control.apply(rc.Initialize())
        stored = self.persisted_phase
        for target, step in (
            (RuntimeState.RETIRED, rc.RetireRequested()),
            (RuntimeState.STOPPED, rc.StopRequested()),
            (RuntimeState.DESTROYED, rc.DestroyRequested()),
        ):
            if stored is target:
                self.control.apply(step)
        self._persist_phase()  # recovery ends with a lifecycle commit
