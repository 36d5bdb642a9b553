"""The README's example (examples/quickstart.py), run as a user runs it:
twice in one directory, the first run crashing after its acknowledgement,
the second recovering the prompt and answering it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.py"


def _run(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(QUICKSTART)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_second_run_recovers_what_the_first_crashed_on(tmp_path: Path) -> None:
    first = _run(tmp_path)
    assert first.returncode == 1, first.stderr
    assert "recovered: 0 unfinished input(s)" in first.stdout
    assert "accepted: the prompt is on disk" in first.stdout
    assert "model:" not in first.stdout  # it crashed before any run

    second = _run(tmp_path)
    assert second.returncode == 0, second.stderr
    assert "recovered: 1 unfinished input(s)" in second.stdout
    assert "deduplicated" in second.stdout
    assert second.stdout.count("model: running 'hello, agent'") == 1
    assert "echo: hello, agent" in second.stdout

    third = _run(tmp_path)
    assert third.returncode == 0, third.stderr
    assert "recovered: 0 unfinished input(s)" in third.stdout
    assert "answered by an earlier run" in third.stdout
    assert "model:" not in third.stdout  # applied once, never again


def test_the_readme_shows_the_quickstart_as_it_is() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"```python\n{QUICKSTART.read_text(encoding='utf-8')}```" in readme
