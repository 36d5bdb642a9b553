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


# A supersession scope within a runtime: (input kind, supersession key).
Scope = tuple[str, object]


def scope_of(state: InputState) -> Scope | None:
    # From the payload's key: the payload itself may be left in the store.
    key = state.payload_key()
    if key is None or key.supersession_key is None:
        return None
    return key.kind, key.supersession_key


class InputLedger:
    """Insertion-ordered input states, the idempotency key index (L-14), the
    number of unfinished inputs and, per supersession scope, its unfinished
    inputs in admission order: so the pending limit and a superseding or
    coalescing accept cost the same at any queue length.

    The count and the scopes follow every change of the entries: ``insert``,
    ``replace`` and ``remove`` (which a checkpoint's undo uses too) and
    ``finished`` (a transition into a terminal phase). Each scoped entry
    keeps the number it was first indexed with, so one indexed again (an
    undone replacement puts the replaced input back) takes its old place."""

    __slots__ = ("_admissions", "_admitted", "_keys", "_pending", "_scopes", "_states")

    def __init__(self) -> None:
        self._states: dict[InputId, InputState] = {}
        self._keys: dict[IdempotencyKey, InputId] = {}
        self._pending = 0
        # Per scope: its unfinished ids -> admission number, in that order.
        self._scopes: dict[Scope, dict[InputId, int]] = {}
        self._admitted: dict[InputId, int] = {}
        self._admissions = 0  # numbers handed out (removals never reuse one)

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
        if not state.is_terminal():
            self._pending += 1
            self.scope_added(state)

    def scope_added(self, state: InputState) -> None:
        """Index an unfinished entry under its scope (also once its payload
        is set after the insert, as an accept does)."""
        scope = scope_of(state)
        if scope is None:
            return
        input_id = state.input_id
        number = self._admitted.get(input_id)
        if number is None:
            number = self._admitted[input_id] = self._admissions
            self._admissions += 1
        ids = self._scopes.setdefault(scope, {})
        if input_id in ids:
            return
        among_younger = bool(ids) and number < next(reversed(ids.values()))
        ids[input_id] = number
        if among_younger:  # rare: a scope seldom holds two unfinished inputs
            self._scopes[scope] = dict(sorted(ids.items(), key=lambda kv: kv[1]))

    def _unindex(self, state: InputState) -> None:
        scope = scope_of(state)
        ids = self._scopes.get(scope) if scope is not None else None
        if ids is not None:
            ids.pop(state.input_id, None)
            if not ids:
                del self._scopes[scope]  # type: ignore[arg-type]

    def finished(self, state: InputState) -> None:
        """``state`` (an entry) has just entered a terminal phase."""
        self._pending -= 1
        self._unindex(state)

    def replace(self, state: InputState) -> None:
        """Put back an earlier copy of an entry (a checkpoint's restore, a
        withdrawn run). Unfinished before and after in the same scope, it
        keeps its place in the scope's admission order (PD-44)."""
        current = self._states[state.input_id]
        self._states[state.input_id] = state
        if (
            not current.is_terminal()
            and not state.is_terminal()
            and scope_of(current) == scope_of(state)
        ):
            return  # the count and the index stay as they are
        if not current.is_terminal():
            self._pending -= 1
            self._unindex(current)
        if not state.is_terminal():
            self._pending += 1
            self.scope_added(state)

    def keys_snapshot(self) -> dict[IdempotencyKey, InputId]:
        return dict(self._keys)

    def restore_keys(self, keys: dict[IdempotencyKey, InputId]) -> None:
        self._keys = keys

    def remove(self, input_id: InputId) -> InputState | None:
        state = self._states.pop(input_id, None)
        if state is None:
            return None
        self._admitted.pop(input_id, None)
        key = state.idempotency_key
        if key is not None and self._keys.get(key) == input_id:  # only its own entry
            del self._keys[key]
        if not state.is_terminal():
            self._pending -= 1
            self._unindex(state)
        return state

    def id_for_key(self, key: IdempotencyKey) -> InputId | None:
        return self._keys.get(key)

    def forget_keys(self) -> None:
        """Decision 12: destroy forgets keys; reset and restarts do not."""
        self._keys.clear()

    def pending(self) -> int:
        """How many entries are unfinished (not terminal)."""
        return self._pending

    def in_scope(self, scope: Scope) -> Iterator[InputState]:
        """The unfinished entries of ``scope``, oldest admission first."""
        for input_id in self._scopes.get(scope, ()):
            yield self._states[input_id]

    def non_terminal(self) -> list[InputState]:
        return [s for s in self._states.values() if not s.is_terminal()]

    def active_ids(self) -> list[InputId]:
        return [s.input_id for s in self._states.values() if not s.is_terminal()]


# Gone ids a lane keeps before it is rebuilt without them (see ``Lanes``).
_COMPACT_AT = 64


