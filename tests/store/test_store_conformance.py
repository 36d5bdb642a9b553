"""The shipped store conformance suite, run against every built-in store (PostgreSQL: tests/store/postgres.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meerkat_runtime.store import InMemoryRuntimeStore, RuntimeStore, SqliteRuntimeStore
from meerkat_runtime.store.postgres import PostgresRuntimeStore
from meerkat_runtime.testing.conformance import StoreConformance


class TestInMemoryStore(StoreConformance):
    def make_store(self) -> RuntimeStore:
        return InMemoryRuntimeStore()


class TestSqliteStore(StoreConformance):
    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.path = tmp_path / "runtime.db"

    def make_store(self) -> RuntimeStore:
        return SqliteRuntimeStore(self.path)


class TestSqliteMemoryStore(StoreConformance):
    def make_store(self) -> RuntimeStore:
        return SqliteRuntimeStore(":memory:")


class TestPostgresStore(StoreConformance):
    @pytest.fixture(autouse=True)
    def _schema(self, pg_dsn: str, pg_schema: str) -> None:
        self.dsn = pg_dsn
        self.schema = pg_schema

    def make_store(self) -> RuntimeStore:
        return PostgresRuntimeStore(self.dsn, schema=self.schema)
