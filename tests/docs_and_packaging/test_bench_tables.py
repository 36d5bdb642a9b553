"""The authority benchmark compares the generated authorities with hand-written
``transitions`` tables; this keeps those tables in step with the spec, so the
benchmark never silently measures a different machine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "authority.py"


def test_benchmark_tables_match_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    # As when run as a script: its sibling modules (goals.py) import by name.
    monkeypatch.syspath_prepend(str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("bench_authority", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.check_tables()  # raises AssertionError naming any drift
