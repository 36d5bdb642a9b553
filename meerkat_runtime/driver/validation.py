"""Admission checks on a caller's input, before anything is recorded.

Theory of operation: ``check_structure`` is the edge where untrusted values
enter, and its rule is that nothing is acknowledged that could
not be read back. So the check *is* the read: the input is encoded exactly as
a store would write it, and the encoding is decoded again by the strict typed
decoder the stores use (plus the id rules of ``ids.id_problem``). A value the
decoder refuses, or one that comes back different from what the caller
handed over (a set that would return as a list, NaN that would return as
null, a text where an id belongs), is refused with ``ValidationFailed``
naming the field. Two limits bound what the round trip itself could not:
the encoded size (``max_input_bytes``) and the nesting of free-form JSON
fields (``MAX_JSON_DEPTH``), so neither the check nor a later recovery can
run out of stack. Everything below ``check_structure`` but ``_too_deep``
runs only to explain a refusal.

``durability_violation`` and ``peer_mode_violation`` are upstream's two
*rejections* (A-2, A-3): legal values the runtime refuses, answered with
``AcceptOutcome.Rejected``.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
import msgspec.inspect as mi

from meerkat_runtime import codec
from meerkat_runtime.errors import ValidationFailedError
from meerkat_runtime.inputs import (
    INPUT_TYPES,
    External,
    FlowStepInput,
    ImageBlock,
    Input,
    InputDurability,
    Operator,
    PeerInput,
    PeerOrigin,
    PeerResponseProgress,
    PromptInput,
)

DEFAULT_MAX_INPUT_BYTES = 1024 * 1024
"""The default limit on one input's encoded JSON, in bytes (README "Limits")."""
MAX_JSON_DEPTH = 64
"""The most arrays/objects nested in one free-form field (``payload`` ...)."""

_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {
    kind: codec.admission_decoder(kind) for kind in INPUT_TYPES
}
# What encoding a caller's value can raise: an object with no JSON form, a
# lone surrogate (UnicodeEncodeError is a ValueError), nesting past the stack.
_ENCODE_ERRORS = (
    msgspec.EncodeError,
    NotImplementedError,
    TypeError,
    ValueError,
    OverflowError,
    RecursionError,
)


