"""Shared fixtures: the repository root and the loaded spec."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from codegen.generate import load
from codegen.model import Machine, Spec

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def spec() -> Spec:
    return load(ROOT)[0]


def machine(spec: Spec, name: str) -> Machine:
    return next(m for m in spec.machines if m.name == name)


# Hypothesis profiles (issue 5). "ci" is bounded and derandomized, so a
# failure reproduces exactly on any machine; "fuzz" is the long run behind
# `make fuzz`. Choose with HYPOTHESIS_PROFILE (default: ci).
settings.register_profile(
    "ci",
    max_examples=150,
    stateful_step_count=40,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    max_examples=1500,
    stateful_step_count=60,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The PostgreSQL server of the test run (see tests/store/postgres.py)."""
    from tests.store.postgres import server_dsn

    return server_dsn()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A schema of this test's own on that server, dropped afterwards."""
    from tests.store.postgres import drop_schema, new_schema

    schema = new_schema()
    yield schema
    drop_schema(schema)


def pytest_sessionfinish() -> None:
    # Only a session that used PostgreSQL imported tests.store.postgres (and a
    # server to stop); importing it here would need psycopg in every run.
    postgres = sys.modules.get("tests.store.postgres")
    if postgres is not None:
        postgres.stop_server()
