"""Upstream's wire format where it is easy to get wrong (E-2, E-3, L-12, CP-11).

The golden documents in ``tests/fixtures/wire/`` pin every shape
(``test_wire_golden.py``); these tests pin the rules behind them: what is
omitted, which name is the tag and which the event code, and which event
payloads other tools may send that the drivers here never emit.
"""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import msgspec
import pytest

from meerkat_runtime import (
    InputAbandonReason,
    InputTerminalOutcome,
    RecoveryReport,
    RuntimeEvent,
    RuntimeState,
)
from meerkat_runtime.codec import decode, encode
from meerkat_runtime.events import (
    InputLifecycleEvent,
    ProjectionEmitted,
    RuntimeStateChangeEvent,
    TopologyEvent,
)
from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.ids import InputId, LogicalRuntimeId

IID = InputId("0190b5a0-0000-7000-8000-000000000001")


def _wire(value: object) -> Any:
    return json.loads(encode(value))


# ================================================================ reports (CP-11)


def test_recovery_report_omits_empty_details_but_writes_every_count() -> None:
    """CP-11: ``details`` is left out when empty; the counts are always
    written, zero included (upstream's reader requires them)."""
    assert _wire(RecoveryReport()) == {
        "inputs_recovered": 0,
        "inputs_abandoned": 0,
        "inputs_requeued": 0,
    }
    assert _wire(RecoveryReport(inputs_requeued=2, details=["x"])) == {
        "inputs_recovered": 0,
        "inputs_abandoned": 0,
        "inputs_requeued": 2,
        "details": ["x"],
    }
    missing = b'{"inputs_recovered":1,"inputs_abandoned":0,"inputs_requeued":0}'
    assert decode(missing, RecoveryReport) == RecoveryReport(inputs_recovered=1)


# ================================================================ events (E-2, E-3)


def test_the_wire_tag_is_the_short_name_and_the_event_code_the_dotted_one() -> None:
    """E-3: ``{"code": "accepted"}`` on the wire; ``input.accepted`` is the
    stable code an API shows. The dotted form is not accepted as a tag."""
    event = RuntimeEvent.InputLifecycle(data=InputLifecycleEvent.Accepted(input_id=IID))
    assert _wire(event) == {
        "category": "input_lifecycle",
        "data": {"code": "accepted", "input_id": str(IID)},
    }
    assert event.event_code == "input.accepted"
    dotted = b'{"category":"input_lifecycle","data":{"code":"input.accepted","input_id":"i"}}'
    with pytest.raises(msgspec.ValidationError, match=r"input\.accepted"):
        decode(dotted, RuntimeEvent)


def test_a_state_change_nests_from_and_to_under_data() -> None:
    """E-2: ``{"category": "runtime_state_change", "data": {"from", "to"}}``;
    ``data=`` and API.md's ``from_state=``/``to_state=`` build the same value."""
    by_keywords = RuntimeEvent.RuntimeStateChange(
        from_state=RuntimeState.IDLE, to_state=RuntimeState.RETIRED
    )
    by_data = RuntimeEvent.RuntimeStateChange(
        data=RuntimeStateChangeEvent(
            from_state=RuntimeState.IDLE, to_state=RuntimeState.RETIRED
        )
    )
    assert by_keywords == by_data
    assert _wire(by_keywords)["data"] == {"from": "idle", "to": "retired"}
    flat = (
        b'{"category":"runtime_state_change","from_state":"idle","to_state":"retired"}'
    )
    with pytest.raises(msgspec.ValidationError, match="data"):
        decode(flat, RuntimeEvent)


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (
            RuntimeEvent.InputLifecycle(
                data=InputLifecycleEvent.StateTransitioned(
                    input_id=IID,
                    from_state=InputLifecycleState.QUEUED,
                    to_state=InputLifecycleState.STAGED,
                )
            ),
            "input.state_transitioned",
        ),
        (
            RuntimeEvent.Topology(
                data=TopologyEvent.RuntimeCreated(runtime_id=LogicalRuntimeId("rt"))
            ),
            "topology.runtime_created",
        ),
        (
            RuntimeEvent.Projection(
                data=ProjectionEmitted(
                    rule_id="r", projected_input_id=IID, source_event_id="e"
                )
            ),
            "runtime.projection_emitted",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_events_only_other_tools_emit_are_readable(event: Any, code: str) -> None:
    """E-3, E-4: the drivers never emit these, but a stream written by another
    implementation carries them, so they decode and keep their codes."""
    assert event.event_code == code
    assert decode(encode(event), RuntimeEvent) == event


# ================================================================ abandon reasons (L-12)

REASONS = [
    InputAbandonReason.Retired(),
    InputAbandonReason.Reset(),
    InputAbandonReason.Destroyed(),
    InputAbandonReason.Cancelled(),
    InputAbandonReason.MaxAttemptsExhausted(attempts=3),
]


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
@pytest.mark.parametrize("reason", REASONS, ids=repr)
def test_abandon_reasons_are_values(reason: Any, how: str) -> None:
    """Equal by variant and fields, hashable, frozen, and they survive copies
    and pickling, like the struct values."""
    copies: dict[str, Any] = {
        "copy": copy.copy,
        "deepcopy": copy.deepcopy,
        "pickle": lambda v: pickle.loads(pickle.dumps(v)),
    }
    again = copies[how](reason)
    assert again == reason
    assert type(again) is type(reason)
    assert hash(again) == hash(reason)
    assert {reason: 1}[again] == 1
    with pytest.raises(AttributeError):
        again.attempts = 4


def test_abandon_reasons_differ_by_variant_and_field() -> None:
    assert InputAbandonReason.Reset() != InputAbandonReason.Destroyed()
    assert InputAbandonReason.MaxAttemptsExhausted(
        attempts=2
    ) != InputAbandonReason.MaxAttemptsExhausted(attempts=3)
    assert repr(InputAbandonReason.MaxAttemptsExhausted(attempts=3)) == (
        "MaxAttemptsExhausted(attempts=3)"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'"bored"', "unknown InputAbandonReason 'bored'"),
        (b'{"reset":{}}', "'reset' has no fields"),
        (b'{"max_attempts_exhausted":{"attempts":"x"}}', r"Expected `int`"),
        (b'{"max_attempts_exhausted":{}}', "attempts"),
        (b'{"reset":null,"retired":null}', "one key naming the variant"),
        (b"3", "one key naming the variant"),
        (b'{"reason_type":"bored"}', "unknown InputAbandonReason 'bored'"),
    ],
)
def test_a_bad_abandon_reason_is_refused_with_its_path(
    raw: bytes, message: str
) -> None:
    """Strict at the edge: the error says what is wrong and where."""
    outcome = b'{"outcome_type":"abandoned","reason":' + raw + b"}"
    with pytest.raises(msgspec.ValidationError, match=message) as caught:
        decode(outcome, InputTerminalOutcome)
    assert "$.reason" in str(caught.value)


def test_constructing_the_union_itself_or_missing_a_field_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="union"):
        InputAbandonReason()
    with pytest.raises(TypeError, match="attempts"):
        InputAbandonReason.MaxAttemptsExhausted()  # type: ignore[call-arg]
