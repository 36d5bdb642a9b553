"""The stored input record in upstream's form (L-7, L-10, T-1), and the
older forms still read (PD-40)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from meerkat_runtime import (
    ContinuationInput,
    ExternalEventInput,
    HandlingMode,
    InputDurability,
    InputHeader,
    InputId,
    InputOrigin,
    OperationInput,
    RunId,
)
from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import Input
from meerkat_runtime.store import records
from meerkat_runtime.store.base import RuntimeStoreError
from meerkat_runtime.store.integrity import frame

T0 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
IID = InputId("0190a000-0000-7000-8000-0000000000aa")
HEADER = InputHeader(
    id=IID,
    timestamp=T0,
    source=InputOrigin.System(),
    durability=InputDurability.DURABLE,
)


def failed_once() -> InputState:
    """Queued, staged, and back after a failed run (an ``error`` entry)."""
    state = InputState.new_accepted(IID, now=T0)
    state.apply(il.QueueAccepted(), T0)
    state.apply(il.StageForRun(RunId.new()), T0)
    state.apply(il.RollbackStaged(), T0, error="RuntimeError: model down")
    return state


def test_history_is_written_with_upstreams_keys_and_the_error_kept() -> None:
    """L-7: ``{timestamp, from, to, reason}``; PD-41: ``error`` when a failed
    run caused the transition (and only then); PD-48: the parameters of the
    transition when it had any (the staging and its rollback name the run)."""
    history = json.loads(failed_once().to_json())["history"]
    assert [set(e) for e in history] == [
        {"timestamp", "from", "to", "reason"},
        {"timestamp", "from", "to", "reason", "run_id"},
        {"timestamp", "from", "to", "reason", "error"},
    ]
    assert (history[2]["from"], history[2]["to"]) == ("staged", "queued")
    assert history[2]["error"] == "RuntimeError: model down"


def test_both_counts_are_written_even_at_zero_and_default_to_zero() -> None:
    """L-10: ``attempt_count`` and ``recovery_count`` always written (they
    were omitted at 0); a record without them reads as 0."""
    fresh = InputState.new_accepted(IID, now=T0)
    written = json.loads(fresh.to_json())
    assert (written["attempt_count"], written["recovery_count"]) == (0, 0)
    del written["attempt_count"], written["recovery_count"]
    back = InputState.from_json(json.dumps(written))
    assert (back.attempt_count(), back.recovery_count) == (0, 0)


def legacy_form(state: InputState) -> bytes:
    """``state`` as schema 2 wrote it: history keys ``from_state``/``to_state``."""
    record = json.loads(state.to_json())
    for entry in record["history"]:
        entry["from_state"] = entry.pop("from")
        entry["to_state"] = entry.pop("to")
    return json.dumps(record).encode()


def test_old_history_keys_are_still_read() -> None:
    """PD-40: a record of schema 2, framed or not, decodes to the same state,
    the error included, and is written back with the new keys."""
    state = failed_once()
    old = legacy_form(state)
    for stored in (old, frame(old)):
        back = records.decode_state("rt", str(IID), stored)
        assert back == state
        assert back.last_error() == "RuntimeError: model down"
        assert b'"from":' in records.encode_state(back)


def test_an_entry_with_both_old_and_new_keys_is_corrupt() -> None:
    """Only one form per entry: two names for one state is damage."""
    record = json.loads(failed_once().to_json())
    record["history"][0]["from_state"] = "accepted"
    with pytest.raises(RuntimeStoreError.Corrupt) as failure:
        records.decode_state("rt", str(IID), frame(json.dumps(record).encode()))
    assert "from_state" in str(failure.value)


@pytest.mark.parametrize(
    "inp",
    [
        ContinuationInput(header=HEADER, reason="resume"),
        ExternalEventInput(header=HEADER, event_type="ping", payload={}),
    ],
)
def test_handling_mode_is_always_written(inp: Input) -> None:
    """T-1: ``handling_mode`` of an external event and a continuation is
    written even when it is the default ``queue``; absent, it reads as queue."""
    written = json.loads(inp.to_json())
    assert written["handling_mode"] == "queue"
    del written["handling_mode"]
    back = Input.from_json(json.dumps(written))
    assert back.handling_mode_hint() is HandlingMode.QUEUE


@pytest.mark.parametrize(
    ("inp", "alias"),
    [
        (ContinuationInput(header=HEADER, reason="resume"), "system_generated"),
        (OperationInput(header=HEADER, operation_id="op", event={"n": 1}), "projected"),
    ],
)
def test_legacy_input_type_aliases_are_read_as_the_current_variant(
    inp: Input, alias: str
) -> None:
    """T-1: ``system_generated`` is a continuation, ``projected`` an
    operation, on read only: standalone, and inside a stored record, which is
    written back under the current tag."""
    old = json.loads(inp.to_json())
    old["input_type"] = alias
    back = Input.from_json(json.dumps(old))
    assert type(back) is type(inp)
    assert back == inp
    assert type(inp).from_json(json.dumps(old)) == inp

    state = InputState.new_accepted(IID, now=T0)
    state.persisted_input = inp  # type: ignore[assignment]
    record = json.loads(state.to_json())
    record["persisted_input"]["input_type"] = alias
    loaded = records.decode_state("rt", str(IID), json.dumps(record).encode())
    assert type(loaded.persisted_input) is type(inp)
    rewritten = json.loads(records.encode_state(loaded))
    current = json.loads(inp.to_json())["input_type"]
    assert rewritten["persisted_input"]["input_type"] == current != alias
