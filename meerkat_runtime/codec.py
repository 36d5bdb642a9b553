"""One JSON codec for every value type.

Theory of operation: value types are frozen msgspec structs (``Value``) whose
tagged unions use upstream's tag names (``input_type``, ``outcome_type``,
``event_type`` ...). Ids are not msgspec-native, so the hooks below write them
as their bare text and wrap them back on the way in. ``Value.to_json()`` and
``X.from_json()`` go through here; so do the stores, so a record written by one
tool is readable by another.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, Protocol, Self, TypeVar, Union, cast

import msgspec

from meerkat_runtime.ids import _TextId, id_problem, id_types

T = TypeVar("T")

# Mutable types that travel inside values (InputState inside AcceptOutcome):
# class -> (to a msgspec-encodable value, from decoded builtins).
_CUSTOM: dict[type, tuple[Callable[[Any], object], Callable[[Any], object]]] = {}


def register_custom(
    cls: type, to_wire: Callable[[Any], object], from_wire: Callable[[Any], object]
) -> None:
    """Teach the codec a non-struct type (called once, at import of ``cls``)."""
    _CUSTOM[cls] = (to_wire, from_wire)


class Converter(Protocol):
    """Decodes a part of a custom value's wire form (builtins) into ``target``
    with the decoder's own hook, so the part is read as strictly as a field."""

    def __call__(self, raw: object, target: type[T]) -> T: ...


# Custom types whose wire form spreads one of their fields' values into
# their own object (a union flattened into a struct, T-19): class -> reader.
_FLATTENED: dict[type, Callable[[Any, Converter], object]] = {}
_FLAT_WRITERS: dict[type, Callable[[Any], object]] = {}


def register_flattened(
    cls: type,
    from_wire: Callable[[Any, Converter], object],
    to_wire: Callable[[Any], object] | None = None,
) -> None:
    """Teach the codec a type whose reader decodes parts of its wire form
    through ``Converter`` (called once, at import of ``cls``). ``to_wire``
    is needed only for a class that is itself written."""
    _FLATTENED[cls] = from_wire
    if to_wire is not None:
        _FLAT_WRITERS[cls] = to_wire


def _enc_hook(obj: object) -> object:
    if isinstance(obj, _TextId):
        return str(obj)
    custom = _CUSTOM.get(type(obj))
    if custom is not None:
        return custom[0](obj)
    writer = _FLAT_WRITERS.get(type(obj))
    if writer is not None:
        return writer(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__} as JSON")


def _dec_hook(target: type, obj: object) -> object:
    # Ids come first and by exact type: two per stored input, so this hook
    # is on recovery's path 200k times for 100k inputs.
    if type(obj) is str and target in _ID_TYPES:
        return target._from_text(obj)
    if isinstance(target, type) and issubclass(target, _TextId):
        if not isinstance(obj, str):
            raise TypeError(f"expected text for {target.__name__}")
        return target(obj)
    custom = _CUSTOM.get(target)
    if custom is not None:
        return custom[1](obj)
    flattened = _FLATTENED.get(target)
    if flattened is not None:
        return flattened(obj, _convert_stored)
    raise NotImplementedError(f"cannot decode {target!r}")


def _admission_hook(target: type, obj: object) -> object:
    """``_dec_hook`` plus the rules a caller's id must meet (``id_problem``).
    Only admission decodes with it: a record already stored is read back
    whatever an older version admitted."""
    if type(obj) is str and target in _ID_TYPES:
        problem = id_problem(obj)
        if problem is not None:
            raise ValueError(problem)
    flattened = _FLATTENED.get(target)
    if flattened is not None:
        return flattened(obj, _convert_admitted)
    return _dec_hook(target, obj)


def _convert_stored(raw: object, target: type[T]) -> T:
    converted: T = msgspec.convert(
        raw, _wire_type(cast(Any, target)), dec_hook=_dec_hook
    )
    return converted


def _convert_admitted(raw: object, target: type[T]) -> T:
    converted: T = msgspec.convert(
        raw, _wire_type(cast(Any, target)), dec_hook=_admission_hook
    )
    return converted


_ID_TYPES = frozenset(id_types())
_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode(value: object) -> bytes:
    """JSON bytes of any value type (or a container of them)."""
    return _ENCODER.encode(value)


def decoder(target: type[T]) -> msgspec.json.Decoder[T]:
    """A reusable decoder for one type (for bulk decoding: building a
    decoder is a real share of decoding one stored input, so build it once)."""
    return msgspec.json.Decoder(_wire_type(cast(Any, target)), dec_hook=_dec_hook)


def admission_decoder(target: type[T]) -> msgspec.json.Decoder[T]:
    """A strict decoder for one type that also refuses malformed ids: what a
    caller's value must survive before it is acknowledged."""
    return msgspec.json.Decoder(_wire_type(cast(Any, target)), dec_hook=_admission_hook)


def decode(data: bytes | str, target: type[T]) -> T:
    """Decode JSON into ``target``; a union base decodes into its variants.

    Raises ``msgspec.ValidationError`` (naming the offending path) or
    ``msgspec.DecodeError`` on malformed input.
    """
    wire: Any = _wire_type(cast(Any, target))
    decoded: T = msgspec.json.decode(data, type=wire, dec_hook=_dec_hook)
    return decoded


@contextmanager
def gc_paused() -> Iterator[None]:
    """Bulk decoding allocates hundreds of thousands of objects that cannot
    form cycles; letting the cycle collector scan the growing heap meanwhile
    costs about as much as the decoding, for nothing (recovery's case)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def to_builtins(value: object) -> Any:
    """Plain dicts/lists/strings, as the JSON would hold them."""
    return msgspec.to_builtins(value, enc_hook=_enc_hook)


@cache
def _wire_type(target: Any) -> Any:
    """A union base class decodes as the union of its concrete variants."""
    variants = _leaf_variants(target)
    if not variants or variants == [target]:
        return target
    return Union[tuple(variants)]  # noqa: UP007 - built from a runtime tuple


def _leaf_variants(target: type) -> list[type]:
    if not (isinstance(target, type) and issubclass(target, msgspec.Struct)):
        return []
    config = target.__struct_config__
    # A variant carries an explicit tag (``tag="prompt"``); a union base only
    # msgspec's default tag, its class name. A subclass of a variant never
    # replaces the variant it specialises.
    if config.tag is not None and config.tag != target.__name__:
        return [target]
    found: list[type] = []
    for sub in target.__subclasses__():
        found += _leaf_variants(sub)
    return found or [target]


class Value(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of immutable value types: keyword construction, JSON round trip."""

    def to_json(self) -> bytes:
        return encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        return decode(data, cls)