def check_structure(inp: object, max_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> Input:
    """The input itself if it reads back equal from its encoding and fits the
    limits; else ``ValidationFailed`` naming the field."""
    kind = type(inp)
    if kind not in _DECODERS:
        kinds = ", ".join(t.__name__ for t in INPUT_TYPES)
        raise ValidationFailedError(
            f"input: unknown kind {kind.__name__} (expected one of {kinds})"
        )
    assert isinstance(inp, Input)
    try:
        encoded = codec.encode(inp)
    except _ENCODE_ERRORS:
        raise ValidationFailedError(_unencodable(inp)) from None
    if len(encoded) > max_bytes:
        raise ValidationFailedError(
            f"{_largest_field(inp, '')}: input exceeds the size limit "
            f"({len(encoded)} bytes encoded, limit {max_bytes})"
        )
    deep = _too_deep(inp, "")
    if deep is not None:
        raise ValidationFailedError(
            f"{deep}: nested deeper than {MAX_JSON_DEPTH} levels"
        )
    try:
        stored = _DECODERS[kind].decode(encoded)
    except msgspec.ValidationError as exc:
        raise ValidationFailedError(_decoder_reason(exc)) from None
    except RecursionError:  # skipping an unknown key nested past the stack
        raise ValidationFailedError(_unencodable(inp)) from None
    if stored != inp:
        raise ValidationFailedError(_difference(inp, stored, ""))
    return inp


# ---------------------------------------------------------------- free-form depth


def _free_form_plan() -> dict[type, tuple[str, ...]]:
    """For each struct type inside an input, the fields through which a
    free-form (``Any``) value can be reached: only these nest without bound."""
    plan: dict[type, tuple[str, ...]] = {}

    def reaches_any(t: mi.Type) -> bool:
        if isinstance(t, mi.AnyType):
            return True
        if isinstance(t, mi.UnionType):
            # Every member is visited (no short cut), so each gets its plan.
            reached = [reaches_any(member) for member in t.types]
            return any(reached)
        if isinstance(t, mi.ListType):
            return reaches_any(t.item_type)
        if isinstance(t, mi.StructType):
            if t.cls not in plan:
                plan[t.cls] = ()  # a type that refers to itself ends here
                plan[t.cls] = tuple(f.name for f in t.fields if reaches_any(f.type))
            return bool(plan[t.cls])
        return False

    for kind in INPUT_TYPES:
        reaches_any(mi.type_info(kind))
    return {cls: names for cls, names in plan.items() if names}


_FREE_FORM = _free_form_plan()


def _too_deep(value: object, path: str) -> str | None:
    """The path of a free-form field nested past ``MAX_JSON_DEPTH``, if any.
    (Struct fields are followed by name, so a deep one is named exactly.)"""
    for name in _FREE_FORM.get(type(value), ()):
        field = getattr(value, name)
        if field is None:  # the common case: an optional field left out
            continue
        if type(field) in _FREE_FORM:
            found = _too_deep(field, _join(path, name))
            if found is not None:
                return found
        elif _nesting_exceeds(field, MAX_JSON_DEPTH):
            return _join(path, name)
    return None


# Values with named fields: structs, and the image block (a value class, as
# its wire form is flat: T-19).
_RECORDS = (msgspec.Struct, ImageBlock)
_NESTING = (list, tuple, dict, set, frozenset, *_RECORDS)


def _field_names(record: Any) -> tuple[str, ...]:
    if isinstance(record, ImageBlock):
        return ImageBlock.FIELDS
    return record.__struct_fields__  # type: ignore[no-any-return]


def _nesting_exceeds(value: object, limit: int) -> bool:
    """Level by level, without recursion: a value nested a thousand deep
    must be measured, not overflow the stack measuring it."""
    level = [value] if isinstance(value, _NESTING) else []
    for _ in range(limit):
        children: list[object] = []
        for item in level:
            children.extend(_members(item))
        level = [child for child in children if isinstance(child, _NESTING)]
        if not level:
            return False
    return bool(level)


def _members(container: Any) -> Iterable[object]:
    if isinstance(container, dict):
        return container.values()
    if isinstance(container, _RECORDS):
        return [getattr(container, name) for name in _field_names(container)]
    return container  # type: ignore[no-any-return]


# ---------------------------------------------------------------- explaining a refusal


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _children(value: object) -> Iterator[tuple[str, object]]:
    """(path step, child) of a container; a set's members have no index."""
    if isinstance(value, _RECORDS):
        for name in _field_names(value):
            yield f".{name}", getattr(value, name)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f".{key}", item
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield f"[{index}]", item
    elif isinstance(value, set | frozenset):
        for item in value:
            yield "", item


def _step(path: str, step: str) -> str:
    return (path + step).lstrip(".")


def _unencodable(inp: Input) -> str:
    """What made the encoder give up, and where."""
    found = _first_unencodable(inp, "", "", 0)
    return found if found is not None else "input: cannot be encoded as JSON"


def _first_unencodable(value: object, path: str, field: str, depth: int) -> str | None:
    """``field`` is the struct field ``value`` lies in: nesting is counted,
    and reported, from there."""
    where = path or "input"
    if depth > MAX_JSON_DEPTH:
        return f"{field or 'input'}: nested deeper than {MAX_JSON_DEPTH} levels"
    if not isinstance(value, _NESTING):
        return _leaf_problem(value, where)
    for key in value if isinstance(value, dict) else ():
        problem = _leaf_problem(key, where) if isinstance(key, str) else "is not text"
        if problem is not None:
            return f"{where}: key {_show(key)} {problem.partition(': ')[2] or problem}"
    struct = isinstance(value, _RECORDS)
    for step, child in _children(value):
        child_path = _step(path, step)
        found = _first_unencodable(
            child,
            child_path,
            child_path if struct else field,
            0 if struct else depth + 1,
        )
        if found is not None:
            return found
    return None


def _leaf_problem(value: object, where: str) -> str | None:
    try:
        codec.encode(value)
    except UnicodeEncodeError as exc:  # a lone surrogate, in text or an id
        return f"{where}: not valid text ({exc.reason} at position {exc.start})"
    except _ENCODE_ERRORS:
        return f"{where}: {type(value).__name__} cannot be encoded as JSON"
    return None


def _largest_field(value: object, path: str) -> str:
    """The field holding most of an oversized input, followed down through
    structs and lists (free-form values are named whole)."""
    if not isinstance(value, (*_RECORDS, list)) or not value:
        return path or "input"
    step, child = max(_children(value), key=lambda c: _encoded_size(c[1]))
    return _largest_field(child, _step(path, step))


def _encoded_size(value: object) -> int:
    try:
        return len(codec.encode(value))
    except _ENCODE_ERRORS:
        return 0


_AT = re.compile(r"(.*) - at `\$(.*?)`", re.DOTALL)


def _decoder_reason(exc: msgspec.ValidationError) -> str:
    """msgspec's "Expected `str`, got `int` - at `$.text`" as "text: expected
    `str`, got `int`". A value the codec reads through a hook (an image
    block) adds its inner path first: "... - at `$.data` - at `$.blocks[0]`"
    is "blocks[0].data"."""
    problem, path = str(exc), ""
    while (match := _AT.fullmatch(problem)) is not None:  # the outermost first
        problem, step = match.groups()
        path += step
    if problem == str(exc):
        return f"input: {exc}"
    return f"{path.lstrip('.') or 'input'}: {problem[:1].lower()}{problem[1:]}"


_JSON_TYPES = (dict, list, str, int, float, bool, type(None))


def _difference(given: object, stored: object, path: str) -> str:
    """Where ``given`` and its read-back first differ, and how."""
    where = path or "input"
    if isinstance(given, dict):
        for key in given:
            if not isinstance(key, str):
                return f"{where}: key {_show(key)} is not text"
    if type(given) is type(stored):
        for step, a, b in _paired(given, stored):
            if a != b:
                return _difference(a, b, _step(path, step))
        return f"{where}: {_show(given)} would read back as {_show(stored)}"
    if isinstance(given, float) and not math.isfinite(given):
        return f"{where}: {given} is not a JSON number"
    if isinstance(stored, _JSON_TYPES) and not isinstance(given, _JSON_TYPES):
        return (
            f"{where}: {type(given).__name__} is not a JSON value "
            f"(it would read back as {type(stored).__name__})"
        )
    return f"{where}: expected {type(stored).__name__}, got {type(given).__name__}"


def _paired(given: object, stored: object) -> Iterator[tuple[str, object, object]]:
    """(path step, given child, stored child) of two values of one type."""
    if isinstance(given, dict) and isinstance(stored, dict):
        for key, item in given.items():
            if key in stored:
                yield f".{key}", item, stored[key]
    elif isinstance(given, (*_RECORDS, list)):
        if isinstance(given, list) and len(given) != len(stored):  # type: ignore[arg-type]
            return
        yield from (
            (step, a, b)
            for (step, a), (_, b) in zip(
                _children(given), _children(stored), strict=False
            )
        )


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 40


def _show(value: object) -> str:
    return f"{type(value).__name__} {_SHORT.repr(value)}"


# ---------------------------------------------------------------- rejections


_EXTERNAL_ORIGINS = (Operator, PeerOrigin, External)
_DERIVED_FORBIDDEN = (PromptInput, FlowStepInput)


def durability_violation(inp: Input) -> str | None:
    """T-10..T-13: only ``derived`` is ever refused. Decision 11: the kind in
    the message is the plain kind id (``peer_message``, not doubled)."""
    if inp.header.durability is not InputDurability.DERIVED:
        return None
    if isinstance(inp.header.source, _EXTERNAL_ORIGINS):
        return "External ingress cannot submit derived inputs"
    if isinstance(inp, _DERIVED_FORBIDDEN):
        return f"Derived durability forbidden for {inp.kind_id()}"
    if (
        isinstance(inp, PeerInput)
        and inp.convention is not None
        and not isinstance(inp.convention, PeerResponseProgress)
    ):
        return f"Derived durability forbidden for {inp.kind_id()}"
    return None


def peer_mode_violation(inp: Input) -> str | None:
    """T-14: only a ResponseProgress peer may not carry a handling mode."""
    if (
        isinstance(inp, PeerInput)
        and inp.handling_mode is not None
        and isinstance(inp.convention, PeerResponseProgress)
    ):
        return "handling_mode is forbidden on ResponseProgress peer inputs"
    return None
