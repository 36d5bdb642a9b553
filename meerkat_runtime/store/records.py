"""Encoding and decoding of stored records, shared by every store.

Every record is written in the checksum frame of ``integrity`` and decoded
strictly: a key the record type does not have is damage, not something to
skip (one flipped bit in ``"persisted_input"`` would otherwise read as an
input without its payload). A record that fails either check is reported by
``integrity.corruption``, naming the runtime, the record and the table, so a
corrupt row is found, not guessed at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import msgspec

from meerkat_runtime import codec
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import InputId
from meerkat_runtime.input_state import (
    InputSkeletonRecord,
    InputState,
    InputStateRecord,
    decode_record,
    decode_skeleton,
)
from meerkat_runtime.inputs import AnyInput
from meerkat_runtime.runs import MAX_COUNT, RunBoundaryReceipt, receipt_problem
from meerkat_runtime.store.base import ReadFailedError, WriteFailedError
from meerkat_runtime.store.integrity import corruption, frame, frame_problem

R = TypeVar("R", InputStateRecord, InputSkeletonRecord)

INPUTS = "runtime_input_states"
RECEIPTS = "runtime_boundary_receipts"
SNAPSHOTS = "runtime_session_snapshots"
STATES = "runtime_states"


def encode_state(state: InputState) -> bytes:
    if not isinstance(state, InputState):
        raise WriteFailedError(
            f"an input state must be an InputState, not {type(state).__name__}"
        )
    if not state.payload_loaded():
        # Its record would lose the payload the store holds (PD-64): a
        # driver loads payloads before it writes their states.
        raise WriteFailedError(
            f"input {state.input_id}: its payload was left in the store, not loaded"
        )
    try:
        return frame(codec.encode(state.to_record()))
    except (TypeError, NotImplementedError, OverflowError, msgspec.EncodeError) as exc:
        raise WriteFailedError(
            f"input {state.input_id} cannot be encoded: {exc}"
        ) from None


def input_row(state: InputState) -> tuple[str, bytes]:
    """(input id, record) of a state, as every store keeps it; a value that
    is not an ``InputState`` is refused by name before anything else."""
    encoded = encode_state(state)
    return str(state.input_id), encoded


_RECEIPT_DECODER = codec.decoder(RunBoundaryReceipt)
_PHASE_DECODER = codec.decoder(str)


def stored_bytes(
    data: object, table: str, runtime_id: str, kind: str = "", record_id: str = ""
) -> bytes:
    """A stored record's bytes; anything else in its column (text, a number,
    NULL: foreign or damaged data) is a read failure naming the record. (Its
    text is built only then: recovery calls this for every row.)"""
    if isinstance(data, bytes):
        return data
    raise corruption(
        table,
        runtime_id,
        f"stored as {type(data).__name__}, not bytes",
        kind,
        record_id,
    )


def stored_body(
    data: object, table: str, runtime_id: str, kind: str = "", record_id: str = ""
) -> bytes:
    """A stored record whose checksum matches (see ``integrity``)."""
    data = stored_bytes(data, table, runtime_id, kind, record_id)
    problem = frame_problem(data)
    if problem is not None:
        raise corruption(table, runtime_id, problem, kind, record_id)
    return data


def decode_state(runtime_id: str, record_id: str, data: object) -> InputState:
    record = _decoded(runtime_id, record_id, data, decode_record)
    return InputState.from_record(record, owned=True)


def decode_skeleton_state(runtime_id: str, record_id: str, data: object) -> InputState:
    """``decode_state`` with the payload left in the store (PD-64): the
    checksum covers it, its strict decoding waits for ``decode_payload``."""
    record = _decoded(runtime_id, record_id, data, decode_skeleton)
    try:
        return InputState.from_skeleton(record)
    except ValueError as exc:  # an input type no store writes
        raise corruption(INPUTS, runtime_id, str(exc), "input", record_id) from None


def decode_payload(runtime_id: str, record_id: str, data: object) -> AnyInput:
    """The payload of a stored record, decoded strictly; a record that fails
    its checks or holds none is corrupt, naming the input."""
    payload = decode_state(runtime_id, record_id, data).persisted_input
    if payload is None:
        raise corruption(INPUTS, runtime_id, "it holds no payload", "input", record_id)
    return payload


def payloads_found(
    runtime_id: str, input_ids: Sequence[InputId], rows: Iterable[Sequence[object]]
) -> dict[InputId, AnyInput]:
    """The payloads of ``input_ids`` from the (input id, record) ``rows`` a
    store read for them; a missing row is corrupt too, naming the input."""
    stored = {str(row[0]): row[1] for row in rows}
    found: dict[InputId, AnyInput] = {}
    for input_id in input_ids:
        record_id = str(input_id)
        if record_id not in stored:
            raise corruption(
                INPUTS,
                runtime_id,
                "the store holds no record of it",
                "input",
                record_id,
            )
        found[input_id] = decode_payload(runtime_id, record_id, stored[record_id])
    return found


def _decoded(
    runtime_id: str,
    record_id: str,
    data: object,
    decode: Callable[[bytes], R],
) -> R:
    body = stored_body(data, INPUTS, runtime_id, "input", record_id)
    try:
        record = decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError) as exc:
        raise corruption(INPUTS, runtime_id, str(exc), "input", record_id) from None
    if str(record.input_id) != record_id:
        raise corruption(
            INPUTS,
            runtime_id,
            f"the record names input {record.input_id!r}",
            "input",
            record_id,
        )
    return record


def encode_receipt(receipt: RunBoundaryReceipt) -> bytes:
    """Refuses a receipt that could not be read back (``receipt_problem``)."""
    problem = receipt_problem(receipt)
    if problem is not None:
        raise WriteFailedError(f"receipt cannot be stored: {problem}")
    return frame(codec.encode(receipt))


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
    body = stored_body(data, RECEIPTS, runtime_id, "receipt", record_id)
    try:
        receipt = _RECEIPT_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError) as exc:
        problem = str(exc)
    else:
        named = f"{receipt.run_id}/{receipt.sequence}"
        if named == record_id:
            return receipt
        problem = f"the record names receipt {named!r}"
    raise corruption(RECEIPTS, runtime_id, problem, "receipt", record_id)


def encode_phase(state: RuntimeState) -> bytes:
    """S-10: the JSON string of the phase, quotes included (framed)."""
    if not isinstance(state, RuntimeState):
        raise WriteFailedError(
            f"a runtime state must be a RuntimeState, not {type(state).__name__}"
        )
    return frame(codec.encode(state.value))


def decode_phase(runtime_id: str, data: object) -> RuntimeState:
    body = stored_body(data, STATES, runtime_id)
    try:
        return RuntimeState(_PHASE_DECODER.decode(body))
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise corruption(STATES, runtime_id, str(exc)) from None


def same_receipt(runtime_id: str, stored: object, new: bytes) -> bool:
    """Decision 16: identical means equal decoded values (not byte layout).
    A stored receipt that does not decode is a read failure, never a crash."""
    receipt = _RECEIPT_DECODER.decode(new)
    key = f"{receipt.run_id}/{receipt.sequence}"
    return decode_receipt(runtime_id, key, stored) == receipt
