"""Fixtures the regressions share with the persistent driver's tests."""

from tests.test_persistent_decisions import backend

__all__ = ["backend"]  # both stores: the fixture each regression runs on
