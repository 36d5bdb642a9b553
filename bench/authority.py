"""Benchmark: the generated authorities against an equivalent ``transitions`` machine.

Theory of operation: both sides get the same states and transitions (the
``transitions`` tables below are written by hand and checked against the spec
at start-up), the same guards as plain Python lambdas and the same field
updates, and are driven by the same inputs in the same process. Each figure is
the best of several repeats, which filters out scheduler noise. The generated
side also builds its effects and ``Transition`` results; the ``transitions``
side builds none, so the comparison favours ``transitions``.

Run with ``.venv/bin/python bench/authority.py`` (``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from goals import goal
from transitions import Machine

from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated import runtime_control as rc
from meerkat_runtime.generated.spec_types import (
    HandlingMode,
    InputAbandonReason,
    InputTerminalOutcome,
)
from meerkat_runtime.ids import RunId

GOAL = 5.0  # generated / transitions, transitions per second
ROOT = Path(__file__).resolve().parent.parent

# Callbacks get transitions' EventData (send_event=True): .model and .kwargs.
Guard = Callable[[Any], bool]
Update = Callable[[Any], None]
Row = tuple[str, str | list[str], str, list[Guard], list[Update]]

# ------------------------------------------------------------ runtime_control


def _begin_run(e: Any) -> None:
    m = e.model
    m.current_run_id, m.pre_run_state = e.kwargs["run_id"], m.state


def _end_run(e: Any) -> None:
    e.model.current_run_id = e.model.pre_run_state = None


def _remember_phase(e: Any) -> None:
    e.model.pre_run_state = e.model.state


_clear_all = _end_run


_no_run: Guard = lambda e: e.model.current_run_id is None  # noqa: E731
_matches: Guard = lambda e: e.model.current_run_id == e.kwargs["run_id"]  # noqa: E731
_queue: Guard = lambda e: e.kwargs["handling_mode"] is HandlingMode.QUEUE  # noqa: E731
_steering: Guard = lambda e: e.kwargs["handling_mode"] is HandlingMode.STEER  # noqa: E731
_wakes: Guard = lambda e: e.kwargs["wake_if_idle"]  # noqa: E731
_quiet: Guard = lambda e: not e.kwargs["wake_if_idle"]  # noqa: E731
_RUN_END: list[tuple[str, Guard]] = [
    ("idle", lambda e: e.model.pre_run_state not in ("attached", "retired")),
    ("attached", lambda e: e.model.pre_run_state == "attached"),
    ("retired", lambda e: e.model.pre_run_state == "retired"),
]
_LIVE = ["idle", "attached", "running"]


def _run_end_rows() -> list[Row]:
    """Run terminals return to the pre-run phase; while retired they stay."""
    rows: list[Row] = []
    for event in ("RunCompleted", "RunFailed", "RunCancelled"):
        rows += [
            (event, "running", to, [_matches, pre], [_end_run]) for to, pre in _RUN_END
        ]
        rows.append((event, "retired", "=", [_matches], [_end_run]))
    return rows


_NON_TERMINAL = ["initializing", "idle", "attached", "running", "recovering", "retired"]

RC_TABLE: list[Row] = [
    ("Initialize", "initializing", "idle", [], []),
    ("AttachExecutor", "idle", "attached", [], []),
    ("DetachExecutor", "attached", "idle", [], []),
    (
        "BeginRun",
        ["idle", "attached", "retired", "recovering"],
        "running",
        [_no_run],
        [_begin_run],
    ),
    *_run_end_rows(),
    ("RecoverRequested", ["idle", "attached"], "recovering", [], [_remember_phase]),
    ("RecoverRequested", "running", "recovering", [], [_end_run]),
    ("RecoverySucceeded", "recovering", "idle", [], [_clear_all]),
    ("ResumeRequested", "recovering", "idle", [], []),
    (
        "RecycleRequested",
        ["idle", "attached", "retired"],
        "recovering",
        [_no_run],
        [_remember_phase],
    ),
    ("RecycleSucceeded", "recovering", "idle", [], [_clear_all]),
    ("RetireRequested", _LIVE, "retired", [], []),
    (
        "ResetRequested",
        [s for s in _NON_TERMINAL if s != "running"],
        "idle",
        [],
        [_clear_all],
    ),
    ("StopRequested", _NON_TERMINAL, "stopped", [], [_clear_all]),
    ("DestroyRequested", [*_NON_TERMINAL, "stopped"], "destroyed", [], [_clear_all]),
    # Signals are effects, not fields: these rows only select a transition.
    ("AdmissionAccepted", _LIVE, "=", [_steering], []),
    ("AdmissionAccepted", _LIVE, "=", [_queue, _wakes], []),
    ("AdmissionAccepted", _LIVE, "=", [_queue, _quiet], []),
    ("WorkWaiting", [*_NON_TERMINAL[1:], "stopped", "destroyed"], "=", [], []),
]


class RuntimeModel:
    """The ``transitions`` model of one runtime; ``state`` is set by the machine."""

    def __init__(self) -> None:
        self.state = "initializing"
        self.current_run_id: RunId | None = None
        self.pre_run_state: str | None = None


_RUN = RunId("run_1")
# Returns to idle; exercises no_active_run, active_run_matches and both
# pre_run_state guards (attached and idle).
RC_CYCLE: list[tuple[str, dict[str, Any], rc.RuntimeControlInput]] = [
    ("AttachExecutor", {}, rc.AttachExecutor()),
    ("BeginRun", {"run_id": _RUN}, rc.BeginRun(run_id=_RUN)),
    ("RunCompleted", {"run_id": _RUN}, rc.RunCompleted(run_id=_RUN)),
    ("DetachExecutor", {}, rc.DetachExecutor()),
    ("BeginRun", {"run_id": _RUN}, rc.BeginRun(run_id=_RUN)),
    ("RunFailed", {"run_id": _RUN}, rc.RunFailed(run_id=_RUN)),
    ("RetireRequested", {}, rc.RetireRequested()),
    ("ResetRequested", {}, rc.ResetRequested()),
]

# ------------------------------------------------------------ input_lifecycle


def _stage(e: Any) -> None:
    e.model.last_run_id = e.kwargs["run_id"]
    e.model.attempt_count += 1


def _outcome(make: Callable[[Any], object]) -> Update:
    def update(e: Any) -> None:
        e.model.terminal_outcome = make(e)

    return update


def _boundary(e: Any) -> None:
    e.model.last_boundary_sequence = e.kwargs["boundary_sequence"]


def _stamp(e: Any) -> None:
    e.model.last_run_id = e.kwargs["run_id"]
    e.model.last_boundary_sequence = e.kwargs["boundary_sequence"]


def _stamp_row(source: str) -> Row:
    """StampReceipt keeps the phase (a self-transition)."""
    return ("StampReceipt", source, source, [], [_stamp])


_exhausted = _outcome(
    lambda e: InputTerminalOutcome.Abandoned(
        reason=InputAbandonReason.MaxAttemptsExhausted(attempts=e.model.attempt_count)
    )
)
_consumed = _outcome(lambda _: InputTerminalOutcome.Consumed())
_IN_FLIGHT = ["accepted", "queued", "staged", "applied", "applied_pending_consumption"]

IL_TABLE: list[Row] = [
    ("QueueAccepted", "accepted", "queued", [], []),
    ("StageForRun", "queued", "staged", [], [_stage]),
    ("RollbackStaged", "staged", "queued", [lambda e: e.model.attempt_count < 3], []),
    (
        "RollbackStaged",
        "staged",
        "abandoned",
        [lambda e: e.model.attempt_count >= 3],
        [_exhausted],
    ),
    (
        "MarkApplied",
        "staged",
        "applied",
        [lambda e: e.model.last_run_id == e.kwargs["run_id"]],
        [],
    ),
    (
        "MarkAppliedPendingConsumption",
        "applied",
        "applied_pending_consumption",
        [],
        [_boundary],
    ),
    ("Consume", "applied_pending_consumption", "consumed", [], [_consumed]),
    *[
        _stamp_row(source)
        for source in (
            "queued",
            "staged",
            "applied",
            "applied_pending_consumption",
            "consumed",
            "superseded",
            "coalesced",
            "abandoned",
        )
    ],
    *[
        row
        for source in ("applied", "applied_pending_consumption")
        for row in (
            (
                "RecoverRequeue",
                source,
                "queued",
                [lambda e: e.model.attempt_count < 3],
                [],
            ),
            (
                "RecoverRequeue",
                source,
                "abandoned",
                [lambda e: e.model.attempt_count >= 3],
                [_exhausted],
            ),
        )
    ],
    ("ConsumeOnAccept", "accepted", "consumed", [], [_consumed]),
    (
        "Supersede",
        "queued",
        "superseded",
        [],
        [
            _outcome(
                lambda e: InputTerminalOutcome.Superseded(
                    superseded_by=e.kwargs["superseded_by"]
                )
            )
        ],
    ),
    (
        "Coalesce",
        "queued",
        "coalesced",
        [],
        [
            _outcome(
                lambda e: InputTerminalOutcome.Coalesced(
                    aggregate_id=e.kwargs["aggregate_id"]
                )
            )
        ],
    ),
    (
        "Abandon",
        _IN_FLIGHT,
        "abandoned",
        [],
        [_outcome(lambda e: InputTerminalOutcome.Abandoned(reason=e.kwargs["reason"]))],
    ),
]


class InputModel:
    """The ``transitions`` model of one input; triggers are added by the machine."""

    state: str
    QueueAccepted: Callable[[], bool]
    StageForRun: Callable[..., bool]
    MarkApplied: Callable[..., bool]
    MarkAppliedPendingConsumption: Callable[..., bool]
    Consume: Callable[[], bool]

    def __init__(self) -> None:
        self.terminal_outcome: object = None
        self.last_run_id: RunId | None = None
        self.last_boundary_sequence: int | None = None
        self.attempt_count = 0


# ------------------------------------------------------------ machines


def build(
    table: Sequence[Row], states: Sequence[str], initial: str, model: object
) -> Machine:
    rows = [
        {"trigger": t, "source": s, "dest": d, "conditions": g, "before": u}
        for t, s, d, g, u in table
    ]
    return Machine(
        model=model,  # None: models are added later with Machine.add_model
        states=list(states),
        transitions=rows,
        initial=initial,
        auto_transitions=False,
        ignore_invalid_triggers=False,
        send_event=True,
    )


def check_tables() -> None:
    """Fail unless each hand-written table has exactly the spec's edges."""
    # codegen/ is a directory of the checkout, not an installed package.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from codegen.generate import load

    machines = {m.name: m for m in load(ROOT)[0].machines}
    for name, table in (("runtime_control", RC_TABLE), ("input_lifecycle", IL_TABLE)):
        m = machines[name]
        spec = {(t.on, s, t.target_from(s)) for t in m.transitions for s in t.sources}
        ours = {
            (trigger, s, s if dest == "=" else dest)
            for trigger, sources, dest, _, _ in table
            for s in ([sources] if isinstance(sources, str) else sources)
        }
        assert ours == spec, f"{name}: table drifted from the spec: {ours ^ spec}"


