"""Load ``spec/lifecycle.yaml`` into ``codegen.model`` objects.

Every problem is collected (file, line, name, what would be valid) and the
whole list is raised as one ``SpecError`` at the end, so an author sees all
mistakes in one run. Whole-machine checks (reachability, determinism, exits
from terminal states) live in ``codegen.validate`` and run after this.

This module holds the top level and the machines; the YAML shape checks
are in ``specread`` and the ``types:`` section in ``loader_types``.
"""

from __future__ import annotations

from pathlib import Path

from codegen import expr as ex
from codegen.errors import Problems, SpecError
from codegen.loader_types import literal_fits, load_types, resolve_type
from codegen.model import (
    EffectDef,
    FieldDef,
    InputDef,
    Machine,
    Named,
    Param,
    Spec,
    Transition,
)
from codegen.specread import CAMEL, IDENT, SNAKE, Reader
from codegen.types import (
    BOOL,
    INT,
    EnumT,
    IdT,
    Type,
    assignable,
)
from codegen.yamlsrc import Node, load

# `properties` is read by codegen.properties (the checker's declarations).
TOP_KEYS = ("version", "types", "machines", "properties")
MACHINE_KEYS = (
    "doc",
    "state_type",
    "states",
    "initial",
    "terminal",
    "constants",
    "fields",
    "inputs",
    "effects",
    "guards",
    "invariants",
    "checker",
    "transitions",
    "predicates",
)
TRANSITION_KEYS = ("name", "from", "on", "guards", "set", "emits", "to")
FIELD_KEYS = ("type", "initial", "range")
STATE_KEYS = ("doc", "stored_as", "restore")


def load_spec(path: Path, display: str | None = None) -> Spec:
    """Load, type-check and validate a lifecycle spec, or raise ``SpecError``."""
    from codegen.validate import validate_machine

    file = display or str(path)
    root = load(path, file)
    problems = Problems(file)
    r = Reader(problems)
    top = r.mapping(root, "the spec")
    r.keys(top, TOP_KEYS, "the spec")
    version = top.get("version")
    if version is None or version.value != 1:
        problems.add(
            version.line if version else 1,
            "version",
            str(version and version.value),
            "this tool reads spec version 1",
            ("1",),
        )
    types = load_types(r, top.get("types"))
    machines = []
    for name, node in r.mapping(top.get("machines"), "machines").items():
        machine = _MachineLoader(r, file, types).load(name, node)
        if machine is not None and not problems:
            validate_machine(machine, problems)
        if machine is not None:
            machines.append(machine)
    if not machines and not problems:
        problems.add(root.line, "missing", "machines", "the spec defines no machine")
    if problems:
        raise SpecError(problems.items)
    return Spec(file, tuple(types.values()), tuple(machines))


# --------------------------------------------------------------------------
# machines


