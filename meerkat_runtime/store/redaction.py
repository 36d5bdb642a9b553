"""Passwords taken out of text that names a PostgreSQL connection.

libpq and psycopg put the whole conninfo, password included, in some of
their error messages, and a DSN given on a command line carries it too.
``redact`` replaces the password in both spellings, conninfo
(``password=...``, quoted or not) and URL (``scheme://user:secret@host``,
or ``?password=...``), so an error can be logged or printed as it is.
"""

from __future__ import annotations

import re

HIDDEN = "***"

# `password = 'it''s \' quoted'` or a bare word; in a URL query it ends at `&`.
_CONNINFO = re.compile(r"(password\s*=\s*)(?:'(?:[^'\\]|\\.|'')*'|[^\s&'\"]+)", re.I)
# The userinfo's password: after `scheme://user:` up to the last `@` before
# the host part (a password may hold an unencoded `@` or `:`).
_URL = re.compile(r"([a-z][a-z0-9+.-]*://[^/:@\s]*:)[^\s/]*@", re.I)


def redact(text: str) -> str:
    """``text`` with every connection password replaced by ``***``."""
    return _CONNINFO.sub(rf"\g<1>{HIDDEN}", _URL.sub(rf"\g<1>{HIDDEN}@", text))
