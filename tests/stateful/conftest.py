"""Print the crash fuzzers' totals at the end of a session (`make fuzz`)."""

from __future__ import annotations

import pytest

from tests.stateful.test_crash_fuzz import STATS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if STATS:
        terminalreporter.write_sep("-", "crash fuzzing totals")
        for name, count in sorted(STATS.items()):
            terminalreporter.write_line(f"{name}: {count}")
