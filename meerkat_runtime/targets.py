"""What a command-line target names: a PostgreSQL database or a SQLite file.

``inspect``, ``audit`` and ``worker`` take either. A PostgreSQL target is a
URL (``postgresql://...``) or a libpq conninfo string (``host=... dbname=...``);
anything else is the path of a SQLite file. Kept free of psycopg, so the
SQLite paths work without the ``postgres`` extra.
"""

from __future__ import annotations

import re

DSN_PREFIXES = ("postgresql://", "postgres://")
_CONNINFO = re.compile(r"\s*[a-z_]+\s*=")


def is_dsn(target: str) -> bool:
    """A PostgreSQL URL or conninfo string, not a SQLite file's path."""
    return target.startswith(DSN_PREFIXES) or bool(_CONNINFO.match(target))
