"""Runs: boundaries, receipts and the events an executor's run produces (R-1, R-2).

A receipt names, in order, the inputs a run applied at one boundary; the
store records it atomically with their new states, which is what makes
recovery exact ("consumed by receipt", D-11).
"""

from __future__ import annotations

import enum
from typing import ClassVar

from meerkat_runtime.codec import Value
from meerkat_runtime.ids import InputId, RunId


class RunApplyBoundary(enum.Enum):
    IMMEDIATE = "immediate"
    RUN_START = "run_start"
    RUN_CHECKPOINT = "run_checkpoint"

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


class RunBoundaryReceipt(
    Value, frozen=True, gc=False, kw_only=True, forbid_unknown_fields=True
):
    """R-2. The counts are required, as upstream (no serde defaults), so they
    are always written; an absent digest is omitted."""

    run_id: RunId
    boundary: RunApplyBoundary
    contributing_input_ids: list[InputId]
    conversation_digest: str | None = None
    message_count: int
    sequence: int


def receipt_problem(receipt: object) -> str | None:
    """What is wrongly typed in a receipt built in code (a struct does not
    check its fields then), or None. A receipt stored with a text sequence
    could never be read back, so drivers and stores refuse it first; a type
    check is cheaper than a trial encode and decode of every boundary."""
    if not isinstance(receipt, RunBoundaryReceipt):
        return f"a {type(receipt).__name__}, not a RunBoundaryReceipt"
    digest = receipt.conversation_digest
    ids = receipt.contributing_input_ids
    checks = (
        ("run_id", isinstance(receipt.run_id, RunId) and _text(str(receipt.run_id))),
        ("boundary", isinstance(receipt.boundary, RunApplyBoundary)),
        ("message_count", _count(receipt.message_count)),
        ("sequence", _count(receipt.sequence)),
        ("conversation_digest", digest is None or _text(digest)),
        (
            "contributing_input_ids",
            isinstance(ids, list)
            and all(isinstance(i, InputId) and _text(str(i)) for i in ids),
        ),
    )
    wrong = [name for name, ok in checks if not ok]
    return f"wrongly typed {', '.join(wrong)}" if wrong else None


MAX_COUNT = 2**63 - 1  # SQLite's largest INTEGER


def _count(value: object) -> bool:
    """An int (not a bool) from 0 up to what every store can hold."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value <= MAX_COUNT
    )


def _text(value: object) -> bool:
    """Text every store can encode (no lone surrogate)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class RunEvent(Value, frozen=True, gc=False, kw_only=True, tag_field="event_type"):
    """What happened to a run, fed back into the driver (``on_run_event``)."""

    run_id: RunId

    RunStarted: ClassVar[type[RunStarted]]
    BoundaryApplied: ClassVar[type[BoundaryApplied]]
    RunCompleted: ClassVar[type[RunCompleted]]
    RunFailed: ClassVar[type[RunFailed]]
    RunCancelled: ClassVar[type[RunCancelled]]

    def contributing_input_ids(self) -> list[InputId]:
        return []


class RunStarted(RunEvent, frozen=True, gc=False, kw_only=True, tag="run_started"):
    pass


class BoundaryApplied(
    RunEvent, frozen=True, gc=False, kw_only=True, tag="boundary_applied"
):
    receipt: RunBoundaryReceipt
    session_snapshot: bytes | None = None

    def contributing_input_ids(self) -> list[InputId]:
        return list(self.receipt.contributing_input_ids)


class RunCompleted(RunEvent, frozen=True, gc=False, kw_only=True, tag="run_completed"):
    consumed_input_ids: list[InputId]

    def contributing_input_ids(self) -> list[InputId]:
        return list(self.consumed_input_ids)


class RunFailed(RunEvent, frozen=True, gc=False, kw_only=True, tag="run_failed"):
    error: str
    recoverable: bool


class RunCancelled(RunEvent, frozen=True, gc=False, kw_only=True, tag="run_cancelled"):
    pass


RunEvent.RunStarted = RunStarted
RunEvent.BoundaryApplied = BoundaryApplied
RunEvent.RunCompleted = RunCompleted
RunEvent.RunFailed = RunFailed
RunEvent.RunCancelled = RunCancelled
AnyRunEvent = RunStarted | BoundaryApplied | RunCompleted | RunFailed | RunCancelled
