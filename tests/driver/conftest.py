"""Fixtures the persistent driver's tests share."""

from tests.driver.test_persistent_decisions import backend

__all__ = ["backend"]
