"""The error tree: one root, and the driver and store families under it.

Every error this library raises on purpose derives from ``MeerkatError``,
so ``except MeerkatError`` catches them all and nothing else. Each family
is a base class with its variants as nested attributes
(``RuntimeStoreError.Unavailable``), as API.md's translation rules ask.

``retryable`` answers the one question a caller must be able to ask of any
error: may the same call succeed if tried again later, unchanged? Only a
store that could not be reached says yes (``RuntimeStoreError.Unavailable``:
a lock held elsewhere, a full disk, an I/O error), and an error that wraps
one (``RuntimeDriverError.Internal`` over it) passes the answer on. A bug, a
conflict or a corrupt record says no: trying again would fail the same way.

Texts: each error names its own kind once (``Internal error: ...``,
``Store write failed: ...``); an error wrapping another adds its prefix to
the inner one's text, so a failure reads as the path it took.
"""

from __future__ import annotations

from typing import Any, ClassVar


def rebuilt(error: BaseException, *args: object) -> tuple[Any, ...]:
    """``__reduce__`` of an error whose constructor formats its text: it is
    built again from ``args`` (copying or pickling it would otherwise feed
    the formatted text back in, doubling its prefix), and its other
    attributes (notes added on the way) come along."""
    return type(error), args, error.__dict__


class MeerkatError(Exception):
    """Root of every error meerkat-runtime raises on purpose."""

    @property
    def retryable(self) -> bool:
        """True when the same call may succeed later (see the module notes)."""
        return False


# ---------------------------------------------------------------- driver


class RuntimeDriverError(MeerkatError):
    """Base of the driver errors; ``except RuntimeDriverError`` catches all.

    "You asked for something this runtime cannot do" (not ready, invalid
    input, destroyed) or, for ``Internal``, a failure under the driver.
    """

    NotReady: ClassVar[type[NotReadyError]]
    ValidationFailed: ClassVar[type[ValidationFailedError]]
    Destroyed: ClassVar[type[DestroyedError]]
    Internal: ClassVar[type[InternalError]]
    PendingLimit: ClassVar[type[PendingLimitError]]


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
    """Something under the driver failed; ``str()`` carries the cause's text.

    The driver raises it ``from`` the store error it wraps: ``store_error``
    is that error (never flattened to text) and ``retryable`` is its answer.
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"Internal error: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt(self, self.message)

    @property
    def store_error(self) -> RuntimeStoreError | None:
        """The store error this one wraps, however deep in its causes."""
        seen: set[int] = set()
        cause = self.__cause__
        while cause is not None and id(cause) not in seen:  # a cause may be itself
            if isinstance(cause, RuntimeStoreError):
                return cause
            seen.add(id(cause))
            cause = cause.__cause__
        return None

    @property
    def retryable(self) -> bool:
        wrapped = self.store_error
        return wrapped is not None and wrapped.retryable


class PendingLimitError(RuntimeDriverError):
    """Back-pressure (PD-43): the runtime already holds ``limit`` unfinished
    inputs, so a new one is refused and nothing is stored. The input itself
    is fine: the same accept succeeds once runs have finished some, so the
    error is retryable."""

    def __init__(self, runtime_id: object, limit: int) -> None:
        self.runtime_id = runtime_id
        self.limit = limit
        super().__init__(
            f"Runtime {runtime_id} has reached its pending input limit "
            f"(max_pending_inputs={limit}): retry once some inputs have finished"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt(self, self.runtime_id, self.limit)

    @property
    def retryable(self) -> bool:
        return True


RuntimeDriverError.NotReady = NotReadyError
RuntimeDriverError.ValidationFailed = ValidationFailedError
RuntimeDriverError.Destroyed = DestroyedError
RuntimeDriverError.Internal = InternalError
RuntimeDriverError.PendingLimit = PendingLimitError


# ---------------------------------------------------------------- ownership


class RuntimeOwnedError(MeerkatError):
    """Another live owner holds the runtime's lease (PD-36): ``owner`` names
    it and ``expires_at`` (wall-clock seconds, as ``time.time()``) is when
    its lease runs out unless renewed. Retryable: once that owner stops
    renewing, the same claim succeeds."""

    def __init__(self, runtime_id: object, owner: str, expires_at: float) -> None:
        self.runtime_id = runtime_id
        self.owner = owner
        self.expires_at = expires_at
        super().__init__(
            f"runtime {runtime_id} is owned by {owner} "
            f"(lease expires at {expires_at:.3f})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt(self, self.runtime_id, self.owner, self.expires_at)

    @property
    def retryable(self) -> bool:
        return True


# ---------------------------------------------------------------- store


class RuntimeStoreError(MeerkatError):
    """Base of store failures; ``except RuntimeStoreError`` catches all."""

    WriteFailed: ClassVar[type[WriteFailedError]]
    ReadFailed: ClassVar[type[ReadFailedError]]
    NotFound: ClassVar[type[NotFoundError]]
    Internal: ClassVar[type[StoreInternalError]]
    Conflict: ClassVar[type[ConflictError]]
    Unavailable: ClassVar[type[UnavailableError]]
    Corrupt: ClassVar[type[CorruptError]]
    Fenced: ClassVar[type[FencedError]]

    prefix: ClassVar[str] = "Store error"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"{self.prefix}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt(self, self.message)


class WriteFailedError(RuntimeStoreError):
    """A write was refused (a value the store cannot hold, a failed
    statement); nothing of it was written."""

    prefix = "Store write failed"


class ReadFailedError(RuntimeStoreError):
    prefix = "Store read failed"


class NotFoundError(RuntimeStoreError):
    prefix = "Not found"


class StoreInternalError(RuntimeStoreError):
    """The store itself cannot serve (closed, a file it cannot use)."""

    prefix = "Store internal error"


class ConflictError(WriteFailedError):
    """The write contradicts what is stored (a different receipt for a
    committed boundary, decision 16); nothing of it was written. A kind of
    ``WriteFailed``, as it was before it had a name of its own."""


class UnavailableError(RuntimeStoreError):
    """The store could not be reached or could not finish, through no fault
    of the data: a lock another connection holds, a full disk, an I/O error.
    Nothing was written; the same call may succeed later."""

    prefix = "Store unavailable"

    @property
    def retryable(self) -> bool:
        return True


class CorruptError(ReadFailedError):
    """A stored record fails its strict decoding or integrity check; the
    text names the runtime, the record and the table. Found by reading, so
    a kind of ``ReadFailed`` (its text starts the same)."""


class FencedError(RuntimeStoreError):
    """A write from an owner whose lease on the runtime was taken over:
    another process now owns ``runtime_id`` at lease ``epoch``."""

    prefix = "Store write fenced"

    def __init__(self, runtime_id: object, epoch: int) -> None:
        self.runtime_id = runtime_id
        self.epoch = epoch
        super().__init__(
            f"runtime {runtime_id} is owned elsewhere since lease epoch {epoch}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuilt(self, self.runtime_id, self.epoch)


RuntimeStoreError.WriteFailed = WriteFailedError
RuntimeStoreError.ReadFailed = ReadFailedError
RuntimeStoreError.NotFound = NotFoundError
RuntimeStoreError.Internal = StoreInternalError
RuntimeStoreError.Conflict = ConflictError
RuntimeStoreError.Unavailable = UnavailableError
RuntimeStoreError.Corrupt = CorruptError
RuntimeStoreError.Fenced = FencedError


def is_retryable(error: BaseException) -> bool:
    """``error.retryable`` for this library's errors; False for anything
    else (an error nobody classified is not assumed to pass)."""
    return isinstance(error, MeerkatError) and error.retryable
