"""Graphviz diagrams of the machines and the policy table.

The diagrams read the same loaded spec the generator renders, so they cannot
drift from the code (STYLE.md 4). To stay readable rather than a hairball:

* transitions between the same two phases share one edge, a line per input;
* a transition from four or more live phases is drawn once, from the cluster
  of live phases, with the phases it does not come from named;
* transitions that keep the phase and come from several phases are listed in
  a "phase unchanged" table instead of as loops;
* edges carry only inputs and guard names, so the labels stay readable when
  the whole diagram fits a screen; what each transition sets and emits is in
  an "updates and effects" table beside it (one row per distinct update);
* guards appear by name on edges; a legend gives each guard's expression and
  the invariants;
* a phase's storage (``stored_as``, ``restore``) is written under its name.

``.dot`` files are committed and checked for freshness; ``.svg`` files are
rendered from them by ``make diagrams``.
"""

from __future__ import annotations

from html import escape
from itertools import pairwise
from pathlib import Path

from codegen import expr as ex
from codegen.compose import Composed, Step
from codegen.model import Machine, Transition
from codegen.policy import DECISION_FIELDS, Decision, Policy

BROADCAST_MIN_SOURCES = 4
FONT = 'fontname="Helvetica"'


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _label(transitions: list[Transition]) -> str:
    """One edge label: a line per distinct guard set; inputs that share it are
    joined with ``|`` (RunCompleted | RunFailed | RunCancelled)."""
    blocks: dict[tuple[str, ...], list[str]] = {}
    for t in transitions:
        inputs = blocks.setdefault(t.guards, [])
        if t.on not in inputs:
            inputs.append(t.on)
    lines = []
    for guards, inputs in blocks.items():
        # One input a line, its guards below: narrow labels keep the diagram
        # readable when it fits a screen.
        lines += [f"{name} |" for name in inputs[:-1]] + [inputs[-1]]
        lines += [f"  [{' & '.join(guards)}]"] if guards else []
    return "".join(_escape_line(line) + "\\l" for line in lines)


def _escape_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _effect_name(e: ex.Expr) -> str:
    text = ex.describe(e)
    return text.split("(", 1)[0] + ("(...)" if not text.endswith("()") else "")


def _live(m: Machine) -> list[str]:
    return [s for s in m.states if s not in m.terminal]


def machine_dot(m: Machine) -> str:
    live = _live(m)
    out = [
        f"// generated from {m.file} — edit the spec, not this file.",
        f"digraph {m.name} {{",
        f"  graph [{FONT}, rankdir=TB, nodesep=0.6, ranksep=0.7,"
        f" label={_q(m.name)}, labelloc=t, fontsize=18];",
        f'  node [{FONT}, shape=box, style="rounded,filled", fillcolor="#eef4fb"];',
        f"  edge [{FONT}, fontsize=10];",
        '  __start [shape=point, width=0.15, label=""];',
        f"  __start -> {m.initial};",
    ]
    out += [
        f"  {s} [{_node_label(m, s)}tooltip={_q(dict(m.state_docs)[s])}];" for s in live
    ]
    out += [
        f'  {s} [{_node_label(m, s)}shape=box, peripheries=2, fillcolor="#dddddd",'
        f" tooltip={_q(dict(m.state_docs)[s])}];"
        for s in m.terminal
    ]
    out += _edges(m, live)
    tables = _updates_table(m) + _unchanged_table(m) + _legend(m)
    out += tables
    # Tables go below the graph, one under the other, so the diagram stays
    # about as wide as the graph and readable when it fits a screen.
    names = [line.split()[0] for line in tables]
    out += [f"  {a} -> {b} [style=invis];" for a, b in pairwise(names)]
    out.append("}")
    return "\n".join(out) + "\n"


def _node_label(m: Machine, state: str) -> str:
    """A label attribute when the spec says how a store keeps the phase or
    how recovery brings it back: the name, then those lines."""
    lines = [state]
    stored = dict(m.stored_as).get(state)
    if stored is not None:
        lines.append(f"stored as: {ex.describe(stored)}")
    restore = dict(m.restore).get(state)
    if restore:
        lines.append(f"restored by: {', '.join(restore)}")
    if len(lines) == 1:
        return ""
    return 'label="' + "\\n".join(_escape_line(line) for line in lines) + '", '


def _is_broadcast(t: Transition, live: list[str]) -> bool:
    live_sources = [s for s in t.sources if s in live]
    return t.target is not None and len(live_sources) >= BROADCAST_MIN_SOURCES


