"""Structural guarantees of the drivers (STYLE.md 1 and 5, decision 6).

(a) Only the generated authorities change a lifecycle phase: no module of the
    package (except generated/) writes a phase or authority field, calls ``setattr`` on one, or rebuilds an
    authority with ``restore``; ``InputState`` offers no way to set its phase;
    queries hand out copies.
(b) An illegal call raises and changes nothing: ``observe()``, every input
    state's JSON and the event buffer are the same before and after.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from meerkat_runtime import (
    InputAbandonReason,
    InputId,
    InputLifecycleState,
    InputState,
    PromptInput,
    RunId,
    RuntimeControlError,
    RuntimeDriverError,
)
from meerkat_runtime.driver import ephemeral
from meerkat_runtime.driver.ephemeral import (
    EphemeralRuntimeDriver,
    RuntimeControlCommand,
)
from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.runs import RunCancelled, RunEvent
from tests.driver.helpers import (
    accept_all,
    boundary,
    completed,
    everything,
    failed,
    flow_step,
    header,
    new_driver,
    prompt,
    run_to_completion,
)

DRIVER_DIR = Path(ephemeral.__file__).resolve().parent
PACKAGE_DIR = DRIVER_DIR.parent

# Fields only an authority may write: the phase, the authority objects, and
# the lifecycle fields they own (L-10).
FORBIDDEN_FIELDS = frozenset(
    {
        "_phase",
        "_authority",
        "current_state",
        "phase",
        "_terminal_outcome",
        "_last_run_id",
        "_last_boundary_sequence",
        "_attempt_count",
        "_current_run_id",
        "_pre_run_state",
    }
)

# ---------------------------------------------------------------- (a) the checker


def _targets(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.Tuple | ast.List):
        return [t for elt in node.elts for t in _targets(elt)]
    if isinstance(node, ast.Starred):
        return _targets(node.value)
    return [node]


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def phase_writes(source: str, filename: str = "<driver>") -> list[str]:
    """Every place ``source`` writes a lifecycle field itself."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        written: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            written = [t for target in node.targets for t in _targets(target)]
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            written = _targets(node.target)
        elif isinstance(node, ast.Delete):
            written = [t for target in node.targets for t in _targets(target)]
        for target in written:
            if isinstance(target, ast.Attribute) and target.attr in FORBIDDEN_FIELDS:
                found.append(f"{filename}:{target.lineno}: writes .{target.attr}")
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name.endswith(("setattr", "__setattr__", "__delattr__", "delattr")):
                # setattr(obj, name, ...) and object.__setattr__(obj, name, ...)
                args = node.args[1:2]
                literal = args and isinstance(args[0], ast.Constant) and args[0].value
                if not isinstance(literal, str) or literal in FORBIDDEN_FIELDS:
                    found.append(f"{filename}:{node.lineno}: {name}(...)")
            if name.endswith(".restore") and "Authority" in name:
                found.append(f"{filename}:{node.lineno}: {name}(...)")
    return found


@pytest.mark.parametrize(
    "snippet",
    [
        "state._authority = other",
        "self._control._phase = RuntimeState.IDLE",
        "state.current_state = InputLifecycleState.QUEUED",
        "a, state._authority._phase = 1, 2",
        "authority._attempt_count += 1",
        "self._control._current_run_id: RunId | None = None",
        "setattr(state, '_authority', x)",
        "setattr(state, name, x)",
        "object.__setattr__(state, '_phase', x)",
        "rc.RuntimeControlAuthority.restore(snapshot)",
        "self._control = RuntimeControlAuthority.restore(snap)",
        "il.InputLifecycleAuthority.restore(snapshot)",
    ],
)
def test_checker_catches_a_driver_assigning_a_phase(snippet: str) -> None:
    """STYLE.md 1: the checker flags each way a driver could set a phase itself."""
    assert phase_writes(snippet)