class _MachineLoader:
    def __init__(self, r: Reader, file: str, types: dict[str, Type]) -> None:
        self.r = r
        self.p = r.problems
        self.file = file
        self.shared_types = types

    def load(self, name: str, node: Node) -> Machine | None:
        r = self.r
        r.name(name, node.line, SNAKE, "machine")
        body = r.mapping(node, f"machine {name}")
        r.keys(body, MACHINE_KEYS, f"machine {name}")
        state_type_name = (
            r.text(body.get("state_type"), "state_type", node.line) or "State"
        )
        state_nodes = r.mapping(body.get("states"), "states")
        for state, snode in state_nodes.items():
            r.name(state, snode.line, SNAKE, "state")
        state_type = EnumT(state_type_name, tuple(state_nodes))
        self.states = state_type.members
        self.types: dict[str, Type] = {**self.shared_types, state_type_name: state_type}
        initial = self._state(body.get("initial"), "initial", node.line)
        terminal = tuple(
            s
            for s in (
                self._state(t, "terminal", node.line)
                for t in r.seq(body.get("terminal"), "terminal")
            )
            if s
        )
        constants = self._constants(body.get("constants"))
        fields = self._fields(body.get("fields"))
        inputs = tuple(
            InputDef(name, params, line)
            for name, params, line in self._signatures(body.get("inputs"), "input")
        )
        effects = tuple(
            EffectDef(name, params, line)
            for name, params, line in self._signatures(body.get("effects"), "effect")
        )
        self._no_clashes(inputs, effects)
        scope = self._scope(state_type, constants, fields, effects)
        self.inputs = {i.name: i for i in inputs}
        self.scope = scope
        guards = self._named(body.get("guards"), "guard", params_allowed=True)
        invariants = self._named(
            body.get("invariants"), "invariant", params_allowed=False
        )
        self.guard_map = {g.name: g for g in guards}
        transitions = self._transitions(body.get("transitions"))
        used = {g for t in transitions for g in t.guards}
        for guard in guards:
            if guard.name not in used:  # still checked: dead text rots silently
                self._expect_bool(guard.expr, scope, f"guard {guard.name}")
        domains = self._domains(body.get("checker"))
        predicates = self._predicates(body.get("predicates"))
        docs, stored_as, restore = self._state_details(state_nodes, state_type)
        return Machine(
            name=name,
            doc=" ".join(str(body["doc"].value).split()) if "doc" in body else "",
            file=self.file,
            line=node.line,
            state_type=state_type,
            state_docs=docs,
            state_lines=tuple((s, n.key_line) for s, n in state_nodes.items()),
            initial=initial or (self.states[0] if self.states else ""),
            terminal=terminal,
            constants=constants,
            fields=fields,
            inputs=inputs,
            effects=effects,
            guards=guards,
            invariants=invariants,
            transitions=transitions,
            domains=domains,
            predicates=predicates,
            scope=scope,
            stored_as=stored_as,
            restore=restore,
        )

    def _state_details(
        self, nodes: dict[str, Node], state_type: EnumT
    ) -> tuple[
        tuple[tuple[str, str], ...],
        tuple[tuple[str, ex.Expr], ...],
        tuple[tuple[str, tuple[str, ...]], ...],
    ]:
        """A state is its description, or a mapping with ``doc`` and the
        optional ``stored_as`` (an expression of the state type) and
        ``restore`` (inputs without parameters)."""
        docs: list[tuple[str, str]] = []
        stored_as: list[tuple[str, ex.Expr]] = []
        restore: list[tuple[str, tuple[str, ...]]] = []
        for state, node in nodes.items():
            if not isinstance(node.value, dict):
                docs.append((state, str(node.value or "")))
                continue
            body = node.value
            self.r.keys(body, STATE_KEYS, f"state {state}")
            docs.append((state, str(body["doc"].value) if "doc" in body else ""))
            if "stored_as" in body:
                parsed = self._stored_as(state, body["stored_as"], state_type)
                if parsed is not None:
                    stored_as.append((state, parsed))
            if "restore" in body:
                restore.append((state, self._restore(state, body["restore"])))
        return tuple(docs), tuple(stored_as), tuple(restore)

    def _stored_as(self, state: str, node: Node, state_type: EnumT) -> ex.Expr | None:
        parsed = ex.parse(node.value, node.line, self.p)
        if parsed is None:
            return None
        result = ex.check(parsed, self.scope, self.p)
        if result is not None and result != state_type:
            self.p.add(
                node.line,
                "type",
                state,
                f"state {state}: stored_as must be a {state_type.name}, "
                f"`{parsed.text}` is {result}",
            )
            return None
        return parsed

    def _restore(self, state: str, node: Node) -> tuple[str, ...]:
        names = []
        for inode in self.r.seq(node, f"state {state}.restore"):
            name = str(inode.value)
            known = self.inputs.get(name)
            if known is None or known.params:
                self.p.add(
                    inode.line,
                    "unknown-input",
                    name,
                    f"state {state}: restore names {name!r}, not an input "
                    "without parameters",
                    tuple(i for i, d in self.inputs.items() if not d.params),
                )
                continue
            names.append(name)
        return tuple(names)

    def _state(self, node: Node | None, what: str, line: int) -> str | None:
        name = self.r.text(node, what, line)
        if name is None:
            return None
        if name not in self.states:
            self.p.add(
                node.line if node else line,
                "unknown-state",
                name,
                f"{what}: unknown state {name!r}",
                self.states,
            )
            return None
        return name

    def _predicates(self, node: Node | None) -> tuple[tuple[str, tuple[str, ...]], ...]:
        out = []
        for name, pnode in self.r.mapping(node, "predicates").items():
            self.r.name(name, pnode.line, SNAKE, "predicate")
            members = tuple(
                s
                for s in (
                    self._state(n, f"predicate {name}", pnode.line)
                    for n in self.r.seq(pnode, name)
                )
                if s
            )
            out.append((name, members))
        return tuple(out)

    def _constants(self, node: Node | None) -> tuple[tuple[str, int], ...]:
        out = []
        for name, value in self.r.mapping(node, "constants").items():
            if not isinstance(value.value, int) or isinstance(value.value, bool):
                self.p.add(value.line, "type", name, f"constant {name} must be an int")
                continue
            out.append((name, value.value))
        return tuple(out)

    def _fields(self, node: Node | None) -> tuple[FieldDef, ...]:
        out = []
        for name, fnode in self.r.mapping(node, "fields").items():
            self.r.name(name, fnode.line, SNAKE, "field")
            body = self.r.mapping(fnode, f"field {name}")
            self.r.keys(body, FIELD_KEYS, f"field {name}")
            type_node = body.get("type")
            if type_node is None:
                self.p.add(fnode.line, "missing", name, f"field {name} needs a type")
                continue
            ftype = resolve_type(self.r, type_node, self.types)
            initial = body["initial"].value if "initial" in body else None
            if not literal_fits(initial, ftype):
                self.p.add(
                    fnode.line,
                    "type",
                    name,
                    f"initial value {initial!r} of field {name} is not a {ftype}",
                )
            out.append(
                FieldDef(
                    name,
                    ftype,
                    initial,
                    self._range(body.get("range"), name),
                    fnode.line,
                )
            )
        return tuple(out)

    def _range(self, node: Node | None, name: str) -> tuple[int, int] | None:
        if node is None:
            return None
        bounds = [b.value for b in self.r.seq(node, f"{name}.range")]
        if len(bounds) != 2 or not all(isinstance(b, int) for b in bounds):
            self.p.add(node.line, "shape", name, f"range of {name} must be [min, max]")
            return None
        lo, hi = bounds
        assert isinstance(lo, int)
        assert isinstance(hi, int)
        return (lo, hi)

    def _signatures(
        self, node: Node | None, what: str
    ) -> list[tuple[str, tuple[Param, ...], int]]:
        out = []
        for name, snode in self.r.mapping(node, f"{what}s").items():
            self.r.name(name, snode.line, CAMEL, what)
            params = tuple(
                Param(pname, resolve_type(self.r, pnode, self.types))
                for pname, pnode in self.r.mapping(snode, f"{what} {name}").items()
                if self.r.name(pname, pnode.line, SNAKE, "parameter")
            )
            out.append((name, params, snode.line))
        return out

    def _no_clashes(
        self, inputs: tuple[InputDef, ...], effects: tuple[EffectDef, ...]
    ) -> None:
        # Inputs and effects become classes of one generated module.
        input_names = {i.name for i in inputs}
        for effect in effects:
            if effect.name in input_names:
                self.p.add(
                    effect.line,
                    "name-clash",
                    effect.name,
                    f"{effect.name} is both an input and an effect",
                )

    def _scope(
        self,
        state_type: EnumT,
        constants: tuple[tuple[str, int], ...],
        fields: tuple[FieldDef, ...],
        effects: tuple[EffectDef, ...],
    ) -> ex.Scope:
        names: dict[str, ex.Binding] = {"phase": ex.Binding("phase", state_type)}
        names.update({n: ex.Binding("const", INT, v) for n, v in constants})
        names.update({f.name: ex.Binding("field", f.type) for f in fields})
        effect_params = {
            e.name: tuple((p.name, p.type) for p in e.params) for e in effects
        }
        return ex.Scope(names, self.types, effect_params)

    def _named(
        self, node: Node | None, what: str, params_allowed: bool
    ) -> tuple[Named, ...]:
        out = []
        for name, enode in self.r.mapping(node, f"{what}s").items():
            self.r.name(name, enode.line, SNAKE, what)
            parsed = ex.parse(enode.value, enode.line, self.p)
            if parsed is None:
                continue
            if params_allowed:
                # A guard is checked per input that uses it (in _transition).
                out.append(Named(name, parsed))
                continue
            self._expect_bool(parsed, self.scope, f"invariant {name}")
            out.append(Named(name, parsed))
        return tuple(out)

    def _expect_bool(self, parsed: ex.Expr, scope: ex.Scope, what: str) -> None:
        result = ex.check(parsed, scope, self.p)
        if result is not None and result != BOOL:
            self.p.add(
                parsed.line, "type", parsed.text, f"{what} must be a bool, got {result}"
            )

    def _transitions(self, node: Node | None) -> tuple[Transition, ...]:
        seen: dict[str, int] = {}
        out = []
        for tnode in self.r.seq(node, "transitions"):
            transition = self._transition(tnode)
            if transition is None:
                continue
            if transition.name in seen:
                self.p.add(
                    tnode.line,
                    "duplicate-transition",
                    transition.name,
                    f"transition {transition.name!r} is already defined on line "
                    f"{seen[transition.name]}",
                )
                continue
            seen[transition.name] = tnode.line
            out.append(transition)
        return tuple(out)

    def _transition(self, tnode: Node) -> Transition | None:
        r = self.r
        body = r.mapping(tnode, "transition")
        r.keys(body, TRANSITION_KEYS, "a transition")
        name = r.text(body.get("name"), "transition name", tnode.line)
        on = r.text(body.get("on"), f"transition {name}: on", tnode.line)
        if name is None or on is None:
            return None
        r.name(name, tnode.line, SNAKE, "transition")
        if on not in self.inputs:
            self.p.add(
                body["on"].line,
                "unknown-input",
                on,
                f"transition {name}: unknown input {on!r}",
                self.inputs,
            )
            return None
        scope = self._param_scope(on)
        sources = tuple(
            s
            for s in (
                self._state(n, f"transition {name}: from", tnode.line)
                for n in r.seq(body.get("from"), "from")
            )
            if s
        )
        if "from" not in body:
            self.p.add(tnode.line, "missing", name, f"transition {name} needs `from`")
        to_node = body.get("to")
        if to_node is not None and to_node.value == "same":
            target = None
        else:
            target = self._state(to_node, f"transition {name}: to", tnode.line)
        guards = self._guard_refs(name, body.get("guards"), scope)
        sets = self._sets(name, body.get("set"), scope)
        emits = self._emits(name, body.get("emits"), scope)
        return Transition(name, sources, on, guards, sets, emits, target, tnode.line)

    def _param_scope(self, on: str) -> ex.Scope:
        names = dict(self.scope.names)
        for param in self.inputs[on].params:
            names[param.name] = ex.Binding("param", param.type)
        return ex.Scope(names, self.scope.types, self.scope.effects)

    def _guard_refs(
        self, name: str, node: Node | None, scope: ex.Scope
    ) -> tuple[str, ...]:
        out = []
        for gnode in self.r.seq(node, "guards"):
            guard = self.guard_map.get(str(gnode.value))
            if guard is None:
                self.p.add(
                    gnode.line,
                    "unknown-guard",
                    str(gnode.value),
                    f"transition {name}: unknown guard {gnode.value!r}",
                    self.guard_map,
                )
                continue
            self._expect_bool(
                guard.expr, scope, f"guard {guard.name} (in transition {name})"
            )
            out.append(guard.name)
        return tuple(out)

    def _sets(
        self, name: str, node: Node | None, scope: ex.Scope
    ) -> tuple[tuple[str, ex.Expr], ...]:
        fields = {n: b for n, b in self.scope.names.items() if b.kind == "field"}
        out = []
        for fname, vnode in self.r.mapping(node, "set").items():
            if fname not in fields:
                self.p.add(
                    vnode.line,
                    "unknown-field",
                    fname,
                    f"transition {name}: set of unknown field {fname!r}",
                    fields,
                )
                continue
            text = "None" if vnode.value is None else vnode.value
            if isinstance(text, bool):
                text = str(text)
            parsed = ex.parse(text, vnode.line, self.p)
            if parsed is None:
                continue
            result = ex.check(parsed, scope, self.p)
            if result is not None and not assignable(result, fields[fname].type):
                self.p.add(
                    vnode.line,
                    "type",
                    fname,
                    f"transition {name}: {fname} is {fields[fname].type}, "
                    f"`{parsed.text}` is {result}",
                )
            out.append((fname, parsed))
        return tuple(out)

    def _emits(
        self, name: str, node: Node | None, scope: ex.Scope
    ) -> tuple[ex.Expr, ...]:
        out = []
        for enode in self.r.seq(node, "emits"):
            text = enode.value
            if isinstance(text, str) and IDENT.match(text.strip()):
                text = f"{text.strip()}()"  # a bare effect name
            parsed = ex.parse(text, enode.line, self.p)
            if parsed is None:
                continue
            import ast

            if not (
                isinstance(parsed.tree, ast.Call)
                and isinstance(parsed.tree.func, ast.Name)
            ):
                self.p.add(
                    enode.line,
                    "unknown-effect",
                    parsed.text,
                    f"transition {name}: emits must name an effect",
                    self.scope.effects,
                )
                continue
            ex.check(parsed, scope, self.p)
            out.append(parsed)
        return tuple(out)

    def _domains(self, node: Node | None) -> tuple[tuple[str, tuple[object, ...]], ...]:
        checker = self.r.mapping(node, "checker")
        self.r.keys(checker, ("domains",), "checker")
        out = []
        for tname, dnode in self.r.mapping(
            checker.get("domains"), "checker.domains"
        ).items():
            if tname not in ("int", "str") and not isinstance(
                self.types.get(tname), IdT
            ):
                valid = [
                    "int",
                    "str",
                    *(n for n, t in self.types.items() if isinstance(t, IdT)),
                ]
                self.p.add(
                    dnode.line,
                    "unknown-type",
                    tname,
                    f"checker domain for {tname!r}: only int, str and id types take one",
                    valid,
                )
                continue
            out.append((tname, tuple(v.value for v in self.r.seq(dnode, tname))))
        return tuple(out)
