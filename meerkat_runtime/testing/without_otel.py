"""Python source that hides every ``opentelemetry`` module from the process
that runs it first: how the tests and ``bench/durable_tracing.py`` run the
library as if the ``otel`` extra were not installed, whatever the
environment holds. Prepend it to a child's ``python -c`` program."""

from __future__ import annotations

import textwrap

HIDE_OPENTELEMETRY = textwrap.dedent(
    """
    import sys

    class HideOpenTelemetry:
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, HideOpenTelemetry())
    """
)