# ------------------------------------------------------------ timing


def best_of(repeats: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeats))


def bench_runtime_control(cycles: int, repeats: int) -> tuple[float, float]:
    """Transitions per second: (generated, transitions)."""
    start = rc.RuntimeControlSnapshot(phase=rc.RuntimeState.IDLE)
    model = RuntimeModel()
    machine = build(RC_TABLE, [s.value for s in rc.RuntimeState], "idle", model)
    inputs = [inp for _, _, inp in RC_CYCLE]
    triggers = [(getattr(model, name), kwargs) for name, kwargs, _ in RC_CYCLE]
    for trigger, kwargs in triggers:  # once, checked: a failed guard returns False
        assert trigger(**kwargs), "transitions refused an input of the cycle"
    assert model.state == "idle"

    def generated() -> float:
        apply = rc.RuntimeControlAuthority.restore(start).apply
        t0 = time.perf_counter()
        for _ in range(cycles):
            for inp in inputs:
                apply(inp)
        return time.perf_counter() - t0

    def with_transitions() -> float:
        machine.set_state("idle", model=model)
        t0 = time.perf_counter()
        for _ in range(cycles):
            for trigger, kwargs in triggers:
                trigger(**kwargs)
        elapsed = time.perf_counter() - t0
        assert model.state == "idle"
        return elapsed

    n = cycles * len(RC_CYCLE)
    return n / best_of(repeats, generated), n / best_of(repeats, with_transitions)


