"""No PostgreSQL password reaches an error message (review finding:
``inspect 'postgresql://u:PW@host/x'`` printed ``password=PW`` when the
connection failed, quoted from libpq's conninfo)."""

from __future__ import annotations

import psycopg
import pytest

from meerkat_runtime.cli import main
from meerkat_runtime.inspection_postgres import label
from meerkat_runtime.store.base import ReadFailedError, UnavailableError
from meerkat_runtime.store.postgres_boundary import store_error
from meerkat_runtime.store.redaction import redact

SECRET = "S3CRETPW"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("user=u password=S3CRETPW dbname=x", "user=u password=*** dbname=x"),
        ("password = 'a S3CRETPW \\' b' host=h", "password = *** host=h"),
        ("postgresql://u:S3CRETPW@h:5/x", "postgresql://u:***@h:5/x"),
        ("postgres://u:S3C@RETPW@h/x", "postgres://u:***@h/x"),
        (
            "postgres://u@h/x?a=1&PASSWORD=S3CRETPW&b=2",
            "postgres://u@h/x?a=1&PASSWORD=***&b=2",
        ),
        ("postgresql://u@h:5432/x user=u", "postgresql://u@h:5432/x user=u"),
    ],
)
def test_redact_hides_the_password_in_both_spellings(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_the_label_of_a_dsn_leaves_its_password_out() -> None:
    shown = label(f"postgresql://u:{SECRET}@h:5/x", "meerkat")
    assert SECRET not in shown
    assert "user=u" in shown
    assert "schema meerkat" in shown


def test_the_store_boundary_never_carries_a_password() -> None:
    exc = psycopg.OperationalError(f"connect failed: user=u password={SECRET} host=h")
    error = store_error(exc, "opening", ReadFailedError)
    assert isinstance(error, UnavailableError)
    assert SECRET not in str(error)
    assert "password=***" in str(error)


@pytest.mark.parametrize(
    "target",
    [
        f"postgresql://u:{SECRET}@127.0.0.1:1/x",  # nothing listens on port 1
        f"postgresql://u@127.0.0.1:1/x?password={SECRET}",
        f"host=127.0.0.1 port=1 password={SECRET}",  # read as a file path
    ],
)
def test_inspect_errors_never_print_the_password(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", target]) != 0
    captured = capsys.readouterr()
    assert "error:" in captured.err
    assert SECRET not in captured.err + captured.out
