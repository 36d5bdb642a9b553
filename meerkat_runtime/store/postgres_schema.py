"""The PostgreSQL store's schema: its tables, forward migrations run under an
advisory lock, and the statements the store runs.

All tables live in one PostgreSQL schema (``meerkat`` unless configured), so
two applications can share a database under different names. The version
is a row of ``<schema>.meta``; a newer version than this code knows is
refused, an older one is migrated forward. Migrators take a transaction-level
advisory lock keyed by the schema name first, so any number of processes
may open the store at once: one migrates, the others wait and then find the
work done.

The tables mirror the SQLite store's, recovery epochs included (decision 18,
see ``sqlite_schema``): a first recovery bumps the runtime's epoch instead of
rewriting every pending row. ``commit_marks`` holds one row per connection
that writes: the ticket of its latest committed transaction, which resolves
a commit whose outcome the connection's loss hid (``postgres_writer``).

**Arrival order** (PD-42, PD-56): an input row's ``arrival`` is given by its
first write and kept by later ones; loads read a runtime's rows in that
order. The number comes from the runtime's row in ``runtime_arrivals``,
raised in the write's own statement: the row lock it takes makes concurrent
writers of one runtime (any process, any host) take their numbers one after
the other, in commit order, where ``max(arrival) + 1`` read from a snapshot
would hand two of them the same number. A statement raises the counter by
all of its rows of that runtime, updates included, so numbers may skip
(only their order matters). Counters are locked in runtime-id order, so two
merged commits of several runtimes never deadlock on them.

**Leases** (PD-36, PD-55): ``runtime_leases`` holds one row per runtime
that was ever claimed; expiries are seconds on the database server's clock.
A write transaction of an owner first reads its runtime's lease row ``FOR
SHARE`` (``fence``): a claim must wait until that write committed, and a
write that comes after a claim sees its epoch.

Version 2 added arrivals, leases and the receipts' commit order; rows of
version 1 are numbered in input-id order, the order version 1 loaded them
in. Version 3 added the inbox (PD-58, ``postgres_inbox``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meerkat_runtime.store.base import StoreInternalError
from meerkat_runtime.store.postgres_inbox import migration as inbox_migration

SCHEMA_VERSION = 3
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class SchemaTooNewError(StoreInternalError):
    """The schema was written by a newer meerkat-runtime."""


def checked_schema(name: object) -> str:
    """A schema name the store can put in SQL unquoted-safe: lower-case
    letters, digits and underscores, at most 63 bytes (PostgreSQL's limit)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            "schema must be a lower-case identifier (letters, digits, _; at "
            f"most 63, not starting with a digit), not {name!r}"
        )
    return name


