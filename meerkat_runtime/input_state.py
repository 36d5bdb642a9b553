"""``InputState``: one input's ledger entry, wrapping the generated authority.

Theory of operation: the lifecycle phase and its fields (terminal outcome,
last run, last boundary sequence, attempts) live in an
``InputLifecycleAuthority`` that only ``apply`` can change, so no caller can
assign a phase (STYLE.md 1). Around it sit the operational fields upstream
lets callers set (``persisted_input``, ``policy`` ...) and a history of every
transition with a stable snake_case reason (decision 15): the transition's
name in the spec. A transition caused by a failed run (its inputs go back, or
are abandoned when out of attempts) also records the run's error, bounded to
``MAX_ERROR_CHARS``, so a failure stays visible in the record, in ``inspect``
and in the waiter's outcome; records written before that field decode
without it. Each entry also keeps the parameters of the input that fired
it (run id, boundary sequence, abandon reason, replacing input: PD-48), so
``audit`` can replay the history through the spec.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import msgspec

from meerkat_runtime import codec
from meerkat_runtime.codec import Value
from meerkat_runtime.generated.input_lifecycle import (
    Abandon,
    Coalesce,
    InputLifecycleAuthority,
    InputLifecycleInput,
    InputLifecycleSnapshot,
    InputLifecycleState,
    InputLifecycleTransition,
    MarkApplied,
    MarkAppliedPendingConsumption,
    StageForRun,
    Supersede,
)
from meerkat_runtime.generated.policy_table import PolicyDecision
from meerkat_runtime.generated.spec_types import (
    AnyInputTerminalOutcome,
    InputAbandonReason,
)
from meerkat_runtime.ids import IdempotencyKey, InputId, RunId
from meerkat_runtime.inputs import (
    AnyInput,
    InputDurability,
    PayloadKey,
    ReadableInput,
    StoredPayload,
    canonical_input,
)


# The stored record types refuse unknown keys: in a stored record one is
# damage (a flipped bit in a key), never a field to skip.
class PolicySnapshot(
    Value, frozen=True, kw_only=True, gc=False, forbid_unknown_fields=True
):
    """The decision recorded for an input, with the table version (A-8)."""

    version: int
    decision: PolicyDecision


MAX_ERROR_CHARS = 500  # one failure's text in a history entry or an outcome


def bounded_error(text: str) -> str:
    """``text`` cut to ``MAX_ERROR_CHARS`` (a traceback-sized message must
    not bloat every stored record of the batch)."""
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return text[: MAX_ERROR_CHARS - 1] + "…"


class InputStateHistoryEntry(
    Value, frozen=True, kw_only=True, gc=False, forbid_unknown_fields=True
):
    """One transition (L-7), written ``{timestamp, from, to, reason}`` as
    upstream (schema 2 wrote ``from_state``/``to_state``: still read,
    PD-40); ``error`` is this port's addition (PD-21, PD-41)."""

    timestamp: datetime
    from_state: InputLifecycleState = msgspec.field(name="from")
    to_state: InputLifecycleState = msgspec.field(name="to")
    reason: str
    error: str | None = None  # the failed run's error, for its rollback
    # The transition's parameters, so that ``audit`` can replay the history
    # and re-evaluate its guards (PD-48). Entries written before they were
    # recorded decode without them.
    run_id: RunId | None = None
    boundary_sequence: int | None = None
    abandon_reason: InputAbandonReason | None = None
    replaced_by: InputId | None = None  # the superseding or aggregate input

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        """Reads schema 2's keys too (PD-40)."""
        return _with_legacy_keys(codec.decoder(cls), data, _renamed_entry)


class _RecordFields(
    Value, frozen=True, gc=False, kw_only=True, forbid_unknown_fields=True
):
    """The fields of a stored input record before its payload's."""

    input_id: InputId
    current_state: InputLifecycleState
    created_at: datetime
    updated_at: datetime
    policy: PolicySnapshot | None = None
    terminal_outcome: AnyInputTerminalOutcome | None = None
    durability: InputDurability | None = None
    idempotency_key: IdempotencyKey | None = None
    # Always written, unlike the other defaults (L-10); 0 when absent.
    attempt_count: int = msgspec.field(default_factory=int)
    recovery_count: int = msgspec.field(default_factory=int)
    history: list[InputStateHistoryEntry] = msgspec.field(default_factory=list)
    reconstruction_source: str | None = None


class InputStateRecord(
    _RecordFields, frozen=True, gc=False, kw_only=True, forbid_unknown_fields=True
):
    """The wire form of an ``InputState`` (L-10), as stores keep it."""

    # Read with T-1's legacy tags too; ``from_record`` makes them canonical.
    persisted_input: ReadableInput | None = None
    last_run_id: RunId | None = None
    last_boundary_sequence: int | None = None


