"""The hooks when opentelemetry-api is not installed: nothing at all.

Each decorator hands back the function it is given, so an instrumented
method is the plain method, and the two functions called inline return at
once. Same signatures as ``otel``'s, so callers never know which they got.
"""

# Their arguments are unused by design: the signatures must be otel's.
# ruff: noqa: ARG001

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def _unchanged(fn: F) -> F:
    return fn


traced_accept = counts_events = traced_run = _unchanged
traced_run_event = traced_run_end = run_withdrawn = traced_recovery = _unchanged


def store_commit(system: str, grouped: bool = True) -> Callable[[F], F]:
    return _unchanged


def current_traceparent() -> str | None:
    return None


def fenced_write(runtime_id: object) -> None:
    return None


def configure(
    tracer_provider: Any = None,
    meter_provider: Any = None,
) -> None:
    raise RuntimeError(
        "meerkat_runtime.telemetry.configure needs opentelemetry-api: "
        "pip install 'meerkat-runtime[otel]'"
    )