def migrations(s: str) -> dict[int, tuple[str, ...]]:
    """Version reached -> the statements that take schema ``s`` there."""
    return {
        1: (
            f"""CREATE TABLE "{s}".runtime_input_states (
                runtime_id text NOT NULL, input_id text NOT NULL,
                state_json bytea NOT NULL, recovery_epoch bigint NOT NULL DEFAULT 0,
                PRIMARY KEY (runtime_id, input_id))""",
            f"""CREATE TABLE "{s}".runtime_boundary_receipts (
                runtime_id text NOT NULL, run_id text NOT NULL, sequence bigint NOT NULL,
                receipt_json bytea NOT NULL, PRIMARY KEY (runtime_id, run_id, sequence))""",
            f"""CREATE TABLE "{s}".runtime_session_snapshots (
                runtime_id text PRIMARY KEY, session_snapshot bytea NOT NULL)""",
            f"""CREATE TABLE "{s}".runtime_states (
                runtime_id text PRIMARY KEY, runtime_state_json bytea NOT NULL,
                recovery_epoch bigint NOT NULL DEFAULT 0)""",
            f"""CREATE TABLE "{s}".commit_marks (
                writer uuid PRIMARY KEY, ticket bigint NOT NULL,
                touched timestamptz NOT NULL DEFAULT now())""",
        ),
        2: (
            f'ALTER TABLE "{s}".runtime_input_states ADD COLUMN arrival bigint',
            f"""UPDATE "{s}".runtime_input_states AS t SET arrival = n.k
                FROM (SELECT runtime_id, input_id, row_number() OVER (
                    PARTITION BY runtime_id ORDER BY input_id) AS k
                    FROM "{s}".runtime_input_states) AS n
                WHERE t.runtime_id = n.runtime_id AND t.input_id = n.input_id""",
            f'ALTER TABLE "{s}".runtime_input_states ALTER COLUMN arrival SET NOT NULL',
            f"""CREATE UNIQUE INDEX runtime_input_arrival
                ON "{s}".runtime_input_states (runtime_id, arrival)""",
            f"""CREATE TABLE "{s}".runtime_arrivals (
                runtime_id text PRIMARY KEY, last bigint NOT NULL)""",
            f"""INSERT INTO "{s}".runtime_arrivals
                SELECT runtime_id, max(arrival) FROM "{s}".runtime_input_states
                GROUP BY runtime_id""",
            # Receipts list in commit order (a runtime's writes come from its
            # one owner, one after the other: insert order is commit order).
            f"""ALTER TABLE "{s}".runtime_boundary_receipts
                ADD COLUMN committed bigint GENERATED ALWAYS AS IDENTITY""",
            f"""CREATE TABLE "{s}".runtime_leases (
                runtime_id text PRIMARY KEY, owner text NOT NULL,
                epoch bigint NOT NULL, expires_at double precision NOT NULL)""",
        ),
        3: inbox_migration(s),  # PD-58 (postgres_inbox)
    }