class Lanes:
    """The queue and steer lanes of waiting input ids.

    An id taken out of the middle of a lane (a superseded or coalesced
    input) is not searched for: it is marked gone and skipped by every read,
    and dropped when it reaches the front or when gone ids outnumber the
    waiting ones (then the lane is rebuilt once, amortised over the removals
    that made it necessary). A replacement thus costs the same at any queue
    length.
    """

    __slots__ = ("_gone", "_lanes", "_taken", "journal")

    def __init__(self) -> None:
        self._lanes: dict[Lane, deque[InputId]] = {
            Lane.QUEUE: deque(),
            Lane.STEER: deque(),
        }
        self._taken: set[InputId] = set()
        # Removed ids still physically in their lane, per lane.
        self._gone: dict[Lane, set[InputId]] = {Lane.QUEUE: set(), Lane.STEER: set()}
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

    def _waiting(self, lane: Lane) -> Iterator[InputId]:
        gone = self._gone[lane]
        ids = self._lanes[lane]
        return (i for i in ids if i not in gone) if gone else iter(ids)

    def _count(self, lane: Lane) -> int:
        return len(self._lanes[lane]) - len(self._gone[lane])

    def ids(self, lane: Lane) -> list[InputId]:
        return list(self._waiting(lane))

    def __len__(self) -> int:
        return self._count(Lane.QUEUE) + self._count(Lane.STEER)

    def is_empty(self) -> bool:
        return not self._count(Lane.QUEUE) and not self._count(Lane.STEER)

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

    def remove(self, input_id: InputId, lane: Lane) -> None:
        """Take a waiting id out of ``lane``, which must hold it (an input is
        in its lane exactly while it is queued)."""
        gone = self._gone[lane]
        gone.add(input_id)
        self._forget_taken()
        self._undo(functools.partial(gone.discard, input_id))
        if len(gone) > max(_COMPACT_AT, self._count(lane)):
            self._compact(lane)

    def _compact(self, lane: Lane) -> None:
        ids, gone = self._lanes[lane], self._gone[lane]
        before, removed = list(ids), set(gone)
        waiting = [i for i in ids if i not in gone]
        ids.clear()
        ids.extend(waiting)
        gone.clear()

        def undo() -> None:  # in place: earlier undo steps hold these objects
            ids.clear()
            ids.extend(before)
            gone.update(removed)

        self._undo(undo)

    def active_lane(self) -> Lane:
        """R-6: the steer lane drains first whenever it holds anything."""
        return Lane.STEER if self._count(Lane.STEER) else Lane.QUEUE

    def is_prefix(self, ids: Sequence[InputId]) -> bool:
        lane = self.active_lane()
        if len(ids) > self._count(lane):
            return False
        return all(a == b for a, b in zip(ids, self._waiting(lane), strict=False))

    def pop_prefix(self, count: int) -> Lane:
        """Take the first ``count`` waiting ids of the active lane (and any
        gone ids before them, for good)."""
        lane = self.active_lane()
        lane_ids, gone = self._lanes[lane], self._gone[lane]
        physical = [lane_ids.popleft() for _ in range(count)]
        dropped: list[InputId] = []
        if gone:
            dropped = [i for i in physical if i in gone]
            while len(physical) - len(dropped) < count:
                physical.append(lane_ids.popleft())
                if physical[-1] in gone:
                    dropped.append(physical[-1])
            gone.difference_update(dropped)
        self._forget_taken()

        def undo() -> None:
            gone.update(dropped)
            lane_ids.extendleft(reversed(physical))

        self._undo(undo)
        return lane

    def clear(self) -> None:
        saved = {lane: list(ids) for lane, ids in self._lanes.items()}
        removed = {lane: set(gone) for lane, gone in self._gone.items()}
        for ids in self._lanes.values():
            ids.clear()
        for gone in self._gone.values():
            gone.clear()
        self._forget_taken()
        self._undo(lambda: self._refill(saved, removed))

    def _refill(
        self, saved: dict[Lane, list[InputId]], removed: dict[Lane, set[InputId]]
    ) -> None:
        # In place: earlier undo steps hold references to these same objects.
        for lane, ids in self._lanes.items():
            ids.clear()
            ids.extend(saved[lane])
            self._gone[lane].update(removed[lane])

    def take_next(self) -> InputId | None:
        """R-5: the first not-yet-taken id, steer lane first; marks it taken."""
        for lane in (Lane.STEER, Lane.QUEUE):
            for input_id in self._waiting(lane):
                if input_id not in self._taken:
                    self._taken.add(input_id)
                    return input_id
        return None

    def take(self, input_id: InputId) -> bool:
        if input_id in self._taken or not any(
            input_id in ids and input_id not in self._gone[lane]
            for lane, ids in self._lanes.items()
        ):
            return False
        self._taken.add(input_id)
        return True