class InputSkeletonRecord(
    _RecordFields, frozen=True, gc=False, kw_only=True, forbid_unknown_fields=True
):
    """A stored record read without its payload (PD-64): the payload is
    parsed only for its key; its strict decoding waits until it is loaded.
    (Not a subclass of ``InputStateRecord``: the codec would take a
    subclass for a variant of it.)"""

    persisted_input: StoredPayload | None = None
    last_run_id: RunId | None = None
    last_boundary_sequence: int | None = None


T = TypeVar("T")
_RECORD_DECODER = codec.decoder(InputStateRecord)
_SKELETON_DECODER = codec.decoder(InputSkeletonRecord)
# Schema 2's names for a history entry's states (PD-40), and today's.
_LEGACY_HISTORY_KEYS = (("from_state", "from"), ("to_state", "to"))


def decode_record(data: bytes | str) -> InputStateRecord:
    """A stored record, in the current form or schema 2's (PD-40)."""
    return _with_legacy_keys(_RECORD_DECODER, data, _renamed_history)


def decode_skeleton(data: bytes | str) -> InputSkeletonRecord:
    """``decode_record`` without decoding the payload (PD-64)."""
    return _with_legacy_keys(_SKELETON_DECODER, data, _renamed_history)


def _with_legacy_keys(
    decoder: msgspec.json.Decoder[T],
    data: bytes | str,
    rename: Callable[[object], bool],
) -> T:
    """``data`` decoded in the current form or, failing that, with its old
    history keys renamed (``rename`` renames them in place, and says whether
    there were any). The current form is tried first: it is what every store
    writes now. When neither fits, the current form's error is raised."""
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as current:
        raw = msgspec.json.decode(data)
        if not rename(raw):
            raise
        try:
            return decoder.decode(msgspec.json.encode(raw))
        except msgspec.ValidationError:
            raise current from None


def _renamed_history(record: object) -> bool:
    history = record.get("history") if isinstance(record, dict) else None
    entries = history if isinstance(history, list) else []
    renamed = [_renamed_entry(entry) for entry in entries]  # every one, in full
    return any(renamed)


def _renamed_entry(entry: object) -> bool:
    """Rename one entry's old keys in place, where the new key is absent (an
    entry holding both is left for the decoder to refuse)."""
    renamed = False
    for old, new in _LEGACY_HISTORY_KEYS:
        if isinstance(entry, dict) and old in entry and new not in entry:
            entry[new] = entry.pop(old)
            renamed = True
    return renamed


# Decoded policies, each kept once (see ``InputState.from_skeleton``); a
# table has few distinct decisions, and the cache is emptied if one has many.
_POLICIES: dict[PolicySnapshot, PolicySnapshot] = {}
_MAX_POLICIES = 256


def _shared_policy(policy: PolicySnapshot | None) -> PolicySnapshot | None:
    if policy is None:
        return None
    shared = _POLICIES.get(policy)
    if shared is None:
        if len(_POLICIES) >= _MAX_POLICIES:
            _POLICIES.clear()
        shared = _POLICIES[policy] = policy
    return shared


def _shared_entry(
    entry: InputStateHistoryEntry, created_at: datetime
) -> InputStateHistoryEntry:
    """``entry`` with its reason (a transition's name) kept once per
    process, and its timestamp the input's ``created_at`` when equal (the
    accept's own entry): two objects fewer for each recovered input."""
    reason = sys.intern(entry.reason)
    shared = created_at if entry.timestamp == created_at else entry.timestamp
    if reason is entry.reason and shared is entry.timestamp:
        return entry
    return msgspec.structs.replace(entry, reason=reason, timestamp=shared)


def _now() -> datetime:
    return datetime.now(UTC)


_Parameters = tuple[RunId | None, int | None, InputAbandonReason | None, InputId | None]
_NO_PARAMETERS: _Parameters = (None, None, None, None)


# What a history entry records of the input that fired it (PD-48), by the
# input's type: one lookup on the accept path, whose input has none.
_PARAMETERS: dict[type[InputLifecycleInput], Callable[[Any], _Parameters]] = {
    StageForRun: lambda i: (i.run_id, None, None, None),
    MarkApplied: lambda i: (i.run_id, None, None, None),
    MarkAppliedPendingConsumption: lambda i: (None, i.boundary_sequence, None, None),
    Abandon: lambda i: (None, None, i.reason, None),
    Supersede: lambda i: (None, None, None, i.superseded_by),
    Coalesce: lambda i: (None, None, None, i.aggregate_id),
}


