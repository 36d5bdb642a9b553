"""``verify``: consistency report of one runtime's stored records.

Recovery trusts receipts: an input consumed by a run must be named by that
run's receipt, and a receipt must name inputs the store knows. This reads
everything a store holds for a runtime and lists what does not fit, in plain
sentences, without changing anything.
"""

from __future__ import annotations

from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.ids import LogicalRuntimeId
from meerkat_runtime.store.base import RuntimeStore

_S = InputLifecycleState


async def verify(store: RuntimeStore, runtime_id: LogicalRuntimeId) -> list[str]:
    """Inconsistencies between the input records and the receipts (empty when
    consistent). Raises ``RuntimeStoreError.Corrupt`` (a ``ReadFailed``) on
    a corrupt row."""
    states = {s.input_id: s for s in await store.load_input_states(runtime_id)}
    receipts = {
        (r.run_id, r.sequence): r
        for r in await store.load_boundary_receipts(runtime_id)
    }
    # Sets, built once: a receipt may name 20k inputs, each looked up in it.
    names = {key: set(r.contributing_input_ids) for key, r in receipts.items()}
    problems = []
    for state in states.values():
        phase = state.current_state()
        key = (state.last_run_id(), state.last_boundary_sequence())
        named = key in names and state.input_id in names[key]
        if (
            phase is _S.CONSUMED
            and key[0] is not None
            and key[1] is not None
            and not named
        ):
            problems.append(
                f"input {state.input_id} is consumed by run {key[0]} boundary {key[1]} "
                "but no receipt names it"
            )
        if phase is _S.APPLIED_PENDING_CONSUMPTION and not named:
            problems.append(
                f"input {state.input_id} is applied but no receipt names it "
                "(recovery will run it again)"
            )
    for (run_id, sequence), receipt in receipts.items():
        for input_id in receipt.contributing_input_ids:
            if input_id not in states:
                problems.append(
                    f"receipt {run_id}/{sequence} names input {input_id}, which has no "
                    "stored record (unknown, or an ephemeral input that is never stored)"
                )
    return problems
