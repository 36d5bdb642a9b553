"""Hypothesis strategies derived from type annotations, for fuzzing admission.

Theory of operation: ``strategy_for(SomeType)`` reads the type the way the
codec does (``msgspec.inspect``: msgspec structs, dataclasses, unions, lists,
enums, ids, free-form ``Any``) and builds a strategy for every field, nested
ones included, so a field added to an input is fuzzed without anyone editing
a generator. With ``wrong=True`` any field may instead hold a hostile value:
another type, a malformed id, text with a lone surrogate, a number JSON
cannot hold, a set, non-text keys, nesting a thousand deep, a value over the
size limit. The runtime's promise, checked by ``tests/driver/test_admission.py``, is
that such an input is either refused with ``ValidationFailed`` naming the
field, or accepted and read back unchanged after a restart.

Needs ``hypothesis`` (the ``dev`` extra); the runtime itself never imports
this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

from meerkat_runtime.driver.validation import DEFAULT_MAX_INPUT_BYTES, MAX_JSON_DEPTH
from meerkat_runtime.ids import MAX_ID_LENGTH, IdempotencyKey, InputId, _TextId
from meerkat_runtime.inputs import (
    INPUT_TYPES,
    AnyImageData,
    ContentBlock,
    ImageBlock,
    Input,
    InputVisibility,
    TextBlock,
)

Strategy = st.SearchStrategy[Any]

WRONG_ODDS = 24
"""With ``wrong=True``, about one field in this many holds a hostile value."""

_SMALL = 3  # list and dict sizes: enough to reach every shape, cheap to run

# Text as a caller would send it: any Unicode but lone surrogates.
_TEXT = st.text(max_size=12)
# Id text: no control characters, and a first character that is not a space
# (so never blank; built, not filtered, which would cost a retry per miss).
_ID_TEXT = st.tuples(
    st.characters(exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp")),
    st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=23),
).map("".join)
_OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@cache
def json_values() -> Strategy:
    """Anything JSON holds exactly: what a free-form field may carry."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        _TEXT,
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=_SMALL),
            st.dictionaries(_TEXT, inner, max_size=_SMALL),
        ),
        max_leaves=8,
    )


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


class _Opaque:
    """A value of no JSON type at all."""

    def __repr__(self) -> str:
        return "_Opaque()"


# One oversized text shared by every draw: cheap to draw, too big to store.
_OVERSIZED = "x" * (DEFAULT_MAX_INPUT_BYTES + 1)


@cache
def hostile_values() -> Strategy:
    """Values no field of an input should carry as they are."""
    leaf = st.one_of(
        st.sampled_from([float("nan"), float("inf"), float("-inf")]),
        st.text(
            st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
            min_size=1,
            max_size=3,
        ),
        st.binary(max_size=4),
        st.sets(st.integers(0, 9), max_size=2),
        st.tuples(st.integers()),
        st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
        st.builds(_Opaque),
    )
    wrapped = st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=2),
            st.dictionaries(_TEXT, inner, min_size=1, max_size=2),
        ),
        max_leaves=3,
    )
    return st.one_of(
        wrapped,
        st.integers(MAX_JSON_DEPTH, 1_100).map(_nested),
        st.just(_OVERSIZED),
        st.none(),
        st.booleans(),
        st.integers(),
        _TEXT,
        st.datetimes(),
        st.sampled_from([InputVisibility(), IdempotencyKey("k")]),
    )


def _bad_ids(cls: type[_TextId]) -> Strategy:
    """Ids of the right type but text no id may have, or of another type."""
    other = InputId if cls is not InputId else IdempotencyKey
    return st.one_of(
        st.sampled_from(["", "  ", "a\nb", "\x7f", "x" * (MAX_ID_LENGTH + 1)]).map(cls),
        _ID_TEXT.map(other),
        _ID_TEXT,
    )


