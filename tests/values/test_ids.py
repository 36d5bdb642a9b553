"""Typed ids (T-18): value semantics, fresh UUIDv7s, kinds that never compare
equal, and who refuses a malformed id.
"""

from __future__ import annotations

import uuid

import msgspec
import pytest

from meerkat_runtime import (
    BlobId,
    CorrelationId,
    IdempotencyKey,
    InputHeader,
    InputId,
    LogicalRuntimeId,
    PromptInput,
    RunId,
    SessionId,
    SupersessionKey,
    codec,
)
from meerkat_runtime.codec import decode, encode
from meerkat_runtime.ids import MAX_ID_LENGTH, id_problem, id_types

# ================================================================ ids (T-18)

ID_TYPES = [
    InputId,
    RunId,
    LogicalRuntimeId,
    IdempotencyKey,
    SupersessionKey,
    CorrelationId,
    BlobId,
    SessionId,
]


def test_every_id_type_is_listed_for_the_codec() -> None:
    """The codec decodes exactly these without a subclass check."""
    assert set(id_types()) == set(ID_TYPES)


@pytest.mark.parametrize("id_type", ID_TYPES, ids=lambda t: t.__name__)
def test_id_value_semantics(id_type: type[InputId]) -> None:
    """T-18: ids wrap text; str() is the text; equal and hashable by value;
    serialised as a bare string; immutable; only text is accepted."""
    a = id_type("abc")
    assert str(a) == "abc"
    assert a == id_type("abc")
    assert a != id_type("abd")
    assert hash(a) == hash(id_type("abc"))
    assert {a: 1}[id_type("abc")] == 1
    assert len({a, id_type("abc"), id_type("x")}) == 2
    assert encode(a) == b'"abc"'
    decoded = decode(b'"abc"', id_type)  # the decoder's own constructor
    assert decoded == a
    assert type(decoded) is id_type
    assert hash(decoded) == hash(a)
    assert {a: 1}[decoded] == 1
    with pytest.raises(AttributeError):
        setattr(decoded, "_text", "other")  # noqa: B010
    with pytest.raises(AttributeError):
        setattr(a, "_text", "other")  # noqa: B010 - mypy would reject the assignment
    with pytest.raises(TypeError):
        id_type(5)  # type: ignore[arg-type]
    with pytest.raises(msgspec.ValidationError):
        decode(b"5", id_type)


@pytest.mark.parametrize("id_type", ID_TYPES, ids=lambda t: t.__name__)
def test_new_ids_are_unique_time_ordered_uuid7(id_type: type[InputId]) -> None:
    """T-18: ``X.new()`` mints a fresh UUIDv7; later ids sort after earlier ones."""
    ids = [id_type.new() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    assert sorted(map(str, ids)) == [str(i) for i in ids]
    assert {uuid.UUID(str(i)).version for i in ids} == {7}


def test_ids_of_different_kinds_never_compare_equal() -> None:
    """T-18 / API.md: newtype ids cannot be mixed up."""
    assert InputId("x") != RunId("x")
    assert RunId("x") != LogicalRuntimeId("x")
    assert InputId("x") != "x"
    assert len({InputId("x"), RunId("x"), SessionId("x")}) == 3


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "must not be blank"),
        (" \u3000 ", "must not be blank"),
        ("a\tb", "contains control characters"),
        ("x" * (MAX_ID_LENGTH + 1), f"longer than {MAX_ID_LENGTH} characters"),
        ("x" * MAX_ID_LENGTH, None),
        ("order-42/ünïcödé 🦦", None),
        ("\x85 C1 controls are text", None),
    ],
)
def test_id_problem(text: str, problem: str | None) -> None:
    """Issue 12 item 2: the one rule for every id a caller hands over."""
    assert id_problem(text) == problem


def test_only_admission_refuses_a_malformed_id_the_store_reads_it_back() -> None:
    """A record stored before the id rules existed must still load: the
    rules live in the admission decoder, not in the codec's own."""
    inp = PromptInput(
        header=msgspec.structs.replace(
            InputHeader.new(), id=InputId("x" * (MAX_ID_LENGTH + 1))
        ),
        text="t",
    )
    data = codec.encode(inp)
    assert codec.decode(data, PromptInput) == inp
    with pytest.raises(
        msgspec.ValidationError, match=r"longer than 512 .* `\$\.header\.id`"
    ):
        codec.admission_decoder(PromptInput).decode(data)
