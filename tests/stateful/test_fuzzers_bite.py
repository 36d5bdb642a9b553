"""The fuzzers must be shown to bite (issue 5, deliverable 5): a store that
acknowledges before it commits, or commits half a boundary, is caught by the
crash state machine within the CI profile."""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from meerkat_runtime.store import RuntimeStore
from meerkat_runtime.testing.faults import BrokenStore, Defect, FaultyStore
from tests.stateful.test_crash_fuzz import MemoryCrashMachine


def broken_machine(defect: Defect) -> type[MemoryCrashMachine]:
    class Broken(MemoryCrashMachine):
        def wrap(self, store: RuntimeStore) -> FaultyStore:
            return BrokenStore(store, defect)

    Broken.__name__ = f"Broken{defect.name.title().replace('_', '')}Machine"
    return Broken


@pytest.mark.parametrize("defect", list(Defect))
def test_crash_fuzzer_catches_a_broken_store(defect: Defect) -> None:
    """ACK_BEFORE_COMMIT: an acknowledged input is not on disk.
    HALF_BOUNDARY: a boundary's receipt is stored with only half its inputs."""
    # The CI profile's search with a larger example budget and no shrinking:
    # the point is that the defect is found (in seconds), not its smallest form.
    find = settings(
        max_examples=1500, report_multiple_bugs=False, phases=[Phase.generate]
    )
    with pytest.raises(AssertionError):
        run_state_machine_as_test(broken_machine(defect), settings=find)
