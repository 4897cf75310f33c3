"""The API's text as a terminal shows it: as characters, never as commands.

A job's message, step, error, type or scope comes from handler code fed by tenant input, and an
answer's message or details from the API; written to a terminal as it came, an escape sequence
in it would be obeyed (OSC 52 writes the clipboard, CSI 2J clears the screen, a bare carriage
return overwrites the line, a right-to-left override reorders what follows). Rich keeps ESC and
the 8-bit controls, so every value of the API's is passed through `shown` before it is drawn.
--json output is the data as it came and never passes here."""
from __future__ import annotations

import re
from typing import Optional, TextIO

__all__ = ["say", "shown"]

# C0 and C1 controls, DEL, Unicode's line and paragraph separators and the bidi embeddings,
# overrides and isolates; `\r\n` first, so a Windows line break is one break.
_UNSAFE = re.compile("\r\n|[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Breaks and tabs are whitespace to a reader: one line stays one line.
_SPACES = {"\r\n", "\n", "\t", "\u2028", "\u2029"}
_NAMED = {"\r": "\\r"}


def _escaped(match: "re.Match[str]") -> str:
    char = match.group()
    if char in _SPACES:
        return " "
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def shown(text: object) -> str:
    """`text` (str() of it) safe to write to a terminal: line breaks and tabs become spaces,
    every other control character its escape (`\\x1b`, `\\r`, `\\u202e`); the rest as it was.
    Rich markup in it is not this function's concern: draw it as rich `Text`, never markup."""
    return _UNSAFE.sub(_escaped, str(text))


def first_of(items: list[str], most: int, joint: str = ", ") -> str:
    """The first `most` of `items` joined by `joint`, the rest counted: `a, b, c and 1997 more`
    (a line that names a few of thousands stays a line)."""
    more = len(items) - most
    return joint.join(items[:most]) + (f" and {more} more" if more > 0 else "")


def say(err: Optional[TextIO], message: str) -> None:
    """`jobpipe: message` on `err` in one line, whatever line breaks or other control
    characters (escaped) the message (often the server's text) holds. Nothing when stderr is
    closed (`2>&-`: `err` is None), where print would write the line on stdout, into the data.
    Here, with nothing but `re` imported, so the CLI's entry point says its lines with it too."""
    if err is not None:
        print(f"jobpipe: {' '.join(shown(message).split())}", file=err)
