"""Which runtimes have work waiting: the store query a fleet's placement
reads (``sessions/fleet.py``, PD-67).

A runtime *has work* when the store holds at least one of its inputs that is
unfinished (not consumed, superseded, coalesced or abandoned) and not
ephemeral. Ephemeral inputs are left out because recovery drops them unread
(decision 13): counting them would make a runtime look busy forever, and a
fleet would claim it again and again to find nothing to run.

Every store answers from the stored records themselves, so the three give
the same answer for the same rows: the memory store decodes each record's
JSON, SQLite and PostgreSQL read the same two fields with their JSON
functions (a framed record is still one JSON document, see ``integrity``).
It is a scan of the input table, and decoding records is its cost. A fleet
asks for the *unowned* runtimes with work only: the runtimes with a live
lease are left out first, so the records of runtimes being worked on (and
of those held idle) are not decoded, and a worker that finds nothing free
asks less often (``sessions/fleet.py``). Its cost still grows with the
finished rows of released runtimes; an index over unfinished inputs would
need a schema version.
"""

from __future__ import annotations

import msgspec

from meerkat_runtime.generated.input_lifecycle import InputLifecycleState
from meerkat_runtime.inputs import InputDurability

TERMINAL_PHASES: tuple[str, ...] = tuple(
    sorted(state.value for state in InputLifecycleState if state.is_terminal())
)
_EPHEMERAL = InputDurability.EPHEMERAL.value


class _Fields(msgspec.Struct):
    """The two fields of a stored input record this query reads."""

    current_state: str
    durability: str | None = None


_DECODER = msgspec.json.Decoder(_Fields)


def is_work(record: bytes) -> bool:
    """Whether a stored input record is unfinished, durable work. A record
    that does not decode counts as work: whoever claims the runtime then
    reads it strictly and reports the damage, instead of it staying unseen."""
    try:
        fields = _DECODER.decode(record)
    except msgspec.DecodeError:
        return True
    return fields.current_state not in TERMINAL_PHASES and fields.durability != (
        _EPHEMERAL
    )


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)  # generated enum values


# SQLite keeps records as BLOBs; its JSON functions read TEXT. A record that
# is not JSON counts as work (as in ``is_work``); CASE evaluates lazily, so
# json_extract never sees it (it would fail the whole query).
_TEXT = "CAST(state_json AS TEXT)"
_SQLITE_WORK = (
    f"CASE WHEN json_valid({_TEXT}) THEN json_extract({_TEXT}, '$.current_state') "
    f"NOT IN ({_quoted(TERMINAL_PHASES)}) AND "
    f"COALESCE(json_extract({_TEXT}, '$.durability'), '') <> '{_EPHEMERAL}' "
    "ELSE 1 END"
)
SQLITE_RUNTIMES_WITH_WORK = (
    f"SELECT DISTINCT runtime_id FROM runtime_input_states WHERE {_SQLITE_WORK} "
    "ORDER BY runtime_id"
)
# ``unowned``: the runtimes whose lease is live (expiry after ?1) are left
# out before any record of theirs is decoded.
SQLITE_UNOWNED_RUNTIMES_WITH_WORK = (
    "SELECT DISTINCT runtime_id FROM runtime_input_states WHERE runtime_id NOT IN "
    "(SELECT runtime_id FROM runtime_leases WHERE expires_at > ?1) AND "
    f"{_SQLITE_WORK} ORDER BY runtime_id"
)


def postgres_runtimes_with_work(table: str, leases: str | None = None) -> str:
    """The same query over a PostgreSQL store's input ``table`` (qualified);
    given the ``leases`` table, without the runtimes leased live at
    ``%(now)s`` (None: the database's clock, PD-55).
    PostgreSQL before 16 cannot test a text for JSON without failing on it,
    so a record that is not JSON fails this query (``Corrupt`` or
    ``ReadFailed``) where SQLite would count it as work; a fleet logs that
    and asks again on its next round."""
    document = "convert_from(state_json, 'UTF8')::jsonb"
    unowned = (
        ""
        if leases is None
        else f"runtime_id NOT IN (SELECT runtime_id FROM {leases} WHERE expires_at "
        "> COALESCE(%(now)s::float8, extract(epoch FROM now())::float8)) AND "
    )
    return (
        f"SELECT DISTINCT runtime_id FROM {table} WHERE {unowned}"
        f"{document} ->> 'current_state' NOT IN ({_quoted(TERMINAL_PHASES)}) AND "
        f"COALESCE({document} ->> 'durability', '') <> '{_EPHEMERAL}' "
        "ORDER BY runtime_id"
    )
