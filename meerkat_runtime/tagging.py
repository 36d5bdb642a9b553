"""Unions written externally tagged, the way serde writes a Rust enum.

Theory of operation: the codec's struct unions carry their tag in a field
(``{"outcome_type": "consumed"}``). Upstream writes some enums with the tag
as the value itself: a variant without fields is its bare name (``"reset"``),
one with fields a one-key object (``{"max_attempts_exhausted": {"attempts":
3}}``, L-12). msgspec cannot give a struct that shape, so such a union is a
small frozen, slotted value class that the codec writes and reads through its
custom-type hooks (``codec.register_custom``). A variant's fields are decoded
strictly, through a struct built from its annotations.

A union may also name the tag field that records of an earlier format used
(``legacy_tag_field``): a record in that form is still read, and is written
back in the new form the next time it is stored (PD-23).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self, dataclass_transform, get_type_hints

import msgspec

from meerkat_runtime import codec


@dataclass_transform(kw_only_default=True, frozen_default=True)
class ExternallyTagged:
    """Base of an externally tagged union. The union's class is declared with
    ``legacy_tag_field=`` if any; each variant with ``tag=`` and a
    ``__slots__`` naming its fields (annotated as usual)."""

    __slots__ = ()

    wire_tag: ClassVar[str]
    _fields: ClassVar[tuple[str, ...]]
    _union: ClassVar[type[ExternallyTagged]]
    _variants: ClassVar[dict[str, type[ExternallyTagged]]]
    _legacy_tag_field: ClassVar[str | None]

    def __init_subclass__(
        cls, *, tag: str | None = None, legacy_tag_field: str | None = None
    ) -> None:
        super().__init_subclass__()
        if tag is None:  # the union itself
            cls._union, cls._variants = cls, {}
            cls._legacy_tag_field = legacy_tag_field
        else:
            slots = cls.__dict__.get("__slots__")
            if not isinstance(slots, tuple):
                raise TypeError(f"variant {cls.__name__} must declare __slots__")
            cls.wire_tag, cls._fields = tag, slots
            cls._variants[tag] = cls
        codec.register_custom(cls, _to_wire, lambda raw: _from_wire(cls, raw))

    def __init__(self, **values: object) -> None:
        cls = type(self)
        if "wire_tag" not in cls.__dict__:
            raise TypeError(
                f"{cls.__name__} is a union; build one of its variants: "
                + ", ".join(
                    f"{cls.__name__}.{v.__name__}()" for v in cls._variants.values()
                )
            )
        unknown = sorted(values.keys() - set(cls._fields))
        missing = [name for name in cls._fields if name not in values]
        if unknown or missing:
            raise TypeError(
                f"{cls.__name__}() takes the keywords {list(cls._fields)}; "
                f"missing {missing}, unknown {unknown}"
            )
        for name in cls._fields:
            object.__setattr__(self, name, values[name])

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, ExternallyTagged)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{n}={v!r}" for n, v in zip(self._fields, self._values(), strict=True)
        )
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; build a new one")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (type(self), dict(zip(self._fields, self._values(), strict=True))),
        )

    def to_json(self) -> bytes:
        return codec.encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        return codec.decode(data, cls)


def _rebuild(
    cls: type[ExternallyTagged], values: dict[str, object]
) -> ExternallyTagged:
    return cls(**values)


def _to_wire(value: ExternallyTagged) -> object:
    if not value._fields:
        return value.wire_tag
    return {value.wire_tag: dict(zip(value._fields, value._values(), strict=True))}


def _from_wire(target: type[ExternallyTagged], raw: object) -> ExternallyTagged:
    union = target._union
    tag, body = _split(union, raw)
    variant = union._variants.get(tag) if isinstance(tag, str) else None
    if variant is None:
        raise ValueError(
            f"unknown {union.__name__} {tag!r}; expected one of {sorted(union._variants)}"
        )
    if not issubclass(variant, target):
        raise ValueError(f"expected {target.__name__}, got {tag!r}")
    if not variant._fields:
        if body is not None:
            raise ValueError(
                f"{union.__name__} {tag!r} has no fields; write it as {tag!r}"
            )
        return variant()
    if not isinstance(body, dict):
        raise TypeError(f"{union.__name__} {tag!r} needs an object holding its fields")
    try:
        fields = codec.decode(codec.encode(body), _fields_struct(variant))
    except msgspec.ValidationError as exc:  # re-raised so msgspec adds the path
        raise ValueError(f"{union.__name__} {tag!r}: {exc}") from None
    return variant(**msgspec.structs.asdict(fields))


def _split(union: type[ExternallyTagged], raw: object) -> tuple[object, object]:
    """(tag, fields or None) of a name, a one-key object, or a legacy record."""
    if isinstance(raw, str):
        return raw, None
    if isinstance(raw, dict):
        legacy = union._legacy_tag_field
        if legacy is not None and legacy in raw:
            body = {key: value for key, value in raw.items() if key != legacy}
            return raw[legacy], body or None
        if len(raw) == 1:
            return next(iter(raw.items()))
    raise TypeError(
        f"expected {union.__name__}: a variant's name, or an object with one key "
        "naming the variant"
    )


_FIELD_STRUCTS: dict[type[ExternallyTagged], type[msgspec.Struct]] = {}


def _fields_struct(variant: type[ExternallyTagged]) -> type[msgspec.Struct]:
    """A struct of the variant's fields, so they decode as strictly as any
    value (built on first use: the annotations name types defined later)."""
    struct = _FIELD_STRUCTS.get(variant)
    if struct is None:
        hints = get_type_hints(variant)
        struct = msgspec.defstruct(
            f"{variant.__name__}Fields",
            [(name, hints[name]) for name in variant._fields],
            bases=(codec.Value,),
            kw_only=True,
        )
        _FIELD_STRUCTS[variant] = struct
    return struct