def _edges(m: Machine, live: list[str]) -> list[str]:
    grouped: dict[tuple[str, str], list[Transition]] = {}
    pseudo: dict[str, str] = {}  # pseudo-node name -> its text
    for t in m.transitions:
        if t.target is None and len(t.sources) > 1:
            continue  # listed in the "phase unchanged" table
        sources = list(t.sources)
        if _is_broadcast(t, live):
            # Drawn once from a stand-in node for "any live phase (except ...)".
            missing = [s for s in live if s not in t.sources]
            node = "__any" + "".join(f"_not_{s}" for s in missing)
            pseudo[node] = "any live phase" + (
                "\\nexcept " + ", ".join(missing) if missing else ""
            )
            grouped.setdefault((node, t.target_from(live[0])), []).append(t)
            sources = [s for s in t.sources if s not in live]
        for s in sources:
            grouped.setdefault((s, t.target_from(s)), []).append(t)
    nodes = [
        f'  {name} [shape=ellipse, style=dashed, fontsize=10, label="{text}"];'
        for name, text in pseudo.items()
    ]
    return nodes + [
        f"  {src} -> {dst} [label={_q_raw(_label(ts))}"
        + (
            ', style=dashed, color="#aa3333", fontcolor="#aa3333"'
            if src in pseudo
            else ""
        )
        + "];"
        for (src, dst), ts in grouped.items()
    ]


def _q_raw(label: str) -> str:
    """Quote a label whose escapes (\\l) are already in place."""
    return '"' + label + '"'


def _unchanged_table(m: Machine) -> list[str]:
    rows = [t for t in m.transitions if t.target is None and len(t.sources) > 1]
    if not rows:
        return []
    cells = "".join(
        f"<tr><td align='left'>{escape(t.on)}"
        f"{escape(' [' + ' & '.join(t.guards) + ']') if t.guards else ''}</td>"
        f"<td align='left'>{escape(', '.join(t.sources))}</td>"
        f"<td align='left'>{escape(', '.join(_effect_name(e) for e in t.emits))}</td></tr>"
        for t in rows
    )
    header = (
        "<tr><td colspan='3' bgcolor='#dde6ee'><b>phase unchanged</b></td></tr>"
        "<tr><td><b>input</b></td><td><b>in phases</b></td><td><b>effects</b></td></tr>"
    )
    return [
        f"  __unchanged [shape=plaintext, style=\"\", label=<<table border='0' cellborder='1' cellspacing='0'>{header}{cells}</table>>];"
    ]


def _updates_table(m: Machine) -> list[str]:
    """What the phase-changing transitions set and emit, a row per distinct
    (updates, effects), its inputs joined as on the edges."""
    rows: dict[tuple[str, str], list[str]] = {}
    for t in m.transitions:
        if t.target is None and len(t.sources) > 1:
            continue  # in the "phase unchanged" table
        updates = ", ".join(f"{n} := {ex.describe(v)}" for n, v in t.sets)
        effects = ", ".join(_effect_name(e) for e in t.emits)
        if updates or effects:
            inputs = rows.setdefault((updates, effects), [])
            if t.on not in inputs:
                inputs.append(t.on)
    if not rows:
        return []
    cells = "".join(
        f"<tr><td align='left'>{escape(' | '.join(inputs))}</td>"
        f"<td align='left'>{escape(updates)}</td><td align='left'>{escape(effects)}</td></tr>"
        for (updates, effects), inputs in rows.items()
    )
    header = (
        "<tr><td colspan='3' bgcolor='#dde6ee'><b>updates and effects</b></td></tr>"
        "<tr><td><b>input</b></td><td><b>sets</b></td><td><b>effects</b></td></tr>"
    )
    return [
        f"  __updates [shape=plaintext, style=\"\", label=<<table border='0' cellborder='1' cellspacing='0'>{header}{cells}</table>>];"
    ]


def _legend(m: Machine) -> list[str]:
    rows = "".join(
        f"<tr><td align='left'>{escape(g.name)}</td><td align='left'>{escape(ex.describe(g.expr))}</td></tr>"
        for g in m.guards
    )
    rows += "".join(
        f"<tr><td align='left'><i>invariant</i> {escape(i.name)}</td>"
        f"<td align='left'>{escape(ex.describe(i.expr))}</td></tr>"
        for i in m.invariants
    )
    title = (
        "<tr><td colspan='2' bgcolor='#dde6ee'><b>guards and invariants</b></td></tr>"
    )
    return [
        f"  __legend [shape=plaintext, style=\"\", label=<<table border='0' cellborder='1' cellspacing='0'>{title}{rows}</table>>];"
    ]


# --------------------------------------------------------------------------
# policy table

_COLUMNS = (
    "kind",
    "apply",
    "wake idle",
    "wake running",
    "queue",
    "consume",
    "drain",
    "routing",
    "transcript",
)


