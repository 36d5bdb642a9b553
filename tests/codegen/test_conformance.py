"""Upstream conformance table (issue 14): the field updates and effects of
upstream's transition tables, C-3 (runtime control) and L-3 (input
lifecycle), row by row, against every step the model checker explores.

Each row says, per field, what upstream does: ``KEEP`` (unchanged),
``CLEAR`` (back to its initial value), ``FROM`` (the source phase), a
parameter name (``"=run_id"``), ``INC`` (one more) or a literal; a field not
named is not specified upstream and is not compared. Every difference found
must be a documented decision (``DIFFERENCES``), and every documented
difference must still be found, so a fix, or a new drift, fails here.

Upstream's runtime machine kept two signal flags as fields (C-2); here the
signals are effects (PD-24). A row's rule for a flag is read as the signal
effects the step must emit: ``True`` raises the signal, ``KEEP`` touches no
signal, ``CLEAR`` (or ``False``) withdraws them. The other effects are
compared by name, in order. Upstream's declarations (fields, inputs,
effects) are compared with the spec's as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from codegen import expr as ex
from codegen.checker import Edge, check_machine
from codegen.model import Machine, Spec
from codegen.properties import Properties
from tests.conftest import machine

KEEP, CLEAR, FROM, INC = "keep", "clear", "from", "+1"
RUN = ("current_run_id", "pre_run_state")
FLAGS = ("wake_pending", "process_pending")
ALL = (*RUN, *FLAGS)
# Upstream's flag -> the effect that raises the signal it stood for (PD-24).
RAISES = {"wake_pending": "SignalWake", "process_pending": "SignalImmediateProcess"}
WITHDRAWS = "WithdrawSignals"
SIGNAL_EFFECTS = (*RAISES.values(), WITHDRAWS)


@dataclass(frozen=True)
class Row:
    on: str
    sources: tuple[str, ...]
    target: str | None  # None: the phase does not change
    fields: dict[str, object] = field(default_factory=dict)
    effects: tuple[str, ...] | None = None  # other effects' names, in order


@dataclass(frozen=True)
class Declared:
    """What upstream's machine declares (C-2, C-4): fields and effects; its
    inputs are those of its table."""

    fields: tuple[str, ...]
    effects: tuple[str, ...]


def _cleared(names: tuple[str, ...]) -> dict[str, object]:
    return dict.fromkeys(names, CLEAR)


LIVE_RC = ("idle", "attached", "running")
C3 = [
    Row("Initialize", ("initializing",), "idle"),
    Row("AttachExecutor", ("idle",), "attached", {}, ()),
    Row("DetachExecutor", ("attached",), "idle", {}, ()),
    Row(
        "BeginRun",
        ("idle", "attached", "retired", "recovering"),
        "running",
        {"current_run_id": "=run_id", "pre_run_state": FROM}
        | dict.fromkeys(FLAGS, False),
        ("SubmitRunPrimitive",),
    ),
    *(
        Row(on, ("running",), "", _cleared(RUN))
        for on in ("RunCompleted", "RunFailed", "RunCancelled")
    ),
    *(
        Row(on, ("retired",), "retired", {"current_run_id": CLEAR})
        for on in ("RunCompleted", "RunFailed", "RunCancelled")
    ),
    Row("SubmitWork", LIVE_RC, None, dict.fromkeys(ALL, KEEP)),
    # an idle queue-mode admission wakes the loop; a running one does not.
    Row(
        "AdmissionAccepted/queue",
        ("idle", "attached"),
        None,
        {"wake_pending": True, "process_pending": KEEP},
    ),
    Row(
        "AdmissionAccepted/queue",
        ("running",),
        None,
        {"wake_pending": KEEP, "process_pending": KEEP},
    ),
    Row(
        "AdmissionAccepted/steer",
        LIVE_RC,
        None,
        {"wake_pending": True, "process_pending": True},
    ),
    Row("AdmissionRejected", LIVE_RC, None, dict.fromkeys(ALL, KEEP)),
    Row("AdmissionDeduplicated", LIVE_RC, None, dict.fromkeys(ALL, KEEP)),
    Row(
        "RecoverRequested", ("idle", "attached"), "recovering", {"pre_run_state": FROM}
    ),
    # Upstream clears the run only; the phase it began from stays.
    Row(
        "RecoverRequested",
        ("running",),
        "recovering",
        {"current_run_id": CLEAR, "pre_run_state": KEEP},
    ),
    Row("RecoverySucceeded", ("recovering",), "idle", _cleared(ALL)),
    Row(
        "RetireRequested",
        LIVE_RC,
        "retired",
        {"current_run_id": KEEP},
        ("ApplyControlPlaneCommand",),
    ),
    Row(
        "ResetRequested",
        ("initializing", "idle", "attached", "recovering", "retired"),
        "idle",
        _cleared(ALL),
        ("ApplyControlPlaneCommand", "ResolveCompletionAsTerminated"),
    ),
    # Upstream clears the run fields and leaves the pending flags.
    Row(
        "StopRequested",
        ("initializing", "idle", "attached", "running", "recovering", "retired"),
        "stopped",
        _cleared(RUN) | dict.fromkeys(FLAGS, KEEP),
        ("ApplyControlPlaneCommand", "ResolveCompletionAsTerminated"),
    ),
    # Upstream's destroy changes no field.
    Row(
        "DestroyRequested",
        (
            "initializing",
            "idle",
            "attached",
            "running",
            "recovering",
            "retired",
            "stopped",
        ),
        "destroyed",
        dict.fromkeys(ALL, KEEP),
        ("ApplyControlPlaneCommand", "ResolveCompletionAsTerminated"),
    ),
    Row("ResumeRequested", ("recovering",), "idle", {}),
    Row(
        "ExternalToolDeltaReceived",
        (*LIVE_RC, "recovering", "retired"),
        None,
        dict.fromkeys(ALL, KEEP),
    ),
    Row(
        "RecycleRequested",
        ("retired", "idle", "attached"),
        "recovering",
        {"pre_run_state": FROM},
        ("InitiateRecycle",),
    ),
    Row(
        "RecycleSucceeded",
        ("recovering",),
        "idle",
        _cleared(ALL),
        ("EmitRuntimeNotice",),
    ),
]
C2_C4 = Declared(
    fields=ALL,
    effects=(
        "ResolveAdmission",
        "SubmitAdmittedIngressEffect",
        "SubmitRunPrimitive",
        "SignalWake",
        "SignalImmediateProcess",
        "EmitRuntimeNotice",
        "ResolveCompletionAsTerminated",
        "ApplyControlPlaneCommand",
        "InitiateRecycle",
    ),
)

LIVE_IL = ("accepted", "queued", "staged", "applied", "applied_pending_consumption")
NOTICE = "InputLifecycleNotice"
L3 = [
    Row("QueueAccepted", ("accepted",), "queued", {}, (NOTICE,)),
    Row(
        "StageForRun",
        ("queued",),
        "staged",
        {"last_run_id": "=run_id", "attempt_count": INC},
        (NOTICE, "RecordRunAssociation"),
    ),
    Row("RollbackStaged", ("staged",), "", {"attempt_count": KEEP}),
    Row("MarkApplied", ("staged",), "applied", {}, (NOTICE,)),
    Row(
        "MarkAppliedPendingConsumption",
        ("applied",),
        "applied_pending_consumption",
        {"last_boundary_sequence": "=boundary_sequence"},
        (NOTICE, "RecordBoundarySequence"),
    ),
    Row(
        "Consume",
        ("applied_pending_consumption",),
        "consumed",
        {},
        (NOTICE, "RecordTerminalOutcome"),
    ),
    Row(
        "ConsumeOnAccept",
        ("accepted",),
        "consumed",
        {},
        (NOTICE, "RecordTerminalOutcome"),
    ),
    Row("Supersede", ("queued",), "superseded", {}, (NOTICE, "RecordTerminalOutcome")),
    Row("Coalesce", ("queued",), "coalesced", {}, (NOTICE, "RecordTerminalOutcome")),
    Row("Abandon", LIVE_IL, "abandoned", {}, (NOTICE, "RecordTerminalOutcome")),
]

# (machine, subject, what differs) -> the decision that explains it. The
# subject is an input, or "declares" for the machine's declarations.
DIFFERENCES = {
    ("runtime_control", "RecoverRequested", "pre_run_state"): "PD-45",
    ("runtime_control", "DestroyRequested", "current_run_id"): "PD-46",
    ("runtime_control", "DestroyRequested", "pre_run_state"): "PD-46",
    # Signals are effects (PD-24): the flags are no fields, and only a reset
    # withdraws a signal; the machine wakes the loop as the policy's
    # decision, passed in, says; a phase change is announced by an effect.
    ("runtime_control", "declares", "no field wake_pending"): "PD-24",
    ("runtime_control", "declares", "no field process_pending"): "PD-24",
    ("runtime_control", "declares", "effect WithdrawSignals"): "PD-24",
    ("runtime_control", "declares", "effect AnnouncePhaseChange"): "PD-24",
    ("runtime_control", "BeginRun", "wake_pending"): "PD-24",
    ("runtime_control", "BeginRun", "process_pending"): "PD-24",
    ("runtime_control", "RecoverySucceeded", "wake_pending"): "PD-24",
    ("runtime_control", "RecoverySucceeded", "process_pending"): "PD-24",
    ("runtime_control", "RecycleSucceeded", "wake_pending"): "PD-24",
    ("runtime_control", "RecycleSucceeded", "process_pending"): "PD-24",
    ("runtime_control", "AdmissionAccepted", "wake_pending"): "PD-24",
    ("runtime_control", "WorkWaiting", "not upstream"): "PD-24",
    **{
        ("runtime_control", on, "effects added"): "PD-24"
        for on in (
            "AttachExecutor",
            "DetachExecutor",
            "RetireRequested",
            "ResetRequested",
            "StopRequested",
            "DestroyRequested",
            "RecycleRequested",
            "RecycleSucceeded",
        )
    },
    # Inputs no driver applied and effects nothing carried out left (PD-25).
    **{
        ("runtime_control", on, "not in the spec"): "PD-25"
        for on in (
            "SubmitWork",
            "AdmissionRejected",
            "AdmissionDeduplicated",
            "ExternalToolDeltaReceived",
        )
    },
    **{
        ("runtime_control", "declares", f"no effect {name}"): "PD-25"
        for name in (
            "ResolveAdmission",
            "SubmitAdmittedIngressEffect",
            "SubmitRunPrimitive",
            "EmitRuntimeNotice",
            "ResolveCompletionAsTerminated",
            "ApplyControlPlaneCommand",
            "InitiateRecycle",
        )
    },
    **{
        ("runtime_control", on, "effects dropped"): "PD-25"
        for on in (
            "BeginRun",
            "RetireRequested",
            "ResetRequested",
            "StopRequested",
            "DestroyRequested",
            "RecycleRequested",
            "RecycleSucceeded",
        )
    },
    # Inputs upstream's table does not have.
    ("input_lifecycle", "RecoverRequeue", "not upstream"): "PD-2",
    ("input_lifecycle", "StampReceipt", "not upstream"): "PD-47",
}

TABLES = {"runtime_control": C3, "input_lifecycle": L3}
DECLARED = {"runtime_control": C2_C4}


def _key(edge: Edge) -> str:
    mode = (
        edge.params.get("handling_mode")
        if edge.transition.on == "AdmissionAccepted"
        else None
    )
    return edge.transition.on + (f"/{mode}" if mode is not None else "")


def _emitted(m: Machine, edge: Edge) -> tuple[str, ...]:
    """The names of the effects the step emits, in order."""
    names = [f.name for f in m.fields]
    env = {
        **dict(m.constants),
        "phase": edge.target[0],
        **dict(zip(names, edge.target[1:], strict=True)),
        **edge.params,
    }
    out = []
    for emitted in edge.transition.emits:
        value = ex.evaluate(emitted, env)
        assert isinstance(value, ex.UnionVal)
        out.append(value.variant)
    return tuple(out)


def _expected(rule: object, before: object, initial: object, edge: Edge) -> object:
    """The value upstream gives a field, by the row's rule for it."""
    if rule == KEEP:
        return before
    if rule == CLEAR:
        return initial
    if rule == FROM:
        return edge.source[0]
    if rule == INC:
        assert isinstance(before, int)
        return before + 1
    if isinstance(rule, str) and rule.startswith("="):
        return edge.params[rule[1:]]
    return rule


