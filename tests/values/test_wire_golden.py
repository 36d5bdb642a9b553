"""Golden documents: upstream's JSON, decoded and written back unchanged.

Each file of ``tests/fixtures/wire/`` is one JSON document written by hand in
the shapes docs/behaviour.md gives (E-1..E-3 events, L-12 abandon reasons and
terminal outcomes, CP-11 reports, T-19 content blocks), not produced by this
codec. Each must
decode into its type and encode back to the same JSON value (compared
parsed, so key order and spacing do not matter). A second test checks that
every event code, abandon reason, terminal outcome, report and content
block (both image sources) has a document, so a new variant cannot ship without one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meerkat_runtime import (
    ContentBlock,
    DestroyReport,
    ImageData,
    InputAbandonReason,
    InputTerminalOutcome,
    RecoveryReport,
    RecycleReport,
    ResetReport,
    RetireReport,
    RuntimeEvent,
    RuntimeEventEnvelope,
)
from meerkat_runtime.codec import decode, encode
from meerkat_runtime.events import (
    InputLifecycleEvent,
    ProjectionEmitted,
    RunLifecycleEvent,
    RuntimeStateChangeEvent,
    TopologyEvent,
)

WIRE = Path(__file__).parents[1] / "fixtures" / "wire"
REPORTS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (RecoveryReport, RetireReport, ResetReport, RecycleReport, DestroyReport)
}
FOLDERS: dict[str, type[Any]] = {
    "events": RuntimeEvent,
    "envelopes": RuntimeEventEnvelope,
    "abandon_reasons": InputAbandonReason,
    "terminal_outcomes": InputTerminalOutcome,
    "content_blocks": ContentBlock,
}
DOCUMENTS = sorted(WIRE.glob("*/*.json"))


def _type_of(path: Path) -> type[Any]:
    if path.parent.name == "reports":
        return REPORTS[path.name.split(".")[0]]
    return FOLDERS[path.parent.name]


def _decoded(path: Path) -> Any:
    return decode(path.read_bytes(), _type_of(path))


@pytest.mark.parametrize(
    "path", DOCUMENTS, ids=[str(p.relative_to(WIRE)) for p in DOCUMENTS]
)
def test_a_golden_document_decodes_and_encodes_back_unchanged(path: Path) -> None:
    value = _decoded(path)
    assert json.loads(encode(value)) == json.loads(path.read_text(encoding="utf-8"))
    assert decode(encode(value), _type_of(path)) == value


def _leaves(base: type[Any]) -> list[type[Any]]:
    subclasses = base.__subclasses__()
    return (
        [leaf for sub in subclasses for leaf in _leaves(sub)] if subclasses else [base]
    )


def test_every_event_reason_outcome_and_report_has_a_document() -> None:
    """New variants need a golden document (and the shape it pins)."""
    decoded = [_decoded(path) for path in DOCUMENTS]
    event_codes = {v.event_code for v in decoded if isinstance(v, RuntimeEvent)}
    every_code = {
        leaf.event_code
        for base in (InputLifecycleEvent, RunLifecycleEvent, TopologyEvent)
        for leaf in _leaves(base)
    } | {RuntimeStateChangeEvent.event_code, ProjectionEmitted.event_code}
    assert event_codes == every_code
    for base in (InputAbandonReason, InputTerminalOutcome):
        have = {type(v) for v in decoded if isinstance(v, base)}
        assert have == set(_leaves(base)), base.__name__
    assert {type(v) for v in decoded if type(v) in REPORTS.values()} == set(
        REPORTS.values()
    )
    assert any(isinstance(v, RuntimeEventEnvelope) for v in decoded)
    blocks = {
        type(v.data) if isinstance(v, ContentBlock.Image) else type(v)
        for v in decoded
        if isinstance(v, ContentBlock)
    }
    assert blocks == {ContentBlock.Text, ImageData.Inline, ImageData.Blob}
