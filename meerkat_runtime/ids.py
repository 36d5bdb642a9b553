"""Identifier value types.

Theory of operation: every id is a small immutable wrapper around its text, so
ids of different kinds can never be mixed up by the type checker, yet compare,
hash and serialise as their plain text (docs/behaviour.md T-18). ``X.new()`` mints a
UUIDv7: 48 bits of Unix milliseconds first, so ids sort by creation time, which
keeps stored rows and logs in arrival order.

Caller-chosen ids (an input id, idempotency and supersession keys, a
correlation id, a blob reference) are admitted only if ``id_problem`` finds
nothing: non-blank text of at most ``MAX_ID_LENGTH`` characters without
control characters, so every id fits an index row and prints on one line.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from typing import Self

MAX_ID_LENGTH = 512
"""The longest id text an input may carry (characters, README "Limits")."""

_lock = threading.Lock()
# Seeded from the OS per process, and again in a forked child, so two
# processes never mint the same id in the same millisecond.
_random = random.Random(os.urandom(16))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(16)))
_last_ms = 0
_seq = 0


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7), monotonic within this process."""
    return uuid.UUID(int=_uuid7_int())


_prefix_ms = -1
_prefix_text = ""


def uuid7_text() -> str:
    """``str(uuid7())`` without building a UUID object or big integers (ids
    are minted per event, so this is on the accept path); the millisecond
    part is formatted once per millisecond."""
    global _prefix_ms, _prefix_text
    with _lock:
        ms, seq = _next_stamp_locked()
        if ms != _prefix_ms:
            h = f"{ms & 0xFFFFFFFFFFFF:012x}"
            _prefix_ms, _prefix_text = ms, f"{h[:8]}-{h[8:]}-7"
        prefix = _prefix_text
    r = f"{_random.getrandbits(62) | 0x8000000000000000:016x}"
    return f"{prefix}{seq:03x}-{r[:4]}-{r[4:]}"


def _next_stamp() -> tuple[int, int]:
    """(milliseconds, counter): strictly increasing within this process."""
    with _lock:
        return _next_stamp_locked()


def _next_stamp_locked() -> tuple[int, int]:
    global _last_ms, _seq
    now = time.time_ns() // 1_000_000
    if now <= _last_ms:
        _seq += 1
        if _seq > 0xFFF:  # counter exhausted: borrow the next millisecond
            _last_ms += 1
            _seq = 0
        now = _last_ms
    else:
        _last_ms = now
        _seq = 0
    return now, _seq


def _uuid7_int() -> int:
    """Within one millisecond a 12-bit counter (the ``rand_a`` field) keeps ids
    strictly increasing, so two ids minted in a row never sort backwards. The
    62 random bits make ids from different processes distinct; they need not
    be secret, so the fast Mersenne generator serves."""
    now, seq = _next_stamp()
    value = (now & ((1 << 48) - 1)) << 80
    return value | 0x7 << 76 | seq << 64 | 0b10 << 62 | _random.getrandbits(62)


class _TextId:
    """Base of all id types: immutable, hashable, ordered by text."""

    __slots__ = ("_hash", "_text")
    _text: str
    _hash: int

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(
                f"{type(self).__name__} takes a str, got {type(text).__name__}"
            )
        _fill(self, text)

    @classmethod
    def _from_text(cls, text: str) -> Self:
        """``cls(text)`` for text known to be a ``str`` (the decoder's path)."""
        self = object.__new__(cls)
        _fill(self, text)
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    # Immutable: a copy is the id itself, and pickling goes through the
    # constructor (the default would set the slots, which __setattr__ refuses).
    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self

    def __reduce__(self) -> tuple[type[Self], tuple[str]]:
        return type(self), (self._text,)

    @classmethod
    def new(cls) -> Self:
        """A fresh, unique, time-ordered id."""
        return cls(uuid7_text())

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return other is self or (
            isinstance(other, _TextId)
            and type(other) is type(self)
            and other._text == self._text
        )

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: Self) -> bool:
        return self._text < other._text


class InputId(_TextId):
    """Identifies one input (UUIDv7 text)."""

    __slots__ = ()


class RunId(_TextId):
    """Identifies one run of the executor (UUIDv7 text)."""

    __slots__ = ()


class LogicalRuntimeId(_TextId):
    """Names one runtime; the session adapter uses the session id's text."""

    __slots__ = ()


class IdempotencyKey(_TextId):
    """Caller-chosen deduplication key, scoped to one runtime."""

    __slots__ = ()


class SupersessionKey(_TextId):
    """Caller-chosen key; with the kind and runtime it forms a supersession scope."""

    __slots__ = ()


class CorrelationId(_TextId):
    """Carried for callers; never read by a runtime decision (T-9)."""

    __slots__ = ()


class BlobId(_TextId):
    """Content address of a blob (an image moved out of an input record)."""

    __slots__ = ()


class SessionId(_TextId):
    """Identifies an agent session; its runtime is ``LogicalRuntimeId(str(id))``.
    Chosen by callers and stored as its runtime's key, so held to the
    rules of ``name_problem`` when made."""

    __slots__ = ()

    def __init__(self, text: str) -> None:
        super().__init__(text)
        problem = name_problem(text)
        if problem is not None:
            raise ValueError(f"SessionId {text!r}: {problem}")


# The slots' own setters: ``__setattr__`` refuses every write after creation.
_set_text = vars(_TextId)["_text"].__set__
_set_hash = vars(_TextId)["_hash"].__set__


def _fill(new_id: _TextId, text: str) -> None:
    _set_text(new_id, text)
    # Ids key every dict in the runtime: hash once.
    _set_hash(new_id, hash((type(new_id).__name__, text)))


def id_problem(text: str) -> str | None:
    """Why ``text`` cannot be an admitted id, or None. (A printable string,
    the common case, is settled by one C-level test.)"""
    if len(text) > MAX_ID_LENGTH:
        return f"longer than {MAX_ID_LENGTH} characters"
    if text.isprintable():
        return None if text.strip() else "must not be blank"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        return "contains control characters"
    return None if text.strip() else "must not be blank"


def name_problem(text: str) -> str | None:
    """``id_problem`` for text that is a key of its own rather than part
    of an input record (a session id, a lease owner): it must also be
    encodable, since no input validation looks at it before a store does."""
    problem = id_problem(text)
    if problem is not None or text.isprintable():
        return problem
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (it holds a lone surrogate)"
    return None


def id_types() -> list[type[_TextId]]:
    """Every concrete id type (the codec decodes them without a lookup)."""
    found: list[type[_TextId]] = []
    pending = list(_TextId.__subclasses__())
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending += cls.__subclasses__()
    return found