def _parameters(lifecycle_input: InputLifecycleInput) -> _Parameters:
    extract = _PARAMETERS.get(type(lifecycle_input))
    return _NO_PARAMETERS if extract is None else extract(lifecycle_input)


class InputState:
    """One input's lifecycle record. Its phase changes only through ``apply``."""

    __slots__ = (
        "_authority",
        "_history",
        "_updated_at",
        "created_at",
        "durability",
        "idempotency_key",
        "input_id",
        "persisted_input",
        "policy",
        "reconstruction_source",
        "recovery_count",
        "stored_payload",
    )

    def __init__(
        self,
        input_id: InputId,
        authority: InputLifecycleAuthority,
        created_at: datetime,
        updated_at: datetime | None = None,
        history: list[InputStateHistoryEntry] | None = None,
    ) -> None:
        self.input_id = input_id
        self._authority = authority
        self.created_at = created_at
        self._updated_at = updated_at or created_at
        self._history = history if history is not None else []
        self.policy: PolicySnapshot | None = None
        self.durability: InputDurability | None = None
        self.idempotency_key: IdempotencyKey | None = None
        self.recovery_count = 0
        self.reconstruction_source: str | None = None
        self.persisted_input: AnyInput | None = None
        # Set while the payload is left in the store (PD-64): what the
        # ledger needs of it without loading it.
        self.stored_payload: PayloadKey | None = None

    @classmethod
    def new_accepted(cls, input_id: InputId, now: datetime | None = None) -> InputState:
        return cls(input_id, InputLifecycleAuthority(), now or _now())

    # -- lifecycle (read) -------------------------------------------------

    def current_state(self) -> InputLifecycleState:
        return self._authority.phase()

    def is_terminal(self) -> bool:
        return self._authority.phase().is_terminal()

    def terminal_outcome(self) -> AnyInputTerminalOutcome | None:
        return self._authority.terminal_outcome()

    def last_run_id(self) -> RunId | None:
        return self._authority.last_run_id()

    def last_boundary_sequence(self) -> int | None:
        return self._authority.last_boundary_sequence()

    def attempt_count(self) -> int:
        return self._authority.attempt_count()

    def history(self) -> list[InputStateHistoryEntry]:
        return list(self._history)

    def updated_at(self) -> datetime:
        return self._updated_at

    def last_error(self) -> str | None:
        """The error of the most recent failed run this input took part in."""
        for entry in reversed(self._history):
            if entry.error is not None:
                return entry.error
        return None

    def lifecycle_snapshot(self) -> InputLifecycleSnapshot:
        return self._authority.snapshot()

    def is_consistent(self) -> bool:
        """The spec's invariants and field ranges hold (a stored record can
        break them: ``audit`` and recovery check)."""
        return self._authority.is_consistent()

    def violated_invariants(self) -> tuple[str, ...]:
        return self._authority.violated_invariants()

    # -- lifecycle (change) -----------------------------------------------

    def can_accept(self, lifecycle_input: InputLifecycleInput) -> bool:
        return self._authority.can_accept(lifecycle_input)

    def apply(
        self,
        lifecycle_input: InputLifecycleInput,
        now: datetime | None = None,
        error: str | None = None,
    ) -> InputLifecycleTransition:
        """Apply through the authority (raises and changes nothing if illegal).
        ``error``: why, when a failed run caused it (kept in the history)."""
        transition = self._authority.apply(lifecycle_input)
        stamp = now or _now()
        run_id, sequence, abandon_reason, replaced_by = _parameters(lifecycle_input)
        self._history.append(
            InputStateHistoryEntry(
                timestamp=stamp,
                from_state=transition.from_phase,
                to_state=transition.next_phase,
                reason=transition.name,
                error=None if error is None else bounded_error(error),
                run_id=run_id,
                boundary_sequence=sequence,
                abandon_reason=abandon_reason,
                replaced_by=replaced_by,
            )
        )
        self._updated_at = stamp
        return transition

    def stamp_receipt_metadata(self, run_id: RunId, sequence: int) -> None:
        """L-9: a store records which boundary applied the input, in any
        phase (S-3: a store never judges lifecycle legality, so this is not
        the authority's ``StampReceipt`` transition, which refuses an
        accepted input). Not a transition: no history entry, no event."""
        stamped = msgspec.structs.replace(
            self._authority.snapshot(),
            last_run_id=run_id,
            last_boundary_sequence=sequence,
        )
        self._authority = InputLifecycleAuthority.restore(stamped)

    # -- the payload (PD-64) ----------------------------------------------

    def has_payload(self) -> bool:
        """The input has a payload, in memory or left in the store."""
        return self.persisted_input is not None or self.stored_payload is not None

    def payload_loaded(self) -> bool:
        """False while the payload is left in the store (``stored_payload``)."""
        return self.stored_payload is None

    def payload_key(self) -> PayloadKey | None:
        """The kind and supersession key of the payload, loaded or not."""
        if self.stored_payload is not None:
            return self.stored_payload
        payload = self.persisted_input
        return None if payload is None else PayloadKey.of(payload)

    def load_payload(self, payload: AnyInput) -> None:
        """Put back the payload the store kept (``stored_payload``)."""
        self.persisted_input = payload
        self.stored_payload = None

    def drop_payload(self) -> None:
        """Leave the (durable) payload in the store: only its key stays."""
        if self.persisted_input is not None:
            self.stored_payload = PayloadKey.of(self.persisted_input)
            self.persisted_input = None

    # -- copies and records -----------------------------------------------

    def clone(self) -> InputState:
        copy = InputState(
            self.input_id,
            InputLifecycleAuthority.restore(self._authority.snapshot()),
            self.created_at,
            self._updated_at,
            list(self._history),
        )
        copy.policy = self.policy
        copy.durability = self.durability
        copy.idempotency_key = self.idempotency_key
        copy.recovery_count = self.recovery_count
        copy.reconstruction_source = self.reconstruction_source
        copy.persisted_input = self.persisted_input
        copy.stored_payload = self.stored_payload
        return copy

    def to_record(self) -> InputStateRecord:
        snap = self._authority.snapshot()
        return InputStateRecord(
            input_id=self.input_id,
            current_state=snap.phase,
            created_at=self.created_at,
            updated_at=self._updated_at,
            policy=self.policy,
            terminal_outcome=snap.terminal_outcome,
            durability=self.durability,
            idempotency_key=self.idempotency_key,
            attempt_count=snap.attempt_count,
            recovery_count=self.recovery_count,
            history=list(self._history),
            reconstruction_source=self.reconstruction_source,
            persisted_input=self.persisted_input,
            last_run_id=snap.last_run_id,
            last_boundary_sequence=snap.last_boundary_sequence,
        )

    @classmethod
    def from_record(
        cls, record: InputStateRecord, *, owned: bool = False
    ) -> InputState:
        """Rebuild exactly from a stored record (L-10: no validation of phases).
        ``owned``: the record was just decoded and is dropped after this, so
        the state may keep its history list instead of copying it."""
        payload = canonical_input(record.persisted_input)
        # One id object for the state and its payload's header, as accepting
        # makes them (a decoded record carries two equal copies).
        input_id = (
            payload.header.id
            if payload is not None and payload.header.id == record.input_id
            else record.input_id
        )
        state = cls._restored(record, input_id, owned)
        state.policy = record.policy
        state.persisted_input = payload
        return state

    @classmethod
    def from_skeleton(cls, record: InputSkeletonRecord) -> InputState:
        """``from_record`` of a record read without its payload, which stays
        in the store (PD-64). Equal policies and timestamps share one object
        (a deep queue holds a million of these)."""
        state = cls._restored(record, record.input_id, owned=True)
        if record.updated_at == record.created_at:
            state._updated_at = state.created_at
        state._history = [_shared_entry(e, state.created_at) for e in state._history]
        state.policy = _shared_policy(record.policy)
        stored = record.persisted_input
        state.stored_payload = None if stored is None else stored.key()
        return state

    @classmethod
    def _restored(
        cls,
        record: InputStateRecord | InputSkeletonRecord,
        input_id: InputId,
        owned: bool,
    ) -> InputState:
        """The state of ``record`` apart from its policy and payload."""
        authority = InputLifecycleAuthority.restore(
            InputLifecycleSnapshot(
                phase=record.current_state,
                terminal_outcome=record.terminal_outcome,
                last_run_id=record.last_run_id,
                last_boundary_sequence=record.last_boundary_sequence,
                attempt_count=record.attempt_count,
            )
        )
        state = cls(
            input_id,
            authority,
            record.created_at,
            record.updated_at,
            record.history if owned else list(record.history),
        )
        state.durability = record.durability
        state.idempotency_key = record.idempotency_key
        state.recovery_count = record.recovery_count
        state.reconstruction_source = record.reconstruction_source
        return state

    def to_json(self) -> bytes:
        return codec.encode(self.to_record())

    @classmethod
    def from_json(cls, data: bytes | str) -> InputState:
        return cls.from_record(decode_record(data))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InputState) and other.to_record() == self.to_record()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"InputState.from_record({self.to_record()!r})"


codec.register_custom(
    InputState,
    lambda state: codec.to_builtins(state.to_record()),
    lambda raw: InputState.from_record(decode_record(codec.encode(raw))),
)