def bench_input_lifecycle(lifecycles: int, repeats: int) -> tuple[float, float]:
    """Full lifecycles per second: (generated, transitions)."""
    machine = build(
        IL_TABLE, [s.value for s in il.InputLifecycleState], "accepted", None
    )
    lifecycle = (
        il.QueueAccepted(),
        il.StageForRun(run_id=_RUN),
        il.MarkApplied(run_id=_RUN),
        il.MarkAppliedPendingConsumption(boundary_sequence=1),
        il.Consume(),
    )

    def generated() -> float:
        t0 = time.perf_counter()
        for _ in range(lifecycles):
            auth = il.InputLifecycleAuthority()
            for inp in lifecycle:
                auth.apply(inp)
        return time.perf_counter() - t0

    def with_transitions() -> float:
        # One Machine for all inputs; each lifecycle creates a new model and
        # registers it with the documented Machine.add_model, then unregisters
        # it with Machine.remove_model so the machine does not grow.
        t0 = time.perf_counter()
        for _ in range(lifecycles):
            model = InputModel()
            machine.add_model(model)
            model.QueueAccepted()
            model.StageForRun(run_id=_RUN)
            model.MarkApplied(run_id=_RUN)
            model.MarkAppliedPendingConsumption(boundary_sequence=1)
            model.Consume()
            machine.remove_model(model)
        elapsed = time.perf_counter() - t0
        assert model.state == "consumed"
        return elapsed

    gen, other = best_of(repeats, generated), best_of(repeats, with_transitions)
    return lifecycles / gen, lifecycles / other


