"""``inspect`` and ``audit`` never write a control character taken from a
store to the terminal (review finding: a prompt or runtime id holding
``ESC [2J`` cleared the operator's screen when inspected)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from meerkat_runtime import LogicalRuntimeId, PromptInput
from meerkat_runtime.blobs import MemoryBlobStore
from meerkat_runtime.cli import main
from meerkat_runtime.driver.persistent import PersistentRuntimeDriver
from meerkat_runtime.store import SqliteRuntimeStore
from meerkat_runtime.terminal_text import markup_safe, printable

HOSTILE_ID = "esc\x1b[2J\x1b[31mred"
HOSTILE_PROMPT = "\x1b[41mBG\x1b[0m \u202eevil\u202c [bold]x[/bold] \x9b1m\x07"
# Every character the sanitiser must turn into a visible escape.
CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))] + [
    chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
]


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.db"

    async def build() -> None:
        store = SqliteRuntimeStore(path)
        rid = LogicalRuntimeId(HOSTILE_ID)
        driver = PersistentRuntimeDriver(rid, store, MemoryBlobStore())
        outcome = await driver.accept_input(PromptInput.new(HOSTILE_PROMPT))
        assert outcome.is_accepted()
        await store.close()

    asyncio.run(build())
    return path


def _raw_controls(text: str) -> list[str]:
    return [c for c in text if c in CONTROLS and c != "\n"]


def test_printable_escapes_every_control_character() -> None:
    shown = printable("".join(CONTROLS))
    assert all(c not in shown for c in CONTROLS)
    assert printable("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert printable("\x9b\x7f\u202e\u2069") == "\\x9b\\x7f\\u202e\\u2069"
    assert printable("plain text, ünïcode → ok") == "plain text, ünïcode → ok"
    assert markup_safe("\x1b[bold]x") == "\\x1b\\[bold]x"


def test_inspect_shows_stored_escapes_visibly(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(database)]) == 0
    out = capsys.readouterr().out
    assert _raw_controls(out) == []
    assert "esc\\x1b[2J\\x1b[31mred" in out  # the runtime id, whole
    assert "\\x1b[41mBG\\x1b[0m \\u202eevil\\u202c [bold]x[/bold]" in out
    assert "\\x9b1m\\x07" in out


def test_inspect_json_escapes_control_characters(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", "--json", str(database)]) == 0
    out = capsys.readouterr().out
    assert _raw_controls(out) == []
    (runtime,) = json.loads(out)["runtimes"]
    assert runtime["runtime_id"] == HOSTILE_ID  # escaped, not altered


def test_audit_text_output_shows_escapes_visibly(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", str(database)]) == 0
    out = capsys.readouterr().out
    assert _raw_controls(out) == []
    assert "\\x1b[2J" in out
