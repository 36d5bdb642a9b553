"""The shipped store conformance suite, run against both built-in stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from meerkat_runtime.store import InMemoryRuntimeStore, RuntimeStore, SqliteRuntimeStore
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
