"""The runtime inbox: inputs submitted by processes that do not own the runtime.

Theory of operation (PD-58): a process that does not own a runtime cannot
admit an input (only the owner's authority decides policy, lanes and
supersession), but it can make the input durable. ``submit_to_inbox``
writes it to the runtime's inbox in one transaction that first looks for
the input's id and idempotency key in the inbox and in the ledger (the
stored input states), so a duplicate is answered ``Deduplicated`` at once,
as a single process would answer it. The owner later loads the inbox in
arrival order, admits each entry through its authority, and removes the
entries in the same fenced transaction that writes the admitted states
(``admit_from_inbox``): after a crash either both happened or neither.

An entry the owner could not admit (its key names an input that arrived
another way meanwhile, or the runtime no longer accepts input) is not
removed but **settled**: it stays, with what became of it, so that a
submitter waiting on it learns the outcome (PD-60). Settled entries are not
loaded as work and no longer make a runtime appear to have an inbox.

This module holds what every store shares: the entry record (framed and
decoded strictly, like every stored record), the checks a submission gets
(``checked_submission``: the admission's own round trip, PD-59), and the
ledger's key match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from meerkat_runtime import codec
from meerkat_runtime.codec import Value
from meerkat_runtime.driver.validation import (
    check_structure,
    durability_violation,
    peer_mode_violation,
)
from meerkat_runtime.errors import ValidationFailedError
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import IdempotencyKey, InputId, LogicalRuntimeId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import AnyInput, Input, InputDurability
from meerkat_runtime.outcomes import (
    AcceptOutcome,
    Deduplicated,
    DurabilityViolation,
    PeerHandlingModeInvalid,
    ReasonNotReady,
    Rejected,
)
from meerkat_runtime.store.integrity import corruption, frame
from meerkat_runtime.store.records import stored_body

INBOX = "runtime_inbox"


class InboxSettlement(
    Value, frozen=True, kw_only=True, gc=False, forbid_unknown_fields=True
):
    """What became of an entry the owner took but did not admit: it names
    the input its key already stood for (``deduplicated_into``), or why the
    runtime refused it (``refused``)."""

    deduplicated_into: InputId | None = None
    refused: str | None = None


class InboxRecord(
    Value, frozen=True, kw_only=True, gc=False, forbid_unknown_fields=True
):
    """An inbox entry as stores keep it."""

    input: AnyInput
    settlement: InboxSettlement | None = None


_RECORD_DECODER = codec.decoder(InboxRecord)


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One entry of a runtime's inbox. ``arrival`` orders a runtime's
    entries (higher arrived later); ``settlement`` is None while the entry
    waits for its owner."""

    runtime_id: LogicalRuntimeId
    arrival: int
    input: Input
    settlement: InboxSettlement | None = None

    @property
    def input_id(self) -> InputId:
        return self.input.id()

    @property
    def pending(self) -> bool:
        return self.settlement is None

    def settled(self, settlement: InboxSettlement) -> InboxEntry:
        return InboxEntry(self.runtime_id, self.arrival, self.input, settlement)


def encode_entry(inp: Input, settlement: InboxSettlement | None = None) -> bytes:
    record = InboxRecord(input=inp, settlement=settlement)  # type: ignore[arg-type]
    return frame(codec.encode(record))


def decode_entry(
    runtime_id: str,
    input_id: str,
    arrival: int,
    data: object,
    columns: tuple[object, object] | None = None,
) -> InboxEntry:
    """A stored entry; one that fails its checksum, does not decode, or
    names another input is ``Corrupt``, naming the entry. ``columns`` are
    the row's unchecksummed (idempotency key, pending) columns, which must
    agree with the checksummed record (PD-72): a flipped ``pending`` would
    otherwise hide an acknowledged entry from its owner."""
    body = stored_body(data, INBOX, runtime_id, "inbox entry", input_id)
    problem: str | None
    try:
        record = _RECORD_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError) as exc:
        problem = str(exc)
    else:
        problem = _disagreement(record, input_id, columns)
        if problem is None:
            return InboxEntry(
                LogicalRuntimeId(runtime_id), arrival, record.input, record.settlement
            )
    raise corruption(INBOX, runtime_id, problem, "inbox entry", input_id)


