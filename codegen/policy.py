"""Load and validate ``spec/policy.yaml``; render the default policy table.

The table is data: every (kind, idle) decision is precomputed into the
generated module, so resolving a policy at accept time is one dict lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from codegen.errors import Problems, SpecError
from codegen.render import header, member
from codegen.yamlsrc import Node, load

DECISION_FIELDS = (
    "apply_mode",
    "wake_mode",
    "queue_mode",
    "consume_point",
    "drain_policy",
    "routing_disposition",
)
# Row keys in the YAML, and the decision field each one sets.
ROW_KEYS = {
    "apply": "apply_mode",
    "queue": "queue_mode",
    "consume": "consume_point",
    "drain": "drain_policy",
    "routing": "routing_disposition",
}
# T-3: the nine kind ids the default table must cover.
KIND_IDS = (
    "prompt",
    "peer_message",
    "peer_request",
    "peer_response_progress",
    "peer_response_terminal",
    "flow_step",
    "external_event",
    "continuation",
    "operation",
)
HANDLING_MODES = ("queue", "steer")


@dataclass(frozen=True, slots=True)
class Decision:
    """One fully resolved PolicyDecision (enum values as spec text)."""

    apply_mode: str
    wake_mode: str
    queue_mode: str
    consume_point: str
    drain_policy: str
    routing_disposition: str
    record_transcript: bool

    def values(self) -> tuple[str, ...]:
        return tuple(getattr(self, f) for f in DECISION_FIELDS)


@dataclass(frozen=True, slots=True)
class Row:
    """A row: the decision when idle and when running."""

    idle: Decision
    running: Decision


@dataclass(frozen=True, slots=True)
class Policy:
    file: str
    version: int
    enums: tuple[tuple[str, tuple[str, ...]], ...]
    kinds: tuple[tuple[str, Row], ...]
    fallback: Row
    exempt_kinds: tuple[str, ...]
    silent_kinds: tuple[str, ...]
    overrides: tuple[tuple[str, Row, Row], ...]  # (mode, normal row, silent row)


class _PolicyLoader:
    def __init__(self, file: str) -> None:
        self.p = Problems(file)
        self.enums: dict[str, tuple[str, ...]] = {}

    def mapping(self, node: Node | None, what: str, line: int) -> dict[str, Node]:
        if node is None:
            self.p.add(line, "missing", what, f"{what} is required")
            return {}
        if not isinstance(node.value, dict):
            self.p.add(node.line, "shape", what, f"{what} must be a mapping")
            return {}
        return node.value

    def load(self, root: Node) -> Policy:
        top = self.mapping(root, "the policy", 1)
        allowed = (
            "version",
            "policy_version",
            "enums",
            "kinds",
            "fallback",
            "handling_mode_override",
        )
        for key, node in top.items():
            if key not in allowed:
                self.p.add(
                    node.line, "unknown-key", key, f"unknown key {key!r}", allowed
                )
        self._enums(top.get("enums"), root.line)
        kinds = self._kinds(top.get("kinds"), root.line)
        fallback = self._row(
            top.get("fallback"), "fallback", root.line, transcript=None
        )
        override = self.mapping(
            top.get("handling_mode_override"), "handling_mode_override", root.line
        )
        exempt = self._kind_list(override.get("exempt_kinds"), "exempt_kinds")
        silent = self._kind_list(override.get("silent_kinds"), "silent_kinds")
        overrides = []
        for mode in HANDLING_MODES:
            normal = self._row(
                override.get(mode), f"override {mode}", root.line, transcript=True
            )
            quiet = self._row(
                override.get(mode), f"override {mode}", root.line, transcript=False
            )
            overrides.append((mode, normal, quiet))
        for key, node in override.items():
            if key not in (*HANDLING_MODES, "exempt_kinds", "silent_kinds"):
                self.p.add(
                    node.line,
                    "unknown-key",
                    key,
                    f"unknown key {key!r} in handling_mode_override",
                    (*HANDLING_MODES, "exempt_kinds", "silent_kinds"),
                )
        file_version = top.get("version")
        if file_version is None or file_version.value != 1:
            self.p.add(
                file_version.line if file_version else root.line,
                "version",
                str(file_version.value if file_version else None),
                "this tool reads policy version 1",
                ("1",),
            )
        version = top.get("policy_version")
        number = version.value if version is not None else None
        if not isinstance(number, int) or isinstance(number, bool):
            self.p.add(
                root.line, "missing", "policy_version", "policy_version must be an int"
            )
            number = 1
        if self.p:
            raise SpecError(self.p.items)
        return Policy(
            self.p.file,
            number,
            tuple(self.enums.items()),
            tuple(kinds),
            fallback,
            exempt,
            silent,
            tuple(overrides),
        )

    def _enums(self, node: Node | None, line: int) -> None:
        body = self.mapping(node, "enums", line)
        for name in DECISION_FIELDS:
            if name not in body:
                self.p.add(line, "missing", name, f"enums.{name} is required")
                continue
            items = body[name].value
            if not isinstance(items, list) or not items:
                self.p.add(
                    body[name].line, "shape", name, f"enums.{name} must list values"
                )
                continue
            self.enums[name] = tuple(str(i.value) for i in items)
        for name, extra in body.items():
            if name not in DECISION_FIELDS:
                self.p.add(
                    extra.line,
                    "unknown-key",
                    name,
                    f"unknown enum {name!r}",
                    DECISION_FIELDS,
                )

    def _kinds(self, node: Node | None, line: int) -> list[tuple[str, Row]]:
        body = self.mapping(node, "kinds", line)
        out = []
        for kind in KIND_IDS:
            if kind not in body:
                self.p.add(
                    node.key_line if node is not None else line,
                    "missing-kind",
                    kind,
                    f"kinds.{kind} is required (T-3)",
                    KIND_IDS,
                )
        for kind, row in body.items():
            if kind not in KIND_IDS:
                self.p.add(
                    row.line,
                    "unknown-kind",
                    kind,
                    f"unknown kind id {kind!r}",
                    KIND_IDS,
                )
                continue
            out.append((kind, self._row(row, f"kind {kind}", line, transcript=None)))
        return out

    def _kind_list(self, node: Node | None, what: str) -> tuple[str, ...]:
        if node is None or not isinstance(node.value, list):
            self.p.add(
                node.line if node else 1,
                "shape",
                what,
                f"{what} must be a list of kind ids",
            )
            return ()
        out = []
        for item in node.value:
            if item.value not in KIND_IDS:
                self.p.add(
                    item.line,
                    "unknown-kind",
                    str(item.value),
                    f"{what}: unknown kind id",
                    KIND_IDS,
                )
            else:
                out.append(str(item.value))
        return tuple(out)

    def _row(
        self, node: Node | None, what: str, line: int, transcript: bool | None
    ) -> Row:
        body = self.mapping(node, what, line)
        here = node.line if node else line
        allowed = (*ROW_KEYS, "wake", *(["transcript"] if transcript is None else []))
        for key, value in body.items():
            if key not in allowed:
                self.p.add(
                    value.line,
                    "unknown-key",
                    key,
                    f"{what}: unknown key {key!r}",
                    allowed,
                )
        values = {
            field: self._value(body.get(key), field, what, here)
            for key, field in ROW_KEYS.items()
        }
        wake = self.mapping(body.get("wake"), f"{what}: wake", here)
        record = transcript
        if record is None:
            raw = body.get("transcript")
            if raw is None or not isinstance(raw.value, bool):
                self.p.add(
                    here, "shape", what, f"{what}: transcript must be true or false"
                )
            record = bool(raw.value) if raw is not None else True
        idle = Decision(
            wake_mode=self._value(wake.get("idle"), "wake_mode", what, here),
            record_transcript=record,
            **values,
        )
        running = Decision(
            wake_mode=self._value(wake.get("running"), "wake_mode", what, here),
            record_transcript=record,
            **values,
        )
        return Row(idle, running)

    def _value(self, node: Node | None, field: str, what: str, line: int) -> str:
        allowed = self.enums.get(field, ())
        if node is None:
            self.p.add(line, "missing", field, f"{what}: {field} is required", allowed)
            return allowed[0] if allowed else ""
        text = "none" if node.value is None else str(node.value)
        if text not in allowed:
            self.p.add(
                node.line,
                "unknown-value",
                text,
                f"{what}: {text!r} is not a {field}",
                allowed,
            )
        return text


def load_policy(path: Path, display: str | None = None) -> Policy:
    file = display or str(path)
    return _PolicyLoader(file).load(load(path, file))


def _decision_source(d: Decision, version: int) -> str:
    parts = [
        f"{field}={_enum_class(field)}.{member(value)}"
        for field, value in zip(DECISION_FIELDS, d.values(), strict=True)
    ]
    parts.append(f"record_transcript={d.record_transcript}")
    parts.append(f"emit_operator_content={d.record_transcript}")  # P-2
    parts.append(f"policy_version={version}")
    return "PolicyDecision(" + ", ".join(parts) + ")"


def _enum_class(field: str) -> str:
    return "".join(part.capitalize() for part in field.split("_"))


def render_policy(policy: Policy, env: jinja2.Environment) -> str:
    v = policy.version

    def row(r: Row) -> tuple[str, str]:
        return (_decision_source(r.idle, v), _decision_source(r.running, v))

    return env.get_template("policy_table.py.j2").render(
        header=header(policy.file),
        version=v,
        enums=[
            (_enum_class(name), [(member(x), x) for x in values])
            for name, values in policy.enums
        ],
        kinds=[(kind, *row(r)) for kind, r in policy.kinds],
        fallback=row(policy.fallback),
        exempt=policy.exempt_kinds,
        silent=policy.silent_kinds,
        overrides=[
            (member(mode), *row(normal), *row(quiet))
            for mode, normal, quiet in policy.overrides
        ],
    )
