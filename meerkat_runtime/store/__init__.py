"""Runtime stores: the contract, in memory, SQLite and PostgreSQL.

``PostgresRuntimeStore`` is imported on first use: it needs the ``postgres``
extra (psycopg and psycopg_pool), which the other stores do not.
"""

from typing import TYPE_CHECKING, Any

from meerkat_runtime.store.base import RuntimeStore, RuntimeStoreError, SessionDelta
from meerkat_runtime.store.memory import InMemoryRuntimeStore
from meerkat_runtime.store.sqlite import SqliteRuntimeStore

if TYPE_CHECKING:
    from meerkat_runtime.store.postgres import PostgresRuntimeStore

__all__ = [
    "InMemoryRuntimeStore",
    "PostgresRuntimeStore",
    "RuntimeStore",
    "RuntimeStoreError",
    "SessionDelta",
    "SqliteRuntimeStore",
]


def __getattr__(name: str) -> Any:
    if name == "PostgresRuntimeStore":
        from meerkat_runtime.store.postgres import PostgresRuntimeStore

        return PostgresRuntimeStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