def decode_row(runtime_id: str, row: Sequence[object]) -> InboxEntry:
    """A SQL store's row (input id, arrival, entry, idempotency key,
    pending), its columns checked against its record."""
    iid, arrival, data, key, pending = row
    return decode_entry(runtime_id, str(iid), int(str(arrival)), data, (key, pending))


def _disagreement(
    record: InboxRecord, input_id: str, columns: tuple[object, object] | None
) -> str | None:
    """What of the row contradicts its record, or None."""
    if str(record.input.id()) != input_id:
        return f"the record names input {str(record.input.id())!r}"
    if columns is None:
        return None
    key, pending = columns
    if key != key_of(record.input):
        return f"its idempotency_key column {key!r} is not the record's"
    if bool(pending) != (record.settlement is None):
        said = "pending" if pending else "settled"
        return f"its pending column says {said}, the record does not"
    return None


def taken_rows(taken: Iterable[InboxEntry]) -> list[tuple[str, bytes | None]]:
    """(input id, the settled record, or None when admitted) of each entry
    an admission takes, encoded before its transaction begins."""
    return [
        (str(e.input_id), None if e.pending else encode_entry(e.input, e.settlement))
        for e in taken
    ]


def checked_submission(inp: object, max_bytes: int) -> Input | Rejected:
    """The input a submission may store, or the rejection admission would
    answer (A-2, A-3). Bad values raise ``ValidationFailed`` exactly as an
    accept does (the same round trip). An ephemeral input is refused too:
    the inbox would make durable what its sender asked never to store."""
    checked = check_structure(inp, max_bytes)
    detail = durability_violation(checked)
    if detail is not None:
        return Rejected(reason=DurabilityViolation(detail=detail))
    detail = peer_mode_violation(checked)
    if detail is not None:
        return Rejected(reason=PeerHandlingModeInvalid(detail=detail))
    if checked.header.durability is InputDurability.EPHEMERAL:
        raise ValidationFailedError(
            "input.header.durability: an ephemeral input cannot be submitted "
            "to another process's runtime (the inbox would store it)"
        )
    return checked


# Stored phases that refuse input until an operator's control command moves
# the runtime on. INITIALIZING and RECOVERING are left out: an owner's
# recovery passes through them and will accept when it is done.
_REFUSING = frozenset(
    {RuntimeState.RETIRED, RuntimeState.STOPPED, RuntimeState.DESTROYED}
)


def refused_in(phase: RuntimeState | None) -> Rejected | None:
    """PD-73: a submission to a runtime whose stored phase refuses input is
    answered as an accept would refuse it (not ready, naming the phase),
    read in the submission's own transaction, and nothing is written. Left
    to the owner, it would be acknowledged and only later settled as
    refused, which a plain ``submit`` caller never learns."""
    if phase is None or phase not in _REFUSING:
        return None
    return Rejected(reason=ReasonNotReady(state=phase))


def key_of(inp: Input) -> str | None:
    key = inp.header.idempotency_key
    return None if key is None else str(key)


def key_pattern(key: str) -> bytes:
    """Bytes every stored input record with this idempotency key contains
    (its header's and its state's field): a cheap filter before decoding."""
    return b'"idempotency_key":' + codec.encode(IdempotencyKey(key))


def ledger_key_match(states: Iterable[InputState], key: str) -> InputId | None:
    """The input of ``states`` (the filter's candidates, in arrival order)
    that really holds ``key``; the latest, as the ledger's index keeps it."""
    found = None
    for state in states:
        if state.idempotency_key is not None and str(state.idempotency_key) == key:
            found = state.input_id
    return found


def duplicate_of(inp: Input, entry: InboxEntry) -> AcceptOutcome | None:
    """A submission's answer when an inbox entry with its id or key is
    found: the entry (or what it was deduplicated into). An entry refused
    by its runtime stands for nothing: None."""
    settlement = entry.settlement
    if settlement is None:
        return Deduplicated(input_id=inp.id(), existing_id=entry.input_id)
    if settlement.deduplicated_into is not None:
        return Deduplicated(input_id=inp.id(), existing_id=settlement.deduplicated_into)
    if entry.input_id == inp.id():
        return Deduplicated(input_id=inp.id(), existing_id=entry.input_id)
    return None