def _cells(name: str, idle: Decision, running: Decision, color: str = "") -> str:
    values = [
        name,
        idle.apply_mode,
        idle.wake_mode,
        running.wake_mode,
        idle.queue_mode,
        idle.consume_point,
        idle.drain_policy,
        idle.routing_disposition,
        "yes" if idle.record_transcript else "no",
    ]
    bg = f" bgcolor='{color}'" if color else ""
    return (
        "<tr>"
        + "".join(f"<td align='left'{bg}>{escape(v)}</td>" for v in values)
        + "</tr>"
    )


def policy_dot(policy: Policy) -> str:
    head = (
        "<tr>"
        + "".join(f"<td bgcolor='#dde6ee'><b>{c}</b></td>" for c in _COLUMNS)
        + "</tr>"
    )
    rows = [_cells(kind, r.idle, r.running) for kind, r in policy.kinds]
    rows.append(
        _cells(
            "(any other kind)", policy.fallback.idle, policy.fallback.running, "#f4f4f4"
        )
    )
    span = len(_COLUMNS)
    rows.append(
        f"<tr><td colspan='{span}' bgcolor='#dde6ee'><b>handling-mode override</b>: an input with a "
        f"hint uses these rows, except kinds {escape(', '.join(policy.exempt_kinds))}; "
        f"transcript is off for {escape(', '.join(policy.silent_kinds))}</td></tr>"
    )
    rows += [
        _cells(f"hint = {mode}", normal.idle, normal.running, "#fbf6e9")
        for mode, normal, _ in policy.overrides
    ]
    table = (
        "<table border='0' cellborder='1' cellspacing='0' cellpadding='4'>"
        + head
        + "".join(rows)
        + "</table>"
    )
    assert set(DECISION_FIELDS)  # the columns above cover every decision field
    return (
        f"// generated from {policy.file} — edit the spec, not this file.\n"
        "digraph policy {\n"
        f'  graph [{FONT}, label="default policy table (policy_version {policy.version})", labelloc=t, fontsize=16];\n'
        f"  node [{FONT}, fontsize=11];\n"
        f"  table [shape=plaintext, label=<{table}>];\n"
        "}\n"
    )


def render_svg(dot: str, svg: Path) -> None:
    """Render Graphviz source ``dot`` to the file ``svg``."""
    import graphviz

    svg.write_bytes(graphviz.Source(dot).pipe(format="svg"))


# --------------------------------------------------------------------------
# composed model


def composed_dot(c: Composed) -> str:
    """The composed model as its synchronisation table: each action, the
    machine inputs it applies in order, and the invariants and goals."""
    # One step a line, so the table stays narrow.
    steps_of = {
        a.name: "<br align='left'/>".join(escape(_step_text(s)) for s in a.steps)
        for a in c.actions
    }
    rows = "".join(
        f"<tr><td align='left'><b>{escape(a.name)}</b>"
        f"{escape(' (' + ', '.join(a.binds) + ')') if a.binds else ''}</td>"
        f"<td align='left'>{escape(a.when.text if a.when is not None else '')}</td>"
        f"<td align='left'>{steps_of[a.name]}<br align='left'/></td></tr>"
        for a in c.actions
    )
    rows += "".join(
        f"<tr><td align='left'><i>{kind}</i> {escape(name)}</td>"
        f"<td align='left' colspan='2'>{escape(e.text)}</td></tr>"
        for kind, items in (("invariant", c.invariants), ("goal", c.goals))
        for name, e in items
    )
    title = (
        f"{c.runtime.name} x {len(c.names)} {c.input.name} ({', '.join(c.names)})"
        f" x lanes {', '.join(c.lanes)}; runs {', '.join(c.runs)}"
    )
    head = (
        "<tr><td bgcolor='#dde6ee'><b>action</b></td><td bgcolor='#dde6ee'><b>when</b></td>"
        "<td bgcolor='#dde6ee'><b>steps (all or nothing)</b></td></tr>"
    )
    table = (
        "<table border='0' cellborder='1' cellspacing='0' cellpadding='3'>"
        f"{head}{rows}</table>"
    )
    return (
        "// generated from spec/composed.yaml — edit the spec, not this file.\n"
        "digraph composed {\n"
        f"  graph [{FONT}, label={_q('composed model: ' + title)}, labelloc=t, fontsize=16];\n"
        f"  node [{FONT}, fontsize=11];\n"
        f"  table [shape=plaintext, label=<{table}>];\n"
        "}\n"
    )


def _step_text(s: Step) -> str:
    if s.target == "each":
        assert s.call is not None
        assert s.where is not None
        requeue = f", requeue at the {s.op}" if s.op else ""
        return f"each input where {s.where.text}:  {s.call.text}{requeue}"
    if s.call is not None:
        return f"{s.target}: {s.call.text}"
    return f"{s.target} {s.op}"
