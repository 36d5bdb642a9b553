"""The PostgreSQL the tests run against (PD-50).

One throwaway server (``meerkat_runtime.testing.postgres_server``) is
started on first use and serves the whole test run; ``MEERKAT_TEST_PG_DSN``
points the same tests at an existing server instead. Every test works in a
schema of its own (``new_schema``), dropped afterwards, so tests never see
each other's rows and an existing server is left as it was found.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from meerkat_runtime.testing.postgres_server import ThrowawayPostgres

DSN_VARIABLE = "MEERKAT_TEST_PG_DSN"
_server: ThrowawayPostgres | None = None


def server_dsn() -> str:
    """The DSN of the tests' server, starting the throwaway one if needed."""
    global _server
    given = os.environ.get(DSN_VARIABLE)
    if given:
        return given
    if _server is None:
        _server = ThrowawayPostgres().start()
    return _server.dsn


def stop_server() -> None:
    global _server
    if _server is not None:
        _server.stop()
        _server = None


def new_schema() -> str:
    return f"test_{uuid.uuid4().hex[:20]}"


def drop_schema(schema: str) -> None:
    with psycopg.connect(server_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def dsn_url(dsn: str) -> str:
    """``dsn`` as a postgresql:// URL, as a user would type it."""
    parts = conninfo_to_dict(dsn)
    query = urlencode({k: v for k, v in parts.items() if k not in ("user", "dbname")})
    return f"postgresql://{parts.get('user', '')}@/{parts.get('dbname', '')}?{query}"
