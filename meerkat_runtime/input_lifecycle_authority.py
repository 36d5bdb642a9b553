"""Upstream's module name for the input lifecycle authority (API.md)."""

from meerkat_runtime.generated.input_lifecycle import (
    InputLifecycleAuthority,
    InputLifecycleEffect,
    InputLifecycleError,
    InputLifecycleInput,
    InputLifecycleSnapshot,
    InputLifecycleState,
    InputLifecycleTransition,
)

__all__ = [
    "InputLifecycleAuthority",
    "InputLifecycleEffect",
    "InputLifecycleError",
    "InputLifecycleInput",
    "InputLifecycleSnapshot",
    "InputLifecycleState",
    "InputLifecycleTransition",
]