def _signals_match(flag: str, rule: object, emitted: tuple[str, ...]) -> bool:
    """Whether the step signals as upstream's rule for ``flag`` says."""
    raised, withdrawn = RAISES[flag] in emitted, WITHDRAWS in emitted
    if rule is True:
        return raised and not withdrawn
    if rule in (CLEAR, False):
        return withdrawn and not raised
    return not raised and not withdrawn  # KEEP


def _differences(m: Machine, edge: Edge, row: Row) -> set[str]:
    source, target = edge.source, edge.target
    names = [f.name for f in m.fields]
    before = dict(zip(names, source[1:], strict=True))
    after = dict(zip(names, target[1:], strict=True))
    found = set()
    expected_phase = source[0] if row.target is None else row.target
    if expected_phase and target[0] != expected_phase:
        found.add("phase")
    initial = {f.name: f.initial for f in m.fields}
    emitted = _emitted(m, edge)
    for name, rule in row.fields.items():
        if name not in after:  # a flag upstream kept as a field (PD-24)
            if not _signals_match(name, rule, emitted):
                found.add(name)
        elif after[name] != _expected(rule, before[name], initial[name], edge):
            found.add(name)
    if row.effects is not None:
        others = tuple(e for e in emitted if e not in SIGNAL_EFFECTS)
        if set(row.effects) - set(others):
            found.add("effects dropped")
        if set(others) - set(row.effects):
            found.add("effects added")
        if set(others) == set(row.effects) and others != row.effects:
            found.add("effects order")
    return found


