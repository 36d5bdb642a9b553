"""Telemetry: OpenTelemetry traces and metrics, structured log fields.

Theory of operation: whether ``opentelemetry-api`` (the ``otel`` extra) is
installed is decided once, here, at import. With it, the hooks come from
``otel`` and record through the API (which does nothing until an
application installs an SDK); without it, from ``absent``, where every
decorator returns the function it decorates, so the library runs exactly
the code it runs uninstrumented. Call sites use the hooks as
``@telemetry.traced_accept`` and the like, one line each; ``names`` holds
every span, metric and attribute name; ``logs.fields`` the ``extra`` of the
library's log records, which need no OpenTelemetry.
"""

from __future__ import annotations

from meerkat_runtime.telemetry import names
from meerkat_runtime.telemetry.logs import fields as log_fields

# Only the API's own import is guarded; ``otel`` is imported outside the
# guard, so an ImportError of ours is never taken for "not installed".
try:
    import opentelemetry.metrics
    import opentelemetry.trace  # noqa: F401
except ImportError:
    AVAILABLE = False
else:
    AVAILABLE = True

if AVAILABLE:
    from meerkat_runtime.telemetry import otel as _hooks
else:
    from meerkat_runtime.telemetry import absent as _hooks  # type: ignore[no-redef]

configure = _hooks.configure
counts_events = _hooks.counts_events
current_traceparent = _hooks.current_traceparent
fenced_write = _hooks.fenced_write
run_withdrawn = _hooks.run_withdrawn
store_commit = _hooks.store_commit
traced_accept = _hooks.traced_accept
traced_recovery = _hooks.traced_recovery
traced_run = _hooks.traced_run
traced_run_event = _hooks.traced_run_event
traced_run_end = _hooks.traced_run_end

__all__ = [
    "AVAILABLE",
    "configure",
    "counts_events",
    "current_traceparent",
    "fenced_write",
    "log_fields",
    "names",
    "run_withdrawn",
    "store_commit",
    "traced_accept",
    "traced_recovery",
    "traced_run",
    "traced_run_end",
    "traced_run_event",
]
