"""Upstream's module name for the runtime control authority."""

from meerkat_runtime.generated.runtime_control import (
    RuntimeControlAuthority,
    RuntimeControlEffect,
    RuntimeControlError,
    RuntimeControlInput,
    RuntimeControlSnapshot,
    RuntimeControlTransition,
    RuntimeState,
)

__all__ = [
    "RuntimeControlAuthority",
    "RuntimeControlEffect",
    "RuntimeControlError",
    "RuntimeControlInput",
    "RuntimeControlSnapshot",
    "RuntimeControlTransition",
    "RuntimeState",
]