def _declarations(m: Machine, upstream: Declared) -> set[str]:
    """Where the spec's declarations differ from upstream's."""
    fields = {f.name for f in m.fields}
    effects = {e.name for e in m.effects}
    found = {f"no field {n}" for n in upstream.fields if n not in fields}
    found |= {f"field {n}" for n in fields - set(upstream.fields)}
    found |= {f"no effect {n}" for n in upstream.effects if n not in effects}
    found |= {f"effect {n}" for n in effects - set(upstream.effects)}
    return found


def _table(spec: Spec, name: str) -> set[tuple[str, str, str]]:
    m = machine(spec, name)
    result = check_machine(m, Properties())
    rows = TABLES[name]
    found: set[tuple[str, str, str]] = set()
    if name in DECLARED:
        found |= {(name, "declares", d) for d in _declarations(m, DECLARED[name])}
    for edge in result.graph:
        key = _key(edge)
        row = next(
            (r for r in rows if r.on == key and edge.source[0] in r.sources), None
        )
        if row is None:
            listed = any(r.on.split("/")[0] == edge.transition.on for r in rows)
            found.add(
                (
                    name,
                    edge.transition.on,
                    f"from {edge.source[0]}" if listed else "not upstream",
                )
            )
            continue
        found |= {(name, edge.transition.on, d) for d in _differences(m, edge, row)}
    # Every upstream row fires somewhere in the spec, or its input is gone.
    inputs = {i.name for i in m.inputs}
    fired = {(_key(e), str(e.source[0])) for e in result.graph}
    for r in rows:
        on = r.on.split("/")[0]
        if on not in inputs:
            found.add((name, on, "not in the spec"))
            continue
        found |= {
            (name, on, f"refused from {s}") for s in r.sources if (r.on, s) not in fired
        }
    return found


