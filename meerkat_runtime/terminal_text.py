"""Stored text made safe to show on an operator's terminal.

Anything a store holds (prompt text, runtime ids, owners, reasons, errors)
came from whoever could submit input, so ``inspect`` and ``audit`` never
write it raw: a control character in it could clear the screen, recolour
it, retitle the window or, with a bidi override, make the text read other
than it is. ``printable`` shows each such character as a visible escape
(``\\x1b``, ``\\u202e``); ``markup_safe`` also escapes rich markup, for
strings handed to ``Console.print``.
"""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text

# Bidirectional embeddings, overrides and isolates: they reorder what is shown.
_BIDI = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A))


def _unsafe(code: int) -> bool:
    """C0 (all of it: a newline would break a one-line field too), DEL,
    C1, and the bidi controls."""
    return code < 0x20 or 0x7F <= code <= 0x9F or code in _BIDI


def _visible(char: str, keep: str) -> str:
    code = ord(char)
    if char in keep or not _unsafe(code):
        return char
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object, keep: str = "") -> str:
    """``text`` with every control character but those in ``keep`` (say a
    multi-line error's newlines) written as a visible escape."""
    return "".join(_visible(char, keep) for char in str(text))


def markup_safe(text: object) -> str:
    """``printable`` text that rich prints literally (no markup)."""
    return escape(printable(text))


def cell(text: object, style: str = "") -> Text:
    """Stored text as a rich table cell: printable, never read as markup."""
    return Text(printable(text), style=style)
