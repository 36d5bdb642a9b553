"""A command-line target is PostgreSQL (URL or conninfo) or a SQLite file,
decided the same way by inspect, audit and worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from meerkat_runtime.cli import main
from meerkat_runtime.targets import is_dsn


@pytest.mark.parametrize(
    "target",
    ["postgresql://u@h/db", "postgres://h/db", "host=/tmp dbname=x", " dbname=x"],
)
def test_urls_and_conninfo_strings_name_postgresql(target: str) -> None:
    assert is_dsn(target)


@pytest.mark.parametrize("target", ["state.db", "/var/lib/x.sqlite", "./a b.db"])
def test_anything_else_is_a_sqlite_path(target: str) -> None:
    assert not is_dsn(target)


@pytest.mark.parametrize("command", ["inspect", "audit"])
def test_a_conninfo_target_with_a_schema_is_not_called_a_sqlite_file(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-server"
    status = main(
        [command, f"host={missing} dbname=x connect_timeout=1", "--schema", "s"]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert "SQLite file" not in err
    assert "password" not in err or "***" in err