@pytest.mark.parametrize("name", sorted(TABLES))
def test_differences_from_upstream_are_exactly_the_documented_decisions(
    spec: Spec, name: str
) -> None:
    """C-3 / L-3: every upstream row, over every reachable configuration, gives
    the same phase, field updates, signals and effects as the spec, and
    upstream's declarations are the spec's, except where a decision (PD-2,
    PD-24, PD-25, PD-45..PD-47) says otherwise."""
    found = _table(spec, name)
    documented = {k for k in DIFFERENCES if k[0] == name}
    assert found == documented, {
        "undocumented": found - documented,
        "no longer found": documented - found,
    }


def _admissions(spec: Spec) -> list[tuple[Edge, tuple[str, ...]]]:
    m = machine(spec, "runtime_control")
    result = check_machine(m, Properties())
    edges = [e for e in result.graph if e.transition.on == "AdmissionAccepted"]
    return [(e, _emitted(m, e)) for e in edges]


def test_admission_signals_follow_the_mode_and_the_policy(spec: Spec) -> None:
    """A-16 / PD-24: an admission changes no field and no phase; a steer
    request raises both signals, a queued one wakes the loop exactly when
    the policy's decision (wake_if_idle) says so, in every accepting phase
    (the table above records where that departs from upstream's flags)."""
    admissions = _admissions(spec)
    assert {str(e.source[0]) for e, _ in admissions} == set(LIVE_RC)
    for edge, emitted in admissions:
        assert edge.target == edge.source
        if edge.params["handling_mode"] == "steer":
            assert emitted == ("SignalWake", "SignalImmediateProcess")
        elif edge.params["wake_if_idle"]:
            assert emitted == ("SignalWake",)
        else:
            assert emitted == ()


def test_a_flag_rule_reads_as_the_signals_emitted() -> None:
    """The reading of upstream's flag rules (PD-24), on its own: raising,
    keeping and clearing each match one set of emitted signal effects."""
    assert _signals_match("wake_pending", True, ("SignalWake",))
    assert not _signals_match("wake_pending", True, ())
    assert _signals_match("wake_pending", KEEP, ("AnnouncePhaseChange",))
    assert not _signals_match("wake_pending", KEEP, ("SignalWake",))
    assert _signals_match("process_pending", CLEAR, ("WithdrawSignals",))
    assert not _signals_match("process_pending", False, ())
