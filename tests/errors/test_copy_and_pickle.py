"""Errors and ids survive ``copy``, ``deepcopy`` and ``pickle`` unchanged:
an error crossing a process boundary (multiprocessing, a task queue) or
copied by a framework keeps its exact text (S-2, A-1: no doubled prefix,
port decision 11), its variant and its fields; an id, being immutable, is
its own copy, and states holding ids can be deep-copied."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable

import pytest

from meerkat_runtime import (
    BlobId,
    BlobStoreError,
    InputId,
    InputState,
    LogicalRuntimeId,
    PromptInput,
    RuntimeControlPlaneError,
    RuntimeDriverError,
    RuntimeState,
    RuntimeStoreError,
)
from meerkat_runtime.ids import id_types

ERRORS: list[BaseException] = [
    RuntimeStoreError.WriteFailed("disk full"),
    RuntimeStoreError.ReadFailed("corrupt row"),
    RuntimeStoreError.NotFound("runtime r"),
    RuntimeStoreError.Internal("closed"),
    RuntimeDriverError.NotReady(RuntimeState.RETIRED),
    RuntimeDriverError.ValidationFailed("empty prompt"),
    RuntimeDriverError.Destroyed(),
    RuntimeDriverError.Internal("Store write failed: disk full"),
    RuntimeControlPlaneError.NotFound(LogicalRuntimeId("r")),
    RuntimeControlPlaneError.InvalidState(RuntimeState.RUNNING),
    RuntimeControlPlaneError.StoreError("Store read failed: x"),
    RuntimeControlPlaneError.Internal("boom"),
    BlobStoreError.NotFound(BlobId("sha256:" + "0" * 64)),
    BlobStoreError.Invalid("bad id"),
    BlobStoreError.Internal("I/O error"),
]

COPIES: dict[str, Callable[[object], object]] = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda value: pickle.loads(pickle.dumps(value)),
}


def fields(error: BaseException) -> dict[str, object]:
    return {k: v for k, v in vars(error).items() if not k.startswith("__")}


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_error_keeps_its_variant_text_and_fields(
    error: BaseException, how: str
) -> None:
    again = COPIES[how](error)
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert fields(again) == fields(error)


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("id_type", id_types(), ids=lambda t: t.__name__)
def test_id_copies_equal_and_keep_their_type(id_type: type[InputId], how: str) -> None:
    value = id_type("some-id")
    again = COPIES[how](value)
    assert type(again) is id_type
    assert again == value
    assert hash(again) == hash(value)
    assert str(again) == "some-id"


def test_a_state_holding_ids_deep_copies() -> None:
    inp = PromptInput.new("hello")
    state = InputState.new_accepted(inp.id())
    state.persisted_input = inp
    again = copy.deepcopy(state)
    assert again.to_record() == state.to_record()


@pytest.mark.parametrize("how", list(COPIES))
def test_notes_added_to_an_error_come_along(how: str) -> None:
    """An error a framework annotated on its way up keeps its notes."""
    error = RuntimeStoreError.WriteFailed("disk full")
    error.add_note("while retiring runtime r")
    again = COPIES[how](error)
    assert isinstance(again, RuntimeStoreError.WriteFailed)
    assert str(again) == "Store write failed: disk full"
    assert again.__notes__ == ["while retiring runtime r"]