@pytest.mark.parametrize(
    "snippet",
    [
        "state.persisted_input = inp",
        "self._batch = None",
        "state.apply(il.QueueAccepted(), now)",
        "self._control = rc.RuntimeControlAuthority()",
        "setattr(config, 'verbose', True)",
    ],
)
def test_checker_allows_operational_fields(snippet: str) -> None:
    """API.md: operational fields stay settable; only lifecycle fields are guarded."""
    assert phase_writes(snippet) == []


PACKAGE_MODULES = sorted(
    m for m in PACKAGE_DIR.rglob("*.py") if "generated" not in m.parts
)

# InputState wraps one input's authority: its constructor keeps the authority
# it is given, and copying or decoding a state rebuilds the authority from a
# snapshot (L-10: a stored record comes back exactly, without a transition).
# Nothing else in the package may do either.
WRAPPER_ALLOWED = {
    "input_state.py": {"writes ._authority", "InputLifecycleAuthority.restore(...)"},
    # A frozen tagged value (an abandon reason) sets its own declared fields
    # once, in its constructor; it holds no lifecycle state.
    "tagging.py": {"object.__setattr__(...)"},
}


def _where(module: Path) -> str:
    return str(module.relative_to(PACKAGE_DIR))


def test_package_modules_are_found() -> None:
    names = {_where(m) for m in PACKAGE_MODULES}
    assert {"driver/core.py", "store/sqlite.py", "sessions/loop.py"} <= names
    assert not any(n.startswith("generated/") for n in names)


@pytest.mark.parametrize("module", PACKAGE_MODULES, ids=_where)
def test_no_module_assigns_a_phase(module: Path) -> None:
    """STYLE.md 1: phases change only through ``apply``, in every module of
    the package but the generated ones. (A module that does not parse on
    Python 3.11 fails here too.)"""
    allowed = WRAPPER_ALLOWED.get(_where(module), set())
    found = phase_writes(module.read_text(), _where(module))
    assert [f for f in found if f.split(": ", 1)[1] not in allowed] == []
    assert allowed <= {f.split(": ", 1)[1] for f in found}  # the allowance is used


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("current_state", InputLifecycleState.CONSUMED),
        ("phase", InputLifecycleState.CONSUMED),
        ("terminal_outcome", None),
        ("attempt_count", 0),
        ("last_run_id", None),
        ("last_boundary_sequence", None),
        ("history", []),
        ("updated_at", None),
    ],
)
def test_input_state_has_no_public_phase_setter(name: str, value: object) -> None:
    """STYLE.md 1 / L-10: the lifecycle fields are read-only methods."""
    state = InputState.new_accepted(InputId.new())
    with pytest.raises(AttributeError):
        setattr(state, name, value)
    assert state.current_state() is InputLifecycleState.ACCEPTED


def test_input_state_exposes_no_setter_or_restore() -> None:
    """No property setter, no ``set_*`` / ``restore`` method on InputState."""
    for klass in InputState.__mro__:
        for attr, member in vars(klass).items():
            if isinstance(member, property):
                assert member.fset is None, attr
            if not attr.startswith("_"):
                assert not attr.startswith(("set_", "force")), attr
                assert "restore" not in attr, attr
    public_slots = [s for s in InputState.__slots__ if not s.startswith("_")]
    assert not set(public_slots) & FORBIDDEN_FIELDS


def test_input_state_query_returns_a_copy() -> None:
    """The driver hands out copies: changing one changes nothing inside."""
    driver = new_driver()
    [a] = accept_all(driver, prompt())
    before = everything(driver)
    copy = driver.input_state(a)
    assert copy is not None
    copy.apply(il.Abandon(reason=InputAbandonReason.Reset()))
    copy.persisted_input = None
    copy.policy = None
    copy.recovery_count = 9
    assert everything(driver) == before
    original = driver.input_state(a)
    assert original is not None
    assert original.current_state() is InputLifecycleState.QUEUED
    assert driver.queued_input_ids() == [a]


