"""Structured fields for the library's log records.

Every record a ``meerkat_runtime.*`` logger writes passes ``extra=fields(...)``:
the same three attributes (``names.LOG_FIELDS``) on every record, None when
one does not apply, so a JSON formatter or a ``%(runtime_id)s`` format string
finds them whichever record it is given. Independent of OpenTelemetry: logs
are structured with or without it.
"""

from __future__ import annotations


def fields(
    runtime_id: object = None, *, run_id: object = None, input_id: object = None
) -> dict[str, str | None]:
    """The ``extra`` of one log record: ids as text (a formatter that
    serialises records to JSON needs no knowledge of the id types)."""
    return {
        "runtime_id": _text(runtime_id),
        "run_id": _text(run_id),
        "input_id": _text(input_id),
    }


def _text(value: object) -> str | None:
    return None if value is None else str(value)
