"""Whole-machine checks that need more than one line of the spec.

* every state is reachable from the initial state (ignoring guards);
* a terminal state never leads back to a live one (terminal -> terminal, such
  as stopped -> destroyed, is allowed: "terminal" means no more work);
* for every (state, input) no two transitions can be enabled at once: their
  guards are evaluated over every value of the fields and parameters they read.
"""

from __future__ import annotations

from codegen import expr as ex
from codegen.domains import assignments, field_values, values
from codegen.errors import Problems
from codegen.model import Machine, Transition


def validate_machine(m: Machine, problems: Problems) -> None:
    _check_terminal_exits(m, problems)
    _check_reachability(m, problems)
    _check_determinism(m, problems)


def _check_terminal_exits(m: Machine, problems: Problems) -> None:
    for t in m.transitions:
        for source in t.sources:
            target = t.target_from(source)
            if source in m.terminal and target not in m.terminal:
                problems.add(
                    t.line,
                    "terminal-exit",
                    t.name,
                    f"{m.name}: transition {t.name} leaves terminal state {source!r} "
                    f"for live state {target!r}",
                    m.terminal,
                )


def _check_reachability(m: Machine, problems: Problems) -> None:
    reached = {m.initial}
    frontier = [m.initial]
    while frontier:
        state = frontier.pop()
        for t in m.transitions:
            if state in t.sources and t.target_from(state) not in reached:
                reached.add(t.target_from(state))
                frontier.append(t.target_from(state))
    lines = dict(m.state_lines)
    for state in m.states:
        if state not in reached:
            problems.add(
                lines.get(state, m.line),
                "unreachable-state",
                state,
                f"{m.name}: state {state!r} cannot be reached from {m.initial!r}",
                sorted(reached),
            )


def _check_determinism(m: Machine, problems: Problems) -> None:
    for state in m.states:
        for inp in m.inputs:
            candidates = m.transitions_for(state, inp.name)
            for i, first in enumerate(candidates):
                for second in candidates[i + 1 :]:
                    witness = _overlap(m, first, second)
                    if witness is not None:
                        shown = ", ".join(
                            f"{k}={v}" for k, v in sorted(witness.items())
                        )
                        problems.add(
                            second.line,
                            "nondeterministic",
                            second.name,
                            f"{m.name}: in state {state!r} input {inp.name} enables both "
                            f"{first.name} and {second.name}"
                            + (f" (e.g. {shown})" if shown else "")
                            + "; make their guards exclusive",
                        )


def _overlap(m: Machine, a: Transition, b: Transition) -> dict[str, object] | None:
    """An assignment under which both transitions' guards hold, if any."""
    guards = [m.guard(g).expr for g in (*a.guards, *b.guards)]
    read = sorted(set().union(*(ex.names_used(g) for g in guards)) if guards else set())
    pools = _pools(m, a.on)
    names = [n for n in read if n in pools]
    for env in assignments(names, pools):
        full = {**dict(m.constants), **env}
        if all(ex.evaluate(m.guard(g).expr, full) for g in a.guards) and all(
            ex.evaluate(m.guard(g).expr, full) for g in b.guards
        ):
            return env
    return None


def _pools(m: Machine, on: str) -> dict[str, tuple[object, ...]]:
    pools = {f.name: field_values(f, m) for f in m.fields}
    pools["phase"] = m.states
    pools.update({p.name: values(p.type, m) for p in m.input(on).params})
    return pools
