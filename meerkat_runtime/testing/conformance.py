"""The ``RuntimeStore`` conformance suite, shipped so any store can prove itself.

Use it from a test module::

    from meerkat_runtime.testing.conformance import StoreConformance

    class TestMyStore(StoreConformance):
        def make_store(self) -> RuntimeStore:
            return MyStore(...)

``make_store`` is the one hook; ``raw_rows`` and ``corrupt_row`` read and
damage stored bytes behind the store's back (the built-in stores provide
them; override for yours). Every test is synchronous and runs its own event
loop, so no pytest plugin is needed.
"""

from __future__ import annotations

from meerkat_runtime.testing.conformance_atomicity import AtomicityConformance
from meerkat_runtime.testing.conformance_corruption import CorruptionConformance
from meerkat_runtime.testing.conformance_inbox import InboxConformance
from meerkat_runtime.testing.conformance_ownership import OwnershipConformance
from meerkat_runtime.testing.conformance_records import RecordConformance
from meerkat_runtime.testing.conformance_run_end import RunEndConformance

# Re-exported: tests across the repo build their records with these.
from meerkat_runtime.testing.conformance_support import (
    A,
    B,
    poisoned,
    receipt_for,
    rich_state,
)

__all__ = ["A", "B", "StoreConformance", "poisoned", "receipt_for", "rich_state"]


class StoreConformance(
    RecordConformance,
    AtomicityConformance,
    RunEndConformance,
    CorruptionConformance,
    OwnershipConformance,
    InboxConformance,
):
    """The contract every ``RuntimeStore`` meets (docs/behaviour.md section 8):
    records, atomicity, a run's end in one commit, corrupt data, ownership
    and the inbox, each a mixin of its own module (``conformance_records``,
    ``conformance_atomicity``, ``conformance_run_end``,
    ``conformance_corruption``, ``conformance_ownership``,
    ``conformance_inbox``); the hooks,
    ``make_store`` first, come from ``conformance_support.ConformanceHooks``."""
