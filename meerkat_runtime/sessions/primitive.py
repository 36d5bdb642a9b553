"""Batching (C-20) and turning a staged batch into one ``StagedInput`` (W-9).

A batch is the head of the active lane: the whole steer lane if it holds
anything (steer work overtakes older queue work), else a prompt alone (a
prompt always gets a run of its own), else the longest run of non-prompt
inputs. Decision 4 makes this the same after a restart, because lanes and
kinds are restored from the stored records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from meerkat_runtime.generated.spec_types import HandlingMode
from meerkat_runtime.ids import InputId
from meerkat_runtime.inputs import (
    ContinuationInput,
    External,
    ExternalEventInput,
    FlowStepInput,
    Input,
    OperationInput,
    PeerInput,
    PeerMessage,
    PeerOrigin,
    PromptInput,
    RuntimeTurnMetadata,
    TextBlock,
)
from meerkat_runtime.ledger import Lane
from meerkat_runtime.runs import RunApplyBoundary
from meerkat_runtime.sessions.executor import Append, StagedInput

_PROMPT = "prompt"  # ``PromptInput.kind_id``


def next_batch(
    steer: Sequence[InputId],
    queue: Sequence[InputId],
    kind: Callable[[InputId], str],
) -> tuple[list[InputId], Lane]:
    """C-20: the ids of the next run and the lane they come from (``kind``,
    an input's kind, is consulted only for the head of the queue, not the
    whole lane; payloads may still be in the store, PD-64)."""
    if steer:
        return list(steer), Lane.STEER
    if not queue:
        return [], Lane.QUEUE
    if kind(queue[0]) == _PROMPT:
        return [queue[0]], Lane.QUEUE
    batch: list[InputId] = []
    for input_id in queue:
        if kind(input_id) == _PROMPT:
            break
        batch.append(input_id)
    return batch, Lane.QUEUE


def build_primitive(batch: Sequence[tuple[InputId, Input]], lane: Lane) -> StagedInput:
    """W-9. Decision 17: steer work applies at a run checkpoint."""
    boundary = (
        RunApplyBoundary.RUN_CHECKPOINT
        if lane is Lane.STEER
        else RunApplyBoundary.RUN_START
    )
    appends = [a for a in (_append(inp) for _, inp in batch) if a is not None]
    return StagedInput(
        boundary=boundary,
        appends=appends,
        contributing_input_ids=[i for i, _ in batch],
        turn_metadata=_merged_metadata([inp for _, inp in batch]),
    )


def _append(inp: Input) -> Append | None:
    if isinstance(inp, ContinuationInput | OperationInput):
        return None
    if isinstance(inp, PromptInput):
        return (
            Append(role="user", blocks=inp.blocks)
            if inp.blocks
            else Append(role="user", text=inp.text)
        )
    if isinstance(inp, PeerInput):
        return _peer_append(inp)
    if isinstance(inp, FlowStepInput):
        return (
            Append(role="user", blocks=inp.blocks)
            if inp.blocks
            else Append(role="user", text=inp.instructions)
        )
    assert isinstance(inp, ExternalEventInput)
    return (
        Append(role="user", blocks=inp.blocks)
        if inp.blocks
        else Append(role="user", text=_event_text(inp))
    )


def _peer_append(inp: PeerInput) -> Append:
    if not inp.blocks:
        return Append(role="user", text=inp.body)
    source = inp.header.source
    if isinstance(inp.convention, PeerMessage) and isinstance(source, PeerOrigin):
        label = TextBlock(text=f"[COMMS MESSAGE from {source.peer_id}]")
        return Append(role="user", blocks=[label, *inp.blocks])
    first = inp.blocks[0]
    if not inp.body or (isinstance(first, TextBlock) and first.text == inp.body):
        return Append(role="user", blocks=inp.blocks)
    return Append(role="user", blocks=[TextBlock(text=inp.body), *inp.blocks])


def _event_text(inp: ExternalEventInput) -> str:
    source = inp.header.source
    name = (
        source.source_name
        if isinstance(source, External) and source.source_name.strip()
        else inp.event_type
    )
    body = inp.payload.get("body") if isinstance(inp.payload, dict) else None
    text = f"[EVENT via {name}]"
    if isinstance(body, str) and body.strip():
        text += " " + body.strip()
    return text


def _merged_metadata(inputs: Sequence[Input]) -> RuntimeTurnMetadata:
    """Last non-None wins for scalars; lists concatenate (W-9)."""
    merged: dict[str, object] = {}
    lists: dict[str, list[str]] = {
        "skill_references": [],
        "additional_instructions": [],
    }
    for inp in inputs:
        meta = _metadata_of(inp)
        if meta is None:
            continue
        for name in (
            "handling_mode",
            "keep_alive",
            "model",
            "provider",
            "provider_params",
            "render_metadata",
            "flow_tool_overlay",
        ):
            value = getattr(meta, name)
            if value is not None:
                merged[name] = value
        for name, items in lists.items():
            items += getattr(meta, name) or []
    for name, items in lists.items():
        if items:
            merged[name] = items
    every_continuation = bool(inputs) and all(
        isinstance(i, ContinuationInput) for i in inputs
    )
    merged["execution_kind"] = (
        "resume_pending" if every_continuation else "content_turn"
    )
    return RuntimeTurnMetadata(**merged)  # type: ignore[arg-type]


def _metadata_of(inp: Input) -> RuntimeTurnMetadata | None:
    if isinstance(inp, PromptInput | FlowStepInput):
        return inp.turn_metadata
    if isinstance(inp, ExternalEventInput):
        return RuntimeTurnMetadata(
            handling_mode=inp.handling_mode, render_metadata=inp.render_metadata
        )
    if isinstance(inp, ContinuationInput):
        return RuntimeTurnMetadata(handling_mode=inp.handling_mode)
    return None


__all__ = ["HandlingMode", "build_primitive", "next_batch"]