def report(title: str, unit: str, gen: float, other: float) -> None:
    print(title)
    print(f"  generated    {gen:>12,.0f} {unit}/s")
    print(f"  transitions  {other:>12,.0f} {unit}/s")
    machine = title.split(":")[0]
    print(goal(machine, gen / other, GOAL, unit="x", of="transitions", digits=1))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="a short, noisier run")
    args = parser.parse_args(argv)
    scale, repeats = (1, 3) if args.quick else (10, 5)
    check_tables()
    print(f"Python {platform.python_version()}, best of {repeats} repeats")
    cycles = 2_000 * scale
    gen, other = bench_runtime_control(cycles, repeats)
    names = ", ".join(name for name, _, _ in RC_CYCLE)
    report(
        f"runtime_control: {cycles:,} cycles of {len(RC_CYCLE)} inputs ({names})",
        "transitions",
        gen,
        other,
    )
    lifecycles = 1_000 * scale
    gen, other = bench_input_lifecycle(lifecycles, repeats)
    report(
        f"input_lifecycle: {lifecycles:,} full lifecycles (new authority or model, then "
        "QueueAccepted, StageForRun, MarkApplied, MarkAppliedPendingConsumption, Consume)",
        "lifecycles",
        gen,
        other,
    )


if __name__ == "__main__":
    main()