def test_active_and_queued_id_lists_are_copies() -> None:
    driver = new_driver()
    [a] = accept_all(driver, prompt())
    driver.active_input_ids().clear()
    driver.queued_input_ids().clear()
    assert driver.active_input_ids() == driver.queued_input_ids() == [a]


# ---------------------------------------------------------------- (b) illegal calls


@dataclass
class World:
    """A driver with inputs ``a``, ``b`` queued (``a`` staged for ``run`` when
    running), ``done`` consumed by ``old_run``."""

    driver: EphemeralRuntimeDriver
    a: InputId
    b: InputId
    done: InputId
    old_run: RunId
    run: RunId


def _world(phase: str) -> World:
    driver = new_driver()
    [done] = accept_all(driver, flow_step("done"))
    old_run = run_to_completion(driver, [done])
    a, b = accept_all(driver, flow_step("a"), flow_step("b"))
    run = RunId.new()
    if phase in ("started", "running", "applied", "retired-running"):
        driver.start_run(run)
    if phase in ("running", "applied", "retired-running"):
        driver.stage_batch([a], run)
    if phase in ("applied", "retired-running"):
        driver.run_event_now(boundary(run, [a]))
    if phase in ("retired", "retired-running"):
        driver.retire_now()
    if phase == "stopped":
        driver.runtime_control_now(RuntimeControlCommand.STOP)
    if phase == "destroyed":
        driver.destroy_now()
    return World(driver, a, b, done, old_run, run)


Action = Callable[[World], object]
NR = RuntimeDriverError.NotReady
VF = RuntimeDriverError.ValidationFailed
GONE = RuntimeDriverError.Destroyed
RCE = RuntimeControlError
STOP = RuntimeControlCommand.STOP


def _wait(awaitable: Coroutine[Any, Any, object]) -> object:
    return asyncio.run(awaitable)


def _event(make: Callable[[World], RunEvent]) -> Action:
    return lambda w: _wait(w.driver.on_run_event(make(w)))


_BAD_PROMPT = PromptInput(header=header(), text=cast(str, 42))

