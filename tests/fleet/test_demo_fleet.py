"""``make demo-fleet`` (``meerkat-runtime demo --fleet``): worker processes
share the sessions, one is SIGKILLed mid-run and the others finish its
work; the demo checks its claims and exits 1 when one fails."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from meerkat_runtime import demo_fleet
from meerkat_runtime.testing.fleet import FleetCheck


def test_the_fleet_demo_holds_its_claims(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "meerkat_runtime.cli",
            "demo",
            "--fleet",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SIGKILL worker-" in done.stdout
    assert done.stdout.count("✓") == 5
    assert "✗" not in done.stdout
    assert "were taken over and finished by the others" in done.stdout


def test_the_fleet_demo_exits_1_when_an_input_is_lost_or_applied_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def found_a_double(*_: object) -> FleetCheck:
        return FleetCheck(inputs=1, receipts=2, problems=["x: named by 2 receipts"])

    monkeypatch.setattr(demo_fleet, "check_exactly_once", found_a_double)
    out = io.StringIO()
    assert demo_fleet.run_fleet_demo(tmp_path, False, Console(file=out, width=200)) == 1
    assert "✗ 1 acknowledged inputs" in out.getvalue()
