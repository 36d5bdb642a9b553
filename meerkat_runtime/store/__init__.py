"""Runtime stores: the contract, in memory, and SQLite."""

from meerkat_runtime.store.base import RuntimeStore, RuntimeStoreError, SessionDelta
from meerkat_runtime.store.memory import InMemoryRuntimeStore
from meerkat_runtime.store.sqlite import SqliteRuntimeStore

__all__ = [
    "InMemoryRuntimeStore",
    "RuntimeStore",
    "RuntimeStoreError",
    "SessionDelta",
    "SqliteRuntimeStore",
]
