"""The PostgreSQL store's leases (PD-36, PD-55): the transactions of claim,
renew and release, each a ``Work`` for ``PostgresWriter.transact``.

The rules (who may claim, which epoch, what a renewal or release needs) are
``store/leases.py``'s, shared with the other stores; what is PostgreSQL's
own is the locking and the clock (see ``postgres_schema``): a claim locks
the lease row ``FOR UPDATE`` and reads the clock in that statement, so no
other claim commits between its reading and its write.
"""

from __future__ import annotations

from collections.abc import Sequence

from meerkat_runtime.errors import RuntimeOwnedError
from meerkat_runtime.store.leases import Lease, claimed
from meerkat_runtime.store.postgres_schema import Statements
from meerkat_runtime.store.postgres_writer import Conn, Work


def claim(
    sql: Statements, rid: str, owner: str, ttl: float, now: float | None
) -> Work[int | RuntimeOwnedError]:
    """The new epoch, or the refusal (returned, not raised: raised inside
    the transaction it would be reported as a failed write). ``now``: the
    store's own clock, None for the database's."""

    async def work(conn: Conn) -> int | RuntimeOwnedError:
        await conn.execute(sql.lease_row, (rid,))
        cur = await conn.execute(sql.lock_lease, {"r": rid, "now": now})
        row = await cur.fetchone()
        assert row is not None  # lease_row made it
        holder, epoch, expires_at, clock = row
        try:  # a placeholder (epoch 0, long expired) reads as no lease
            lease = claimed(
                Lease(rid, holder, epoch, expires_at), rid, owner, ttl, clock
            )
        except RuntimeOwnedError as refused:
            return refused
        await conn.execute(sql.set_lease, (owner, lease.epoch, lease.expires_at, rid))
        return lease.epoch

    return work


def renew(
    sql: Statements,
    owner: str,
    epochs: Sequence[tuple[str, int]],
    ttl: float,
    now: float | None,
) -> Work[set[str]]:
    """The runtimes of ``epochs`` whose leases were extended."""
    params = {
        "o": owner,
        "r": [rid for rid, _ in epochs],
        "e": [epoch for _, epoch in epochs],
        "ttl": ttl,
        "now": now,
    }

    async def work(conn: Conn) -> set[str]:
        cur = await conn.execute(sql.renew_leases, params)
        return {str(rid) for (rid,) in await cur.fetchall()}

    return work


def release(sql: Statements, rid: str, owner: str, epoch: int) -> Work[None]:
    async def work(conn: Conn) -> None:
        await conn.execute(sql.release_lease, (rid, owner, epoch))

    return work
