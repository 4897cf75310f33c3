"""The console the `jobpipe` CLI writes its stdout through.

Whether stdout is a terminal is asked of the stream itself, by its descriptor: rich takes
FORCE_COLOR or TTY_COMPATIBLE=1 in the environment as saying it is one, and the CLI would then
send a file or a pipe what it sends a terminal (a fitted table with colours and cut values, an
artifact's text redrawn, a binary artifact refused). On a real terminal rich still decides the
colours (NO_COLOR, FORCE_COLOR) and whether it can be redrawn (TERM=dumb, TTY_INTERACTIVE).

rich's emoji codes are off: what the CLI prints is the API's text (a job's message, an
artifact's lines, ids), and `:warning:` or `1:100:2` in it is drawn as those characters, never
as ⚠ or 1💯2.

A reader that went away (`jobpipe watch ID | head -1`) raises BrokenPipeError out of the
console, as it does out of a plain write, so the command ends as it ends then (exit 141):
rich's own handler would exit 1, which a watch means as "a job failed"."""
from __future__ import annotations

import errno
import os
import sys
from typing import Any, Optional, TextIO

from rich.console import Console

__all__ = ["StdoutConsole", "is_a_terminal", "stdout_console"]


def is_a_terminal(stream: Any) -> bool:
    """True when `stream` writes to a terminal (os.isatty on its descriptor); False for one
    without a descriptor (a StringIO, a closed stdout: None) or whose descriptor is closed."""
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last two
        return False


class StdoutConsole(Console):
    """rich's Console, but a closed reader is the BrokenPipeError it is."""

    def on_broken_pipe(self) -> None:
        """Raises BrokenPipeError (called as rich catches one writing or flushing the output)."""
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def stdout_console(stream: Optional[TextIO] = None) -> StdoutConsole:
    """A console writing to `stream` (sys.stdout as it is now, by default) that is a
    terminal exactly when the stream is one, whatever the environment says, and draws text as
    its own characters (no emoji codes)."""
    stream = sys.stdout if stream is None else stream
    terminal = is_a_terminal(stream)
    # Not a terminal: never a live display either (TTY_INTERACTIVE=1 would ask for one).
    return StdoutConsole(file=stream, force_terminal=terminal, force_interactive=None if terminal else False,
                         emoji=False)
