"""The ledger (input states by id, the idempotency index) and the two lanes.

Theory of operation: upstream keeps three structures in step by hand (ledger,
ingress queues, physical queues) and several of its quirks come from them
drifting apart. Here the ledger and the lanes are the only truth: an id is in
a lane exactly while its input is Queued and waiting, and every operation
that terminalises or stages an input takes it out of its lane at once
(decisions 1, 3, 8).

``dequeue_next`` is a read cursor over the lanes (upstream's physical-lane
pop, R-5): it marks ids as taken without changing their state, and any change
to the lanes clears the marks, as upstream's lane rebuild does.
"""

from __future__ import annotations

import enum
import functools
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from meerkat_runtime.generated.policy_table import RoutingDisposition
from meerkat_runtime.ids import IdempotencyKey, InputId
from meerkat_runtime.input_state import InputState, PolicySnapshot


class Lane(enum.Enum):
    QUEUE = "queue"
    STEER = "steer"


def lane_for(policy: PolicySnapshot | None) -> Lane:
    """P-12: steer routing uses the steer lane; everything else the queue."""
    if (
        policy is not None
        and policy.decision.routing_disposition is RoutingDisposition.STEER
    ):
        return Lane.STEER
    return Lane.QUEUE


class InputLedger:
    """Insertion-ordered input states and the idempotency key index (L-14)."""

    __slots__ = ("_keys", "_states")

    def __init__(self) -> None:
        self._states: dict[InputId, InputState] = {}
        self._keys: dict[IdempotencyKey, InputId] = {}

    def get(self, input_id: InputId) -> InputState | None:
        return self._states.get(input_id)

    def __contains__(self, input_id: object) -> bool:
        return input_id in self._states

    def __len__(self) -> int:
        return len(self._states)

    def __iter__(self) -> Iterator[InputState]:
        return iter(self._states.values())

    def insert(self, state: InputState) -> None:
        self._states[state.input_id] = state
        if state.idempotency_key is not None:
            self._keys[state.idempotency_key] = state.input_id

    def replace(self, state: InputState) -> None:
        """Put back an earlier copy of an entry (checkpoint restore)."""
        self._states[state.input_id] = state

    def keys_snapshot(self) -> dict[IdempotencyKey, InputId]:
        return dict(self._keys)

    def restore_keys(self, keys: dict[IdempotencyKey, InputId]) -> None:
        self._keys = keys

    def remove(self, input_id: InputId) -> InputState | None:
        state = self._states.pop(input_id, None)
        key = state.idempotency_key if state is not None else None
        if key is not None and self._keys.get(key) == input_id:  # only its own entry
            del self._keys[key]
        return state

    def id_for_key(self, key: IdempotencyKey) -> InputId | None:
        return self._keys.get(key)

    def forget_keys(self) -> None:
        """Decision 12: destroy forgets keys; reset and restarts do not."""
        self._keys.clear()

    def non_terminal(self) -> list[InputState]:
        return [s for s in self._states.values() if not s.is_terminal()]

    def active_ids(self) -> list[InputId]:
        return [s.input_id for s in self._states.values() if not s.is_terminal()]


class Lanes:
    """The queue and steer lanes of waiting input ids."""

    __slots__ = ("_lanes", "_taken", "journal")

    def __init__(self) -> None:
        self._lanes: dict[Lane, deque[InputId]] = {
            Lane.QUEUE: deque(),
            Lane.STEER: deque(),
        }
        self._taken: set[InputId] = set()
        # While a checkpoint is open, each change records its inverse here
        # (cheaper than copying lanes that may hold 100k ids).
        self.journal: list[Callable[[], object]] | None = None

    def _undo(self, action: Callable[[], object]) -> None:
        if self.journal is not None:
            self.journal.append(action)

    def _forget_taken(self) -> None:
        """A change to the lanes resets what ``dequeue_next`` has handed out;
        undoing the change brings those marks back (decision 14: a refused
        operation leaves memory as it was, the read position included)."""
        taken = self._taken
        if taken:
            self._taken = set()
            self._undo(functools.partial(setattr, self, "_taken", taken))

    def ids(self, lane: Lane) -> list[InputId]:
        return list(self._lanes[lane])

    def __len__(self) -> int:
        return len(self._lanes[Lane.QUEUE]) + len(self._lanes[Lane.STEER])

    def is_empty(self) -> bool:
        return not self._lanes[Lane.QUEUE] and not self._lanes[Lane.STEER]

    def push(self, input_id: InputId, lane: Lane, front: bool = False) -> None:
        self._forget_taken()
        ids = self._lanes[lane]
        if front:
            ids.appendleft(input_id)
            self._undo(ids.popleft)
        else:
            ids.append(input_id)
            self._undo(ids.pop)

    def push_all(self, ids: Sequence[InputId], lane: Lane) -> None:
        """``push`` of each id in turn, as one step (recovery queues 100k)."""
        if not ids:
            return  # the lanes stay as they are, and so do the taken marks
        self._forget_taken()
        lane_ids = self._lanes[lane]
        lane_ids.extend(ids)
        count = len(ids)

        def undo() -> None:
            for _ in range(count):
                lane_ids.pop()

        self._undo(undo)

    def push_front_in_order(self, ids: Sequence[InputId], lane: Lane) -> None:
        """Decision 2: put a batch back at the front in its original order."""
        self._forget_taken()
        lane_ids = self._lanes[lane]
        lane_ids.extendleft(reversed(ids))
        count = len(ids)

        def undo() -> None:
            for _ in range(count):
                lane_ids.popleft()

        self._undo(undo)

    def remove(self, input_id: InputId) -> Lane | None:
        """Take an id out of whichever lane holds it; ``None`` if none does."""
        for lane, ids in self._lanes.items():
            if input_id in ids:
                index = ids.index(input_id)
                del ids[index]
                self._forget_taken()
                self._undo(functools.partial(ids.insert, index, input_id))
                return lane
        return None

    def active_lane(self) -> Lane:
        """R-6: the steer lane drains first whenever it holds anything."""
        return Lane.STEER if self._lanes[Lane.STEER] else Lane.QUEUE

    def is_prefix(self, ids: Sequence[InputId]) -> bool:
        lane = self._lanes[self.active_lane()]
        return len(ids) <= len(lane) and all(lane[i] == ids[i] for i in range(len(ids)))

    def pop_prefix(self, count: int) -> Lane:
        lane = self.active_lane()
        lane_ids = self._lanes[lane]
        popped = [lane_ids.popleft() for _ in range(count)]
        self._forget_taken()
        self._undo(lambda: lane_ids.extendleft(reversed(popped)))
        return lane

    def clear(self) -> None:
        saved = {lane: list(ids) for lane, ids in self._lanes.items()}
        for ids in self._lanes.values():
            ids.clear()
        self._forget_taken()
        self._undo(lambda: self._refill(saved))

    def _refill(self, saved: dict[Lane, list[InputId]]) -> None:
        # In place: earlier undo steps hold references to these same deques.
        for lane, ids in self._lanes.items():
            ids.clear()
            ids.extend(saved[lane])

    def take_next(self) -> InputId | None:
        """R-5: the first not-yet-taken id, steer lane first; marks it taken."""
        for lane in (Lane.STEER, Lane.QUEUE):
            for input_id in self._lanes[lane]:
                if input_id not in self._taken:
                    self._taken.add(input_id)
                    return input_id
        return None

    def take(self, input_id: InputId) -> bool:
        if input_id in self._taken or not any(
            input_id in ids for ids in self._lanes.values()
        ):
            return False
        self._taken.add(input_id)
        return True
