"""Runtime ownership in the store: one lease per runtime (PD-36, PD-37).

Theory of operation: a lease row says which owner drives a runtime, under
which **epoch**, until when. A claim on a free, released or expired lease
takes it with the epoch one higher than any before (a runtime's epochs only
ever grow, so a release keeps the row); a claim on a lease another owner
holds, unexpired, is refused with ``RuntimeOwnedError``. Renewing pushes
the expiry out only while the row still carries the renewer's epoch.

**Fencing** is what makes this safe, not the clock: an owner's writes carry
its epoch, and the store checks it against the lease row inside the write's
own transaction (``RuntimeStore.fenced``). Whoever claimed later has a
higher epoch, so the earlier owner's writes are refused (``Fenced``) from
that moment on, however late they arrive; nothing of a refused write is
visible.

**Clocks** (PD-37): ``expires_at`` is wall-clock time (``time.time()``) of
the claiming or renewing process; other processes compare it with their own
wall clock, so the processes must share one clock (one host, or hosts kept
in sync). A forward jump makes leases look expired early (a takeover can
come early: the old owner is fenced, never double-applied); a backward jump
makes them live longer (a dead owner's runtime waits longer for failover).
The owner itself never trusts the wall clock: it counts its lease as lost
at a deadline on the monotonic clock, taken *before* the claim or renewal
was sent, minus a safety margin (``sessions.ownership``), so it stops
before anyone else may take over as long as the clocks agree.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from meerkat_runtime.errors import FencedError, RuntimeOwnedError
from meerkat_runtime.ids import name_problem

# Seconds an owner's lease lives without a renewal, unless a store is told
# otherwise (``lease_ttl=``). An owner renews every quarter of it, so a
# store that stalls for a few seconds does not cost it the runtime.
DEFAULT_LEASE_TTL = 30.0
# A claim that waits looks again at least this often (an expiry it was
# told of may be renewed meanwhile; a release is not announced).
CLAIM_POLL_S = 0.05

Clock = Callable[[], float]

# (runtime id, epoch) of the owner whose write is running in this context;
# set only by ``FencedStore`` around the write it forwards, read by the
# store at the start of the write (PD-36). A context variable, not a store
# attribute, so that a store subclass or wrapper in between (a fault
# injector, an instrumented store) carries the fence along unchanged.
WRITE_FENCE: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "meerkat_write_fence", default=None
)


def fence_for(runtime_id: object) -> tuple[str, int] | None:
    """The fence of the running write if it is for ``runtime_id``."""
    fence = WRITE_FENCE.get()
    return fence if fence is not None and fence[0] == str(runtime_id) else None


@dataclass(frozen=True, slots=True)
class Lease:
    """One runtime's lease as the store holds it. ``expires_at`` is
    wall-clock seconds; a released lease has ``expires_at == 0``."""

    runtime_id: str
    owner: str
    epoch: int
    expires_at: float

    def held_at(self, now: float) -> bool:
        return self.expires_at > now

    @property
    def released(self) -> bool:
        return self.expires_at == 0.0


def checked_ttl(ttl: object) -> float:
    """A lease lifetime: a finite number of seconds > 0, refused by name."""
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or ttl <= 0
    ):
        raise ValueError(
            f"lease_ttl must be a finite number of seconds > 0, not {ttl!r}"
        )
    return float(ttl)


def checked_owner(owner: object, field: str = "lease owner") -> str:
    """An owner id, held to the rules of a caller-chosen name
    (``ids.name_problem``), or a ValueError naming ``field``."""
    if not isinstance(owner, str):
        raise ValueError(f"{field} must be a str, not {owner!r}")
    problem = name_problem(owner)
    if problem is not None:
        raise ValueError(f"{field} {owner!r}: {problem}")
    return owner


def claimed(
    current: Lease | None, runtime_id: str, owner: str, ttl: float, now: float
) -> Lease:
    """The lease a claim at ``now`` writes, or ``RuntimeOwnedError`` when
    another owner holds ``current``. The same owner claiming again gets a
    new epoch too: whatever it held before is fenced."""
    if current is not None and current.owner != owner and current.held_at(now):
        raise RuntimeOwnedError(runtime_id, current.owner, current.expires_at)
    epoch = 1 if current is None else current.epoch + 1
    return Lease(runtime_id, owner, epoch, now + ttl)


def still_held(current: Lease | None, owner: str, epoch: int) -> bool:
    """Whether a renewal or release by ``owner`` at ``epoch`` applies: the
    row still carries that epoch (expired or not: nobody took over)."""
    return current is not None and current.owner == owner and current.epoch == epoch


def renewable(current: Lease | None, owner: str, epoch: int) -> bool:
    """Whether a renewal applies: held at that epoch and not released. A
    renewal sent before a release and applied after it must not bring the
    lease back (PD-67): it would keep every other owner out until expiry."""
    return still_held(current, owner, epoch) and not (
        current is not None and current.released
    )


def check_fence(runtime_id: str, epoch: int, current_epoch: int | None) -> None:
    """Refuse a write of ``epoch`` once the lease row has moved on."""
    if current_epoch != epoch:
        raise FencedError(runtime_id, current_epoch or 0)


async def claim_waiting(
    attempt: Callable[[], Awaitable[int]], wait: float, clock: Clock
) -> int:
    """``attempt()`` until it succeeds or ``wait`` seconds have passed (the
    last refusal is raised then). Between attempts it sleeps until the
    holder's lease runs out, but never longer than ``CLAIM_POLL_S``."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return await attempt()
        except RuntimeOwnedError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            until_expiry = max(0.0, exc.expires_at - clock())
            await asyncio.sleep(min(left, until_expiry, CLAIM_POLL_S))


class OwnerLease:
    """What an owner knows of a lease it holds: its epoch and its local
    deadline on the monotonic clock (PD-37), past which it no longer trusts
    it. ``lose`` marks it lost once and tells ``on_lost``."""

    __slots__ = ("clock", "deadline", "epoch", "lost", "on_lost", "runtime_id")

    def __init__(
        self,
        runtime_id: object,
        epoch: int,
        deadline: float,
        on_lost: Callable[[OwnerLease, str], None],
        clock: Clock = time.monotonic,
    ) -> None:
        self.runtime_id = runtime_id
        self.epoch = epoch
        self.deadline = deadline
        self.lost: str | None = None
        self.on_lost = on_lost
        self.clock = clock  # the owner's clock ``deadline`` is on (PD-37)

    def valid(self) -> bool:
        return self.lost is None and self.clock() < self.deadline

    def refusal(self) -> FencedError:
        """What a write raises once the lease is not ``valid``: it never
        reaches the store."""
        if self.lost is None:
            self.lose("the lease ran out before it could be renewed")
        error = FencedError(self.runtime_id, self.epoch)
        error.add_note(f"runtime ownership lost: {self.lost}")
        return error

    def lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
            self.on_lost(self, reason)
