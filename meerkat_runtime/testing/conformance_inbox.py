"""The inbox part of the store conformance suite (PD-58, PD-59, PD-60).

``StoreConformance`` includes it. A store that keeps no inbox
(``keeps_inbox`` False) skips nothing here: it fails, so set the flag only
when the five inbox methods are there.
"""

from __future__ import annotations

import asyncio

import pytest

from meerkat_runtime.errors import (
    ConflictError,
    CorruptError,
    FencedError,
    ValidationFailedError,
    WriteFailedError,
)
from meerkat_runtime.generated import input_lifecycle as il
from meerkat_runtime.generated.runtime_control import RuntimeState
from meerkat_runtime.ids import IdempotencyKey, InputId, LogicalRuntimeId
from meerkat_runtime.input_state import InputState
from meerkat_runtime.inputs import InputDurability, InputHeader, PromptInput
from meerkat_runtime.outcomes import Deduplicated, Rejected, RejectReason, Submitted
from meerkat_runtime.store.base import RuntimeStore
from meerkat_runtime.store.inbox import INBOX, InboxEntry, InboxSettlement
from meerkat_runtime.testing.conformance_ownership import FakeClock
from meerkat_runtime.testing.conformance_support import (
    A,
    B,
    ConformanceHooks,
    poisoned,
    rich_state,
)

IDLE = RuntimeState.IDLE


def prompt(
    text: str = "hi",
    key: str | None = None,
    durability: InputDurability = InputDurability.DURABLE,
) -> PromptInput:
    header = InputHeader.new(
        idempotency_key=None if key is None else IdempotencyKey(key),
        durability=durability,
    )
    return PromptInput(header=header, text=text)


def admitted_state(entry: InboxEntry) -> InputState:
    """The queued state an owner writes for an admitted entry."""
    state = InputState.new_accepted(entry.input_id)
    state.persisted_input = entry.input  # type: ignore[assignment]
    state.durability = entry.input.header.durability
    state.idempotency_key = entry.input.header.idempotency_key
    state.apply(il.QueueAccepted())
    return state


async def _ids(store: RuntimeStore, runtime_id: LogicalRuntimeId) -> list[InputId]:
    return [entry.input_id for entry in await store.load_inbox(runtime_id)]


