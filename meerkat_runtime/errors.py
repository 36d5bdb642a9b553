"""The driver's error family (A-1, C-8 ...): one base, variants as attributes.

``RuntimeDriverError`` is "you asked for something this runtime cannot do"
(not ready, invalid input, destroyed) or, for ``Internal``, a failure under
the driver (a store error, wrapped with its text).
"""

from __future__ import annotations

from typing import Any, ClassVar


def rebuilt(error: BaseException, *args: object) -> tuple[Any, ...]:
    """``__reduce__`` of an error whose constructor formats its text: it is
    built again from ``args`` (copying or pickling it would otherwise feed
    the formatted text back in, doubling its prefix), and its other
    attributes (notes added on the way) come along."""
    return type(error), args, error.__dict__


class RuntimeDriverError(Exception):
    """Base of the driver errors; ``except RuntimeDriverError`` catches all."""

    NotReady: ClassVar[type[NotReadyError]]
    ValidationFailed: ClassVar[type[ValidationFailedError]]
    Destroyed: ClassVar[type[DestroyedError]]
    Internal: ClassVar[type[InternalError]]


class NotReadyError(RuntimeDriverError):
    """The runtime's phase does not accept this operation (A-1). ``detail``
    says why when the phase alone would mislead (an unregistered session, a
    closed adapter); the text then names that instead of the phase."""

    def __init__(self, state: object, detail: str | None = None) -> None:
        self.state = state
        self.detail = detail
        why = detail if detail is not None else getattr(state, "value", state)
        super().__init__(f"Runtime not ready: {why}")

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt(self, self.state, self.detail)


class ValidationFailedError(RuntimeDriverError):
    """The request is malformed or illegal here; nothing was changed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Input validation failed: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt(self, self.reason)


class DestroyedError(RuntimeDriverError):
    def __init__(self) -> None:
        super().__init__("Runtime destroyed")

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt(self)


class InternalError(RuntimeDriverError):
    """Something under the driver failed; ``str()`` carries the cause's text."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"Internal error: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt(self, self.message)


RuntimeDriverError.NotReady = NotReadyError
RuntimeDriverError.ValidationFailed = ValidationFailedError
RuntimeDriverError.Destroyed = DestroyedError
RuntimeDriverError.Internal = InternalError
