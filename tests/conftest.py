"""Shared fixtures: the repository root and the loaded spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from codegen.generate import load
from codegen.model import Machine, Spec

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def spec() -> Spec:
    return load(ROOT)[0]


def machine(spec: Spec, name: str) -> Machine:
    return next(m for m in spec.machines if m.name == name)