# name: (world, illegal call, error)
ILLEGAL: dict[str, tuple[str, Action, type[Exception]]] = {
    # control operations
    "reset-while-running": ("running", lambda w: _wait(w.driver.reset()), NR),
    "reset-while-applied": ("applied", lambda w: w.driver.reset_now(), NR),
    "reset-when-stopped": ("stopped", lambda w: w.driver.reset_now(), NR),
    "reset-when-destroyed": ("destroyed", lambda w: w.driver.reset_now(), GONE),
    "retire-when-retired": ("retired", lambda w: _wait(w.driver.retire()), NR),
    "retire-when-stopped": ("stopped", lambda w: w.driver.retire_now(), NR),
    "destroy-when-destroyed": ("destroyed", lambda w: _wait(w.driver.destroy()), GONE),
    "stop-when-stopped": ("stopped", lambda w: w.driver.runtime_control_now(STOP), NR),
    "stop-when-destroyed": (
        "destroyed",
        lambda w: _wait(w.driver.on_runtime_control(STOP)),
        GONE,
    ),
    "recycle-while-running": (
        "running",
        lambda w: _wait(w.driver.recycle_preserving_work()),
        NR,
    ),
    "recycle-while-retired-running": (
        "retired-running",
        lambda w: w.driver.recycle_now(),
        NR,
    ),
    "attach-when-running": ("running", lambda w: w.driver.attach(), RCE),
    "attach-when-retired": ("retired", lambda w: w.driver.attach(), RCE),
    "start-run-when-running": ("running", lambda w: w.driver.start_run(w.run), RCE),
    "start-run-when-stopped": ("stopped", lambda w: w.driver.start_run(w.run), RCE),
    "complete-run-with-batch": ("running", lambda w: w.driver.complete_run(), VF),
    "complete-run-when-idle": ("idle", lambda w: w.driver.complete_run(), NR),
    # accept
    "accept-when-stopped": ("stopped", lambda w: w.driver.accept_now(prompt()), NR),
    "accept-when-retired": (
        "retired",
        lambda w: _wait(w.driver.accept_input(prompt())),
        NR,
    ),
    "accept-when-destroyed": ("destroyed", lambda w: w.driver.accept_now(prompt()), NR),
    "accept-malformed": ("idle", lambda w: w.driver.accept_now(_BAD_PROMPT), VF),
    # staging and the manual helpers
    "stage-when-idle": ("idle", lambda w: w.driver.stage_input(w.a, w.run), VF),
    "stage-when-retired": ("retired", lambda w: w.driver.stage_input(w.a, w.run), VF),
    "stage-wrong-run": ("started", lambda w: w.driver.stage_input(w.a, w.old_run), VF),
    "stage-not-head": ("started", lambda w: w.driver.stage_input(w.b, w.run), VF),
    "stage-consumed": ("started", lambda w: w.driver.stage_input(w.done, w.run), VF),
    "stage-unknown": (
        "started",
        lambda w: w.driver.stage_input(InputId.new(), w.run),
        VF,
    ),
    "stage-empty": ("started", lambda w: w.driver.stage_batch([], w.run), VF),
    "stage-second-batch": ("running", lambda w: w.driver.stage_input(w.b, w.run), VF),
    "apply-queued": ("running", lambda w: w.driver.apply_input(w.b, w.run), VF),
    "apply-other-run": ("running", lambda w: w.driver.apply_input(w.a, w.old_run), VF),
    # run events for a run that is not current, or naming inputs not staged
    "boundary-old-run": ("running", _event(lambda w: boundary(w.old_run, [w.a])), VF),
    "completed-old-run": ("applied", _event(lambda w: completed(w.old_run, [w.a])), VF),
    "failed-old-run": ("running", _event(lambda w: failed(w.old_run)), VF),
    "cancelled-new-run": (
        "running",
        _event(lambda _: RunCancelled(run_id=RunId.new())),
        VF,
    ),
    "completed-when-idle": ("idle", _event(lambda w: completed(w.run, [w.a])), VF),
    "failed-when-retired": ("retired", _event(lambda w: failed(w.run)), VF),
    "boundary-names-queued": (
        "running",
        _event(lambda w: boundary(w.run, [w.a, w.b])),
        VF,
    ),
    "boundary-names-consumed": (
        "running",
        _event(lambda w: boundary(w.run, [w.done])),
        VF,
    ),
    "boundary-twice": ("applied", _event(lambda w: boundary(w.run, [w.a])), VF),
}


def _dump(driver: EphemeralRuntimeDriver) -> list[bytes]:
    states = [driver.input_state(r.input_id) for r in driver.observe().inputs]
    return [s.to_json() for s in states if s is not None]


@pytest.mark.parametrize(("phase", "action", "error"), ILLEGAL.values(), ids=ILLEGAL)
def test_illegal_call_changes_nothing(
    phase: str, action: Action, error: type[Exception]
) -> None:
    """Decision 6 / decision 21 / STYLE.md 5: refused before any mutation."""
    world = _world(phase)
    driver = world.driver
    observed, dumped = driver.observe(), _dump(driver)
    with pytest.raises(error):
        action(world)
    assert driver.observe() == observed
    assert _dump(driver) == dumped
    assert driver.observe().events == observed.events


def test_worlds_are_what_they_claim() -> None:
    """Guard for the table above: each setup reaches its phase."""
    assert _world("running").driver.observe().batch is not None
    applied = _world("applied")
    state = applied.driver.input_state(applied.a)
    assert state is not None
    assert state.current_state() is InputLifecycleState.APPLIED_PENDING_CONSUMPTION
    assert _world("retired-running").driver.observe().control.current_run_id is not None
    assert _world("started").driver.observe().batch is None