class InboxConformance(ConformanceHooks):
    def test_inbox_submissions_load_in_arrival_order(self) -> None:
        async def body(store: RuntimeStore) -> None:
            inputs = [prompt(f"m{i}") for i in range(5)]
            for inp in inputs:
                outcome = await store.submit_to_inbox(A, inp)
                assert outcome == Submitted(input_id=inp.id())
            entries = await store.load_inbox(A)
            assert [e.input for e in entries] == inputs
            assert [e.arrival for e in entries] == sorted(e.arrival for e in entries)
            assert all(e.pending and e.runtime_id == A for e in entries)
            assert [e.input for e in await store.load_inbox(A, 2)] == inputs[:2]
            assert await store.list_runtimes_with_inbox() == [A]
            assert await store.load_inbox(B) == []

        self.run(body)

    def test_inbox_deduplicates_ids_and_keys_within_the_inbox(self) -> None:
        async def body(store: RuntimeStore) -> None:
            first = prompt("one", key="k")
            await store.submit_to_inbox(A, first)
            again = await store.submit_to_inbox(A, first)
            assert again == Deduplicated(input_id=first.id(), existing_id=first.id())
            other = prompt("two", key="k")
            found = await store.submit_to_inbox(A, other)
            assert found == Deduplicated(input_id=other.id(), existing_id=first.id())
            assert await _ids(store, A) == [first.id()]
            # Another runtime's inbox is another key space.
            assert isinstance(await store.submit_to_inbox(B, other), Submitted)

        self.run(body)

    def test_inbox_deduplicates_against_the_ledger(self) -> None:
        async def body(store: RuntimeStore) -> None:
            stored = rich_state(1)
            await store.persist_input_state(A, stored)
            key = stored.idempotency_key
            assert key is not None
            same_key = prompt("again", key=str(key))
            outcome = await store.submit_to_inbox(A, same_key)
            assert outcome == Deduplicated(
                input_id=same_key.id(), existing_id=stored.input_id
            )
            assert stored.persisted_input is not None
            same_id = await store.submit_to_inbox(A, stored.persisted_input)
            assert same_id == Deduplicated(
                input_id=stored.input_id, existing_id=stored.input_id
            )
            # A key that only a prefix of the stored one is no match.
            partial = prompt("p", key=str(key)[:-1])
            assert isinstance(await store.submit_to_inbox(A, partial), Submitted)
            assert await _ids(store, A) == [partial.id()]

        self.run(body)

    def test_concurrent_submissions_of_one_key_store_exactly_one(self) -> None:
        async def body(store: RuntimeStore) -> None:
            inputs = [prompt(f"m{i}", key="shared") for i in range(8)]
            outcomes = await asyncio.gather(
                *(store.submit_to_inbox(A, inp) for inp in inputs)
            )
            winners = [o for o in outcomes if isinstance(o, Submitted)]
            assert len(winners) == 1
            assert all(
                o == Deduplicated(input_id=o.input_id, existing_id=winners[0].input_id)
                for o in outcomes
                if isinstance(o, Deduplicated)
            )
            assert await _ids(store, A) == [winners[0].input_id]

        self.run(body)

    def test_inbox_refuses_bad_input_leaving_nothing(self) -> None:
        async def body(store: RuntimeStore) -> None:
            bad = PromptInput(header=InputHeader.new(), text=float("nan"))  # type: ignore[arg-type]
            with pytest.raises(ValidationFailedError, match="text"):
                await store.submit_to_inbox(A, bad)
            with pytest.raises(ValidationFailedError, match="ephemeral"):
                await store.submit_to_inbox(
                    A, prompt(durability=InputDurability.EPHEMERAL)
                )
            with pytest.raises(ValidationFailedError, match="size limit"):
                await store.submit_to_inbox(A, prompt("x" * 200), max_input_bytes=100)
            derived = prompt(durability=InputDurability.DERIVED)
            assert isinstance(await store.submit_to_inbox(A, derived), Rejected)
            assert await store.load_inbox(A) == []
            assert await store.list_runtimes_with_inbox() == []
            assert self.raw_rows(store, INBOX, A) == {}

        self.run(body)

    def test_a_runtime_refusing_input_refuses_submissions_writing_nothing(
        self,
    ) -> None:
        """PD-73: answered at once as an accept would refuse it, instead of
        acknowledged and settled as refused later."""

        async def body(store: RuntimeStore) -> None:
            for phase in (
                RuntimeState.RETIRED,
                RuntimeState.STOPPED,
                RuntimeState.DESTROYED,
            ):
                await store.persist_runtime_state(A, phase)
                outcome = await store.submit_to_inbox(A, prompt())
                assert outcome == Rejected(reason=RejectReason.NotReady(state=phase))
            assert await store.load_inbox(A) == []
            assert self.raw_rows(store, INBOX, A) == {}
            for phase in (RuntimeState.RECOVERING, IDLE):  # an owner's own phases
                await store.persist_runtime_state(A, phase)
                assert isinstance(await store.submit_to_inbox(A, prompt()), Submitted)

        self.run(body)

    def test_admission_moves_entries_to_the_ledger_in_one_commit(self) -> None:
        async def body(store: RuntimeStore) -> None:
            inputs = [prompt(f"m{i}", key=f"k{i}") for i in range(3)]
            for inp in inputs:
                await store.submit_to_inbox(A, inp)
            first_two = await store.load_inbox(A, 2)
            states = [admitted_state(e) for e in first_two]
            await store.admit_from_inbox(A, RuntimeState.ATTACHED, states, first_two)
            assert await _ids(store, A) == [inputs[2].id()]
            assert await store.load_runtime_state(A) is RuntimeState.ATTACHED
            for inp in inputs[:2]:
                assert await store.load_inbox_entry(A, inp.id()) is None
                loaded = await store.load_input_state(A, inp.id())
                assert loaded is not None
                assert loaded.persisted_input == inp
            # Its key is the ledger's now: still a duplicate.
            late = prompt("late", key="k0")
            outcome = await store.submit_to_inbox(A, late)
            assert outcome == Deduplicated(
                input_id=late.id(), existing_id=inputs[0].id()
            )
            # Arrival goes on after the entry still waiting.
            await store.submit_to_inbox(A, prompt("m3"))
            assert (await _ids(store, A))[0] == inputs[2].id()

        self.run(body)

    def test_settled_entries_stay_readable_and_stop_being_work(self) -> None:
        async def body(store: RuntimeStore) -> None:
            refused, duplicate = prompt("r", key="kr"), prompt("d", key="kd")
            await store.submit_to_inbox(A, refused)
            await store.submit_to_inbox(A, duplicate)
            existing = InputId.new()
            entries = await store.load_inbox(A)
            taken = [
                entries[0].settled(InboxSettlement(refused="runtime retired")),
                entries[1].settled(InboxSettlement(deduplicated_into=existing)),
            ]
            await store.admit_from_inbox(A, IDLE, [], taken)
            assert await store.load_inbox(A) == []
            assert await store.list_runtimes_with_inbox() == []
            entry = await store.load_inbox_entry(A, refused.id())
            assert entry is not None
            assert entry.settlement == taken[0].settlement
            # The duplicate's key names what it was settled into; a refused
            # entry's key stands for nothing, its id for itself.
            again = prompt("d2", key="kd")
            assert await store.submit_to_inbox(A, again) == Deduplicated(
                input_id=again.id(), existing_id=existing
            )
            assert isinstance(
                await store.submit_to_inbox(A, prompt(key="kr")), Submitted
            )
            assert await store.submit_to_inbox(A, refused) == Deduplicated(
                input_id=refused.id(), existing_id=refused.id()
            )

        self.run(body)

    def test_a_failed_admission_writes_nothing(self) -> None:
        async def body(store: RuntimeStore) -> None:
            await store.submit_to_inbox(A, prompt())
            entries = await store.load_inbox(A)
            state = admitted_state(entries[0])
            with pytest.raises(WriteFailedError):
                await store.admit_from_inbox(A, IDLE, [poisoned(state)], entries)
            assert await store.load_inbox(A) == entries
            assert await store.load_input_states(A) == []
            assert await store.load_runtime_state(A) is None

        self.run(body)

    def test_an_entry_taken_twice_conflicts_and_writes_nothing(self) -> None:
        async def body(store: RuntimeStore) -> None:
            await store.submit_to_inbox(A, prompt("one"))
            await store.submit_to_inbox(A, prompt("two"))
            one, two = await store.load_inbox(A)
            await store.admit_from_inbox(A, IDLE, [admitted_state(one)], [one])
            with pytest.raises(ConflictError, match="no longer pending"):
                await store.admit_from_inbox(
                    A, RuntimeState.ATTACHED, [admitted_state(two)], [two, one]
                )
            assert await store.load_inbox(A) == [two]
            assert await store.load_input_state(A, two.input_id) is None
            assert await store.load_runtime_state(A) is IDLE

        self.run(body)

    def test_a_stale_owners_admission_is_fenced_whole(self) -> None:
        async def body(store: RuntimeStore) -> None:
            clock = FakeClock()
            store.lease_clock = clock  # type: ignore[attr-defined]
            stale = await store.claim(A, "first", ttl=10.0)
            clock.now += 20.0
            await store.claim(A, "second")
            await store.submit_to_inbox(A, prompt())
            entries = await store.load_inbox(A)
            with pytest.raises(FencedError):
                await store.fenced(A, stale).admit_from_inbox(
                    A, IDLE, [admitted_state(entries[0])], entries
                )
            assert await store.load_inbox(A) == entries
            assert await store.load_input_states(A) == []

        self.run(body)

    def test_a_corrupt_entry_fails_closed_naming_it(self) -> None:
        async def body(store: RuntimeStore) -> None:
            inp = prompt()
            await store.submit_to_inbox(A, inp)
            data = self.raw_rows(store, INBOX, A)[str(inp.id())]
            flipped = data.replace(b'"hi"', b'"ho"')
            self.corrupt_row(store, INBOX, A, str(inp.id()), flipped)
            for load in (
                store.load_inbox(A),
                store.load_inbox_entry(A, inp.id()),
                store.submit_to_inbox(A, inp),
            ):
                with pytest.raises(CorruptError, match=f"{INBOX}.*{inp.id()}"):
                    await load

        self.run(body)