class _Builder:
    """One derivation: remembers struct strategies (types may refer to
    themselves) and the caller's overrides."""

    def __init__(self, wrong: bool, overrides: Mapping[type, Strategy]) -> None:
        self.wrong = wrong
        self.overrides = overrides
        self.structs: dict[type, Strategy] = {}

    def of(self, t: mi.Type) -> Strategy:
        valid = self.valid(t)
        if not self.wrong:
            return valid
        wrong = self.hostile(t)
        # Drawn last, so a failing example shrinks towards valid fields.
        return st.integers(0, WRONG_ODDS).flatmap(
            lambda n: wrong if n == WRONG_ODDS else valid
        )

    def hostile(self, t: mi.Type) -> Strategy:
        if isinstance(t, mi.CustomType) and issubclass(t.cls, _TextId):
            return st.one_of(_bad_ids(t.cls), hostile_values())
        return hostile_values()

    def valid(self, t: mi.Type) -> Strategy:
        simple = self._simple(t)
        if simple is not None:
            return simple
        if isinstance(t, mi.UnionType):
            return st.one_of([self.of(member) for member in t.types])
        if isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
            items = st.lists(self.of(t.item_type), max_size=_SMALL)
            return items.map(_COLLECTIONS[type(t)])
        if isinstance(t, mi.DictType):
            return st.dictionaries(
                self.of(t.key_type), self.of(t.value_type), max_size=_SMALL
            )
        if isinstance(t, mi.TupleType):
            return st.tuples(*[self.of(item) for item in t.item_types])
        if isinstance(t, mi.StructType | mi.DataclassType):
            return self._record(t)
        if isinstance(t, mi.CustomType):
            return self._custom(t.cls)
        raise TypeError(f"no strategy for {t!r}: pass one in overrides")

    def _simple(self, t: mi.Type) -> Strategy | None:
        if isinstance(t, mi.AnyType):
            return json_values()
        if isinstance(t, mi.NoneType):
            return st.none()
        if isinstance(t, mi.BoolType):
            return st.booleans()
        if isinstance(t, mi.IntType):
            return st.integers()
        if isinstance(t, mi.FloatType):
            return st.floats(allow_nan=False, allow_infinity=False)
        if isinstance(t, mi.StrType):
            return _TEXT
        if isinstance(t, mi.BytesType):
            return st.binary(max_size=8)
        if isinstance(t, mi.DateTimeType):
            zones = {None: st.none() | _OFFSETS, True: _OFFSETS, False: st.none()}
            return st.datetimes(timezones=zones[t.tz])
        if isinstance(t, mi.EnumType):
            return st.sampled_from(list(t.cls))
        if isinstance(t, mi.LiteralType):
            return st.sampled_from(list(t.values))
        return None

    def _record(self, t: mi.StructType | mi.DataclassType) -> Strategy:
        if t.cls in self.overrides:
            return self.overrides[t.cls]
        if t.cls not in self.structs:
            # Deferred, so a type that contains itself is built lazily.
            self.structs[t.cls] = st.deferred(lambda: self._fields(t))
        return self.structs[t.cls]

    def _fields(self, t: mi.StructType | mi.DataclassType) -> Strategy:
        fields = {f.name: self.of(f.type) for f in t.fields}
        return st.fixed_dictionaries(fields).map(lambda kw: t.cls(**kw))

    def _image(self) -> Strategy:
        return st.builds(
            ImageBlock,
            media_type=self.of(mi.type_info(str)),
            data=self.of(mi.type_info(AnyImageData)),
        )

    def _custom(self, cls: type) -> Strategy:
        if cls in self.overrides:
            return self.overrides[cls]
        if issubclass(cls, _TextId):
            return _ID_TEXT.map(cls)
        if cls is ContentBlock:  # written through the codec's hooks (T-19)
            return st.one_of(self.valid(mi.type_info(TextBlock)), self._image())
        if cls is ImageBlock:
            return self._image()
        if cls is datetime:
            return st.datetimes(timezones=st.just(UTC))
        return st.from_type(cls)


_COLLECTIONS: dict[type, Callable[[list[Any]], Any]] = {
    mi.ListType: list,
    mi.VarTupleType: tuple,
    mi.SetType: set,
    mi.FrozenSetType: frozenset,
}


def strategy_for(
    tp: Any, *, wrong: bool = False, overrides: Mapping[type, Strategy] | None = None
) -> Strategy:
    """Values of ``tp`` built field by field from its annotations; with
    ``wrong=True`` any field (nested ones included) may hold a hostile
    value instead. ``overrides`` supplies strategies for types it cannot
    derive (or that a test wants to pin)."""
    return _Builder(wrong, overrides or {}).of(mi.type_info(tp))


def inputs(
    *,
    wrong: bool = False,
    kinds: Sequence[type[Input]] = INPUT_TYPES,
    overrides: Mapping[type, Strategy] | None = None,
) -> st.SearchStrategy[Input]:
    """Inputs of the given kinds (all six by default), every field derived."""
    builder = _Builder(wrong, overrides or {})
    return st.one_of([builder.valid(mi.type_info(kind)) for kind in kinds])


Step = str | int  # a struct field's name, or a list index


def one_field_hostile(
    *,
    kinds: Sequence[type[Input]] = INPUT_TYPES,
    overrides: Mapping[type, Strategy] | None = None,
) -> st.SearchStrategy[tuple[Input, str]]:
    """(input, path): a well-formed input with exactly one field, anywhere
    in it (nested structs and list items included), replaced by a hostile
    value; ``path`` names that field as ``ValidationFailed`` would
    (``turn_metadata.skill_references[0]``). If the input is refused, it
    must be for that field."""
    return inputs(kinds=kinds, overrides=overrides).flatmap(_spoiled)


def _spoiled(inp: Input) -> st.SearchStrategy[tuple[Input, str]]:
    def at(steps: tuple[Step, ...]) -> st.SearchStrategy[tuple[Input, str]]:
        current = _at(inp, steps)
        bad = (
            _bad_ids(type(current))
            if isinstance(current, _TextId)
            else hostile_values()
        )
        return bad.map(lambda value: (_replaced(inp, steps, value), _path(steps)))

    return st.sampled_from(list(_slots(inp, ()))).flatmap(at)


def _slots(value: object, steps: tuple[Step, ...]) -> Iterator[tuple[Step, ...]]:
    """Every place a value sits: struct fields and list items, nested."""
    if isinstance(value, msgspec.Struct):
        children: Iterable[tuple[Step, object]] = (
            (name, getattr(value, name)) for name in value.__struct_fields__
        )
    elif isinstance(value, list):
        children = enumerate(value)
    else:
        return
    for step, child in children:
        yield (*steps, step)
        yield from _slots(child, (*steps, step))


def _at(value: object, steps: tuple[Step, ...]) -> object:
    for step in steps:
        value = value[step] if isinstance(step, int) else getattr(value, step)  # type: ignore[index]
    return value


def _replaced(value: Any, steps: tuple[Step, ...], new: object) -> Any:
    if not steps:
        return new
    step, rest = steps[0], steps[1:]
    if isinstance(step, int):
        items = list(value)
        items[step] = _replaced(items[step], rest, new)
        return items
    child = _replaced(getattr(value, step), rest, new)
    return msgspec.structs.replace(value, **{step: child})


def _path(steps: tuple[Step, ...]) -> str:
    text = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps)
    return text.lstrip(".")


__all__ = [
    "WRONG_ODDS",
    "hostile_values",
    "inputs",
    "json_values",
    "one_field_hostile",
    "strategy_for",
]
