"""Encoding and decoding of stored records, shared by every store.

A record that fails to decode is reported as ``Corrupt`` (a kind of
``ReadFailed``) naming the runtime, the record and the table, so a corrupt
row is found, not guessed at.
"""

from __future__ import annotations

import msgspec

from meerkat_runtime import codec
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.input_state import InputState, InputStateRecord
from meerkat_runtime.runs import MAX_COUNT, RunBoundaryReceipt, receipt_problem
from meerkat_runtime.store.base import CorruptError, ReadFailedError, WriteFailedError

INPUTS = "runtime_input_states"
RECEIPTS = "runtime_boundary_receipts"
SNAPSHOTS = "runtime_session_snapshots"
STATES = "runtime_states"


def encode_state(state: InputState) -> bytes:
    if not isinstance(state, InputState):
        raise WriteFailedError(
            f"an input state must be an InputState, not {type(state).__name__}"
        )
    try:
        return codec.encode(state.to_record())
    except (TypeError, NotImplementedError, OverflowError, msgspec.EncodeError) as exc:
        raise WriteFailedError(
            f"input {state.input_id} cannot be encoded: {exc}"
        ) from None


def input_row(state: InputState) -> tuple[str, bytes]:
    """(input id, record) of a state, as every store keeps it; a value that
    is not an ``InputState`` is refused by name before anything else."""
    encoded = encode_state(state)
    return str(state.input_id), encoded


_STATE_DECODER = codec.decoder(InputStateRecord)


def stored_bytes(
    data: object, table: str, runtime_id: str, kind: str = "", record_id: str = ""
) -> bytes:
    """A stored record's bytes; anything else in its column (text, a number,
    NULL: foreign or damaged data) is a read failure naming the record. (Its
    text is built only then: recovery calls this for every row.)"""
    if isinstance(data, bytes):
        return data
    record = f", {kind} {record_id!r}" if kind else ""
    raise CorruptError(
        f"corrupt record in {table}: runtime {runtime_id!r}{record}: "
        f"stored as {type(data).__name__}, not bytes"
    )


def decode_state(runtime_id: str, record_id: str, data: object) -> InputState:
    data = stored_bytes(data, INPUTS, runtime_id, "input", record_id)
    try:
        record = _STATE_DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError) as exc:
        raise CorruptError(
            f"corrupt record in {INPUTS}: runtime {runtime_id!r}, input {record_id!r}: {exc}"
        ) from None
    if str(record.input_id) != record_id:
        raise CorruptError(
            f"corrupt record in {INPUTS}: runtime {runtime_id!r}, input {record_id!r}: "
            f"the record names input {record.input_id!r}"
        )
    return InputState.from_record(record, owned=True)


def encode_receipt(receipt: RunBoundaryReceipt) -> bytes:
    """Refuses a receipt that could not be read back (``receipt_problem``)."""
    problem = receipt_problem(receipt)
    if problem is not None:
        raise WriteFailedError(f"receipt cannot be stored: {problem}")
    return codec.encode(receipt)


def receipt_sequence(sequence: object) -> int:
    """A receipt lookup's sequence; anything but an int is refused by name
    (``True`` would find receipt 1, and "1" nothing or a text match)."""
    if not isinstance(sequence, int) or isinstance(sequence, bool):
        raise ReadFailedError(
            f"a receipt sequence must be an int, not {type(sequence).__name__}"
        )
    if not -MAX_COUNT - 1 <= sequence <= MAX_COUNT:
        raise ReadFailedError(f"a receipt sequence out of range: {sequence}")
    return sequence


def decode_receipt(runtime_id: str, record_id: str, data: object) -> RunBoundaryReceipt:
    """The receipt stored under ``record_id`` ("<run id>/<sequence>"); one
    that names another run or sequence is corrupt (recovery trusts it)."""
    data = stored_bytes(data, RECEIPTS, runtime_id, "receipt", record_id)
    try:
        receipt = codec.decode(data, RunBoundaryReceipt)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError) as exc:
        problem = str(exc)
    else:
        named = f"{receipt.run_id}/{receipt.sequence}"
        if named == record_id:
            return receipt
        problem = f"the record names receipt {named!r}"
    raise CorruptError(
        f"corrupt record in {RECEIPTS}: runtime {runtime_id!r}, "
        f"receipt {record_id!r}: {problem}"
    )


def encode_phase(state: RuntimeState) -> bytes:
    """S-10: the JSON string of the phase, quotes included."""
    if not isinstance(state, RuntimeState):
        raise WriteFailedError(
            f"a runtime state must be a RuntimeState, not {type(state).__name__}"
        )
    return codec.encode(state.value)


def decode_phase(runtime_id: str, data: object) -> RuntimeState:
    data = stored_bytes(data, STATES, runtime_id)
    try:
        return RuntimeState(codec.decode(data, str))
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise CorruptError(
            f"corrupt record in {STATES}: runtime {runtime_id!r}: {exc}"
        ) from None


def same_receipt(runtime_id: str, stored: object, new: bytes) -> bool:
    """Decision 16: identical means equal decoded values (not byte layout).
    A stored receipt that does not decode is a read failure, never a crash."""
    receipt = codec.decode(new, RunBoundaryReceipt)
    key = f"{receipt.run_id}/{receipt.sequence}"
    return decode_receipt(runtime_id, key, stored) == receipt
