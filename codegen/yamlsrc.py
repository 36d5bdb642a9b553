"""YAML with line numbers.

PyYAML's plain loaders forget where a value came from. The spec tools need the
line of every key to point an author at the mistake, so we compose the node
tree ourselves and convert it to plain containers that remember their line:
``Node.value`` is a ``dict``/``list``/scalar and ``Node.line`` is 1-based.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from codegen.errors import SpecError, SpecProblem

Scalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Node:
    """A YAML value and the line it starts on."""

    value: dict[str, Node] | list[Node] | Scalar
    line: int
    key_line: int = 0  # for a mapping value: the line of its key


def load(path: Path, display: str | None = None) -> Node:
    """Parse ``path``; a YAML syntax error becomes a ``SpecError``."""
    name = display or str(path)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise SpecError(
            [SpecProblem(name, line, "yaml", "", f"not valid YAML: {exc.problem}")]
        ) from None
    except OSError as exc:
        raise SpecError(
            [SpecProblem(name, 1, "io", "", f"cannot read: {exc.strerror}")]
        ) from None
    if root is None:
        return Node({}, 1)
    return _convert(root, name)


def _convert(node: yaml.Node, file: str) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        _reject_duplicate_keys(node, file)
        # Resolve `<<: *anchor` merge keys the way PyYAML's constructor does
        # (explicit keys override merged ones), so specs can share templates.
        yaml.SafeLoader("").flatten_mapping(node)
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            converted = _convert(value_node, file)
            key_line = key_node.start_mark.line + 1
            out[str(key_node.value)] = Node(converted.value, converted.line, key_line)
        return Node(out, line)
    if isinstance(node, yaml.SequenceNode):
        return Node([_convert(item, file) for item in node.value], line)
    assert isinstance(node, yaml.ScalarNode)
    value = yaml.SafeLoader.construct_scalar(yaml.SafeLoader(""), node)
    resolved = _resolve_scalar(node, value)
    return Node(resolved, line)


def _resolve_scalar(node: yaml.ScalarNode, text: str) -> Scalar:
    """Apply YAML 1.1's implicit typing (ints, bools, null) as PyYAML would."""
    if node.tag == "tag:yaml.org,2002:int":
        return int(text, 0) if text.lower().startswith("0x") else int(text)
    if node.tag == "tag:yaml.org,2002:bool":
        return text.lower() in ("true", "yes", "on")
    if node.tag == "tag:yaml.org,2002:null":
        return None
    if node.tag == "tag:yaml.org,2002:float":
        return float(text)
    return text


def plain(node: Node) -> object:
    """Strip line numbers (for tests and debugging)."""
    if isinstance(node.value, dict):
        return {k: plain(v) for k, v in node.value.items()}
    if isinstance(node.value, list):
        return [plain(v) for v in node.value]
    return node.value


def _reject_duplicate_keys(node: yaml.MappingNode, file: str) -> None:
    seen: set[str] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        # Keys are names, never data: take the text as written, so YAML 1.1
        # does not turn the key `on:` into the boolean True.
        if not isinstance(key_node, yaml.ScalarNode):
            raise SpecError(
                [
                    SpecProblem(
                        file,
                        key_node.start_mark.line + 1,
                        "yaml",
                        "",
                        "keys must be text",
                    )
                ]
            )
        if key_node.value in seen:
            raise SpecError(
                [
                    SpecProblem(
                        file,
                        key_node.start_mark.line + 1,
                        "duplicate-key",
                        key_node.value,
                        f"key {key_node.value!r} appears twice in one mapping",
                    )
                ]
            )
        seen.add(key_node.value)