@dataclass(frozen=True)
class Statements:
    """Every statement of the store, for one schema name."""

    schema: str

    @property
    def lock(self) -> str:
        # The key names the schema: migrators of different schemas never wait
        # for each other.
        return "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

    @property
    def lock_key(self) -> str:
        return f"meerkat-runtime schema {self.schema}"

    @property
    def create_meta(self) -> tuple[str, ...]:
        s = self.schema
        return (
            f'CREATE SCHEMA IF NOT EXISTS "{s}"',
            f'CREATE TABLE IF NOT EXISTS "{s}".meta (key text PRIMARY KEY, value bigint NOT NULL)',
        )

    @property
    def version(self) -> str:
        return f"SELECT value FROM \"{self.schema}\".meta WHERE key = 'schema_version'"

    @property
    def set_version(self) -> str:
        return (
            f"INSERT INTO \"{self.schema}\".meta VALUES ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )

    def table(self, name: str) -> str:
        return f'"{self.schema}".{name}'

    @property
    def epoch_of(self) -> str:
        return (
            f"COALESCE((SELECT recovery_epoch FROM {self.table('runtime_states')} "
            "WHERE runtime_id = {}), 0)"
        )

    @property
    def upsert_inputs(self) -> str:
        """Many rows in one statement: three arrays, one element per row (the
        text is the same for any number of rows, so it is prepared once).
        Each runtime's counter is raised by its rows first (in runtime-id
        order), then row k of a runtime's n takes ``last - n + k``; an
        update keeps the row's number (the conflict clause leaves it)."""
        rows = "unnest(%s::text[], %s::text[], %s::bytea[])"
        return f"WITH {self._upserted(rows, '')}"

    @property
    def accept_inputs(self) -> str:
        """``upsert_inputs`` as a transaction of one statement, the path of
        every acknowledgement (PD-57): it reads the leases of the fences
        (%(fr)s runtimes, %(fe)s epochs) ``FOR SHARE``, and only when each
        still has its epoch does it stamp the connection's commit mark
        (%(ticket)s, %(writer)s) and write the rows (%(r)s, %(i)s, %(s)s).
        It returns whether it wrote and the leases it read (at least one
        row: (NULL, NULL, ok) when it read none), for the caller to say
        which fence failed."""
        return self._accept(
            "%(r)s::text[]",
            "%(i)s::text[]",
            "%(s)s::bytea[]",
            "%(fr)s::text[]",
            "%(fe)s::bigint[]",
        )

    @property
    def accept_input(self) -> str:
        """``accept_inputs`` of one row and at most one fence (%(fr)s NULL:
        none), all given as plain values: the path of a lone caller, with
        no arrays to encode, unnest, sort or number (its arrival is the
        counter's new value)."""
        t = self.table
        return (
            f"WITH held AS (SELECT runtime_id, epoch FROM {t('runtime_leases')} "
            "WHERE runtime_id = %(fr)s::text FOR SHARE), "
            "go AS (SELECT %(fr)s::text IS NULL OR EXISTS "
            "(SELECT FROM held WHERE epoch = %(fe)s::bigint) AS ok), "
            f"marked AS (UPDATE {t('commit_marks')} SET ticket = %(ticket)s, "
            "touched = now() WHERE writer = %(writer)s AND (SELECT ok FROM go)), "
            f"taken AS (INSERT INTO {t('runtime_arrivals')} AS c (runtime_id, last) "
            "SELECT %(r)s::text, 1 WHERE (SELECT ok FROM go) "
            "ON CONFLICT (runtime_id) DO UPDATE SET last = c.last + 1 RETURNING last), "
            f"written AS (INSERT INTO {t('runtime_input_states')} "
            "(runtime_id, input_id, state_json, recovery_epoch, arrival) "
            "SELECT %(r)s::text, %(i)s::text, %(s)s::bytea, "
            f"{self.epoch_of.format('%(r)s::text')}, last FROM taken"
            f"{_INPUT_CONFLICT}) "
            "SELECT held.runtime_id, held.epoch, go.ok FROM go LEFT JOIN held ON true"
        )

    def _accept(self, r: str, i: str, s: str, fr: str, fe: str) -> str:
        """``accept_inputs`` with its arrays given by these expressions."""
        leases = self.table("runtime_leases")
        marks = self.table("commit_marks")
        rows = f"unnest({r}, {i}, {s})"
        return (
            f"WITH held AS (SELECT runtime_id, epoch FROM {leases} "
            f"WHERE runtime_id = ANY({fr}) ORDER BY runtime_id FOR SHARE), "
            f"go AS (SELECT NOT EXISTS (SELECT FROM unnest({fr}, {fe}) AS f(r, e) "
            "LEFT JOIN held ON held.runtime_id = f.r "
            "WHERE held.epoch IS DISTINCT FROM f.e) AS ok), "
            f"marked AS (UPDATE {marks} SET ticket = %(ticket)s, touched = now() "
            "WHERE writer = %(writer)s AND (SELECT ok FROM go)), "
            f"{self._upserted(rows, ' WHERE (SELECT ok FROM go)', ', written AS (')}"
            "SELECT held.runtime_id, held.epoch, go.ok FROM go LEFT JOIN held ON true"
        )

    def _upserted(self, rows: str, where: str, wrap: str = "") -> str:
        """The CTEs of an input upsert of ``rows`` (see ``upsert_inputs``),
        raising the counters only ``where`` holds; the upsert last, as the
        main statement, or as CTE when ``wrap`` opens one."""
        t = self.table("runtime_input_states")
        counters = self.table("runtime_arrivals")
        epoch = self.epoch_of.format("u.r")
        return (
            f"u AS (SELECT * FROM {rows} WITH ORDINALITY AS u(r, i, s, k)), "
            f"taken AS (INSERT INTO {counters} AS c (runtime_id, last) "
            f"SELECT r, count(*) FROM u{where} GROUP BY r ORDER BY r "
            "ON CONFLICT (runtime_id) DO UPDATE SET last = c.last + excluded.last "
            f"RETURNING runtime_id, last){wrap or ' '}"
            f"INSERT INTO {t} (runtime_id, input_id, state_json, recovery_epoch, arrival) "
            f"SELECT u.r, u.i, u.s, {epoch}, taken.last "
            "- count(*) OVER (PARTITION BY u.r) "
            "+ row_number() OVER (PARTITION BY u.r ORDER BY u.k) "
            "FROM u JOIN taken ON taken.runtime_id = u.r"
            f"{_INPUT_CONFLICT}{') ' if wrap else ''}"
        )

    @property
    def upsert_phase(self) -> str:
        return (
            f"INSERT INTO {self.table('runtime_states')} (runtime_id, runtime_state_json) "
            "VALUES (%s, %s) ON CONFLICT (runtime_id) DO UPDATE SET "
            "runtime_state_json = excluded.runtime_state_json"
        )

    @property
    def bump_epoch(self) -> str:
        t = self.table("runtime_states")
        return (
            f"INSERT INTO {t} (runtime_id, runtime_state_json, recovery_epoch) "
            "VALUES (%s, %s, 1) ON CONFLICT (runtime_id) DO UPDATE SET "
            "runtime_state_json = excluded.runtime_state_json, "
            f"recovery_epoch = {t}.recovery_epoch + 1"
        )

    @property
    def upsert_snapshot(self) -> str:
        return (
            f"INSERT INTO {self.table('runtime_session_snapshots')} VALUES (%s, %s) "
            "ON CONFLICT (runtime_id) DO UPDATE SET "
            "session_snapshot = excluded.session_snapshot"
        )

    @property
    def insert_receipt(self) -> str:
        return (
            f"INSERT INTO {self.table('runtime_boundary_receipts')} {_RECEIPT_COLUMNS} "
            "VALUES (%s, %s, %s, %s)"
        )

    @property
    def insert_receipt_once(self) -> str:
        """Inserts unless the (runtime, run, sequence) has a receipt; returns
        (rows inserted, the receipt stored before) for decision 16."""
        t = self.table("runtime_boundary_receipts")
        return (
            f"WITH new AS (INSERT INTO {t} {_RECEIPT_COLUMNS} "
            "VALUES (%(r)s, %(run)s, %(seq)s, %(data)s) "
            "ON CONFLICT DO NOTHING RETURNING 1) "
            f"SELECT (SELECT count(*) FROM new), (SELECT receipt_json FROM {t} "
            "WHERE runtime_id = %(r)s AND run_id = %(run)s AND sequence = %(seq)s)"
        )

    @property
    def next_sequence(self) -> str:
        return (
            "SELECT COALESCE(MAX(sequence), -1) + 1 FROM "
            f"{self.table('runtime_boundary_receipts')} WHERE runtime_id = %s AND run_id = %s"
        )

    @property
    def select_inputs(self) -> str:
        """(input_id, state_json, recoveries since the row was written)."""
        epoch = self.epoch_of.format("%(r)s")
        return (
            f"SELECT input_id, state_json, {epoch} - recovery_epoch "
            f"FROM {self.table('runtime_input_states')} WHERE runtime_id = %(r)s"
        )

    @property
    def select_receipt(self) -> str:
        return (
            f"SELECT receipt_json FROM {self.table('runtime_boundary_receipts')} "
            "WHERE runtime_id = %s AND run_id = %s AND sequence = %s"
        )

    @property
    def select_receipts(self) -> str:
        return (
            "SELECT run_id, sequence, receipt_json FROM "
            f"{self.table('runtime_boundary_receipts')} WHERE runtime_id = %s "
            "ORDER BY committed"
        )

    @property
    def select_snapshot(self) -> str:
        return (
            f"SELECT session_snapshot FROM {self.table('runtime_session_snapshots')} "
            "WHERE runtime_id = %s"
        )

    @property
    def select_phase(self) -> str:
        return (
            f"SELECT runtime_state_json FROM {self.table('runtime_states')} "
            "WHERE runtime_id = %s"
        )

    @property
    def in_arrival_order(self) -> str:
        return " ORDER BY arrival"

    # ---------------------------------------------------------------- leases

    @property
    def fence(self) -> str:
        """The epochs of the given runtimes' leases, locked until the write's
        transaction ends (see the module notes), in runtime-id order."""
        return (
            f"SELECT runtime_id, epoch FROM {self.table('runtime_leases')} "
            "WHERE runtime_id = ANY(%s) ORDER BY runtime_id FOR SHARE"
        )

    @property
    def lease_row(self) -> str:
        # A claim's placeholder (owner '', epoch 0, long expired) makes sure
        # there is a row to lock: two first claims then queue on it instead
        # of both inserting.
        return (
            f"INSERT INTO {self.table('runtime_leases')} VALUES (%s, '', 0, 0) "
            "ON CONFLICT (runtime_id) DO NOTHING"
        )

    @property
    def lock_lease(self) -> str:
        """(owner, epoch, expires_at, the lease clock's now) of runtime %(r)s."""
        return (
            f"SELECT owner, epoch, expires_at, {_LEASE_NOW} FROM "
            f"{self.table('runtime_leases')} WHERE runtime_id = %(r)s FOR UPDATE"
        )

    @property
    def set_lease(self) -> str:
        return (
            f"UPDATE {self.table('runtime_leases')} SET owner = %s, epoch = %s, "
            "expires_at = %s WHERE runtime_id = %s"
        )

    @property
    def renew_leases(self) -> str:
        """Extends the leases ``owner`` (%(o)s) holds at the given epochs and
        has not released (``leases.renewable``), locked in runtime-id order;
        returns the runtimes extended."""
        t = self.table("runtime_leases")
        return (
            f"UPDATE {t} AS l SET expires_at = {_LEASE_NOW} + %(ttl)s FROM (SELECT runtime_id "
            f"FROM {t} WHERE owner = %(o)s AND expires_at > 0 AND (runtime_id, epoch) IN "
            "(SELECT * FROM unnest(%(r)s::text[], %(e)s::bigint[])) "
            "ORDER BY runtime_id FOR UPDATE) AS mine "
            "WHERE l.runtime_id = mine.runtime_id RETURNING l.runtime_id"
        )

    @property
    def release_lease(self) -> str:
        return (
            f"UPDATE {self.table('runtime_leases')} SET expires_at = 0 "
            "WHERE runtime_id = %s AND owner = %s AND epoch = %s"
        )

    @property
    def select_leases(self) -> str:
        # A placeholder never commits (a claim always replaces it), but a
        # reader need not rely on that.
        return (
            "SELECT runtime_id, owner, epoch, expires_at FROM "
            f"{self.table('runtime_leases')} WHERE epoch > 0 ORDER BY runtime_id"
        )

    # ---------------------------------------------------------------- marks

    @property
    def new_mark(self) -> str:
        return (
            f"INSERT INTO {self.table('commit_marks')} (writer, ticket) VALUES (%s, 0)"
        )

    @property
    def mark(self) -> str:
        # An update of a row made beforehand (``new_mark``): cheaper than an
        # upsert on every commit, and the row is removed only at close.
        return (
            f"UPDATE {self.table('commit_marks')} SET ticket = %s, touched = now() "
            "WHERE writer = %s"
        )

    @property
    def read_mark(self) -> str:
        # FOR UPDATE waits for a transaction that still holds the row (the
        # server may still be committing what the client lost sight of).
        return f"SELECT ticket FROM {self.table('commit_marks')} WHERE writer = %s FOR UPDATE"

    @property
    def drop_marks(self) -> str:
        return f"DELETE FROM {self.table('commit_marks')} WHERE writer = ANY(%s)"


# Seconds on the database server's clock (PD-55), unless the store was given
# a clock of its own (%(now)s not NULL: the conformance suite's fake clock).
_LEASE_NOW = "COALESCE(%(now)s::float8, extract(epoch FROM now())::float8)"

_RECEIPT_COLUMNS = "(runtime_id, run_id, sequence, receipt_json)"

_INPUT_CONFLICT = (
    " ON CONFLICT (runtime_id, input_id) DO UPDATE SET "
    "state_json = excluded.state_json, recovery_epoch = excluded.recovery_epoch"
)
