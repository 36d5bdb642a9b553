"""Fixtures the persistent driver's tests share."""

from tests.driver.persistent import backend

__all__ = ["backend"]
