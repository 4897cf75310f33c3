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
rich's own handler would exit 1, which a watch means as "a job failed". Any other failure to
write stdout (a full disk, `>&-`, a descriptor not open for writing) is StdoutError, whose
message is the CLI's one line.

Text stdout's encoding cannot write (a lone surrogate in an answer, `✓` where stdout is ASCII
or cp1252) is written as its backslash escape, as Python writes it to stderr: never a
UnicodeEncodeError out of a table or a progress line."""
from __future__ import annotations

import errno
import io
import os
import sys
from typing import Any, Optional, TextIO

from rich.console import Console

from jobpipe_client.cli_exits import StdoutError, stdout_closed, stdout_written

__all__ = ["GuardedStdout", "StdoutConsole", "StdoutError", "is_a_terminal", "stdout_console"]


class GuardedStdout:
    """stdout as the CLI writes it: text through `write`, an artifact's bytes through `buffer`,
    any failure to write either (but a reader gone) raised as StdoutError. `stream` is None
    when stdout is closed (`>&-`: Python then has no sys.stdout), and every write fails."""

    def __init__(self, stream: Optional[TextIO]) -> None:
        self._stream = stream

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", None) or "utf-8"

    @property
    def buffer(self) -> "GuardedStdoutBytes":
        return GuardedStdoutBytes(None if self._stream is None else self._stream.buffer)

    def write(self, text: str) -> int:
        stream = self._stream
        if stream is None:
            raise stdout_closed()
        try:
            return stdout_written(lambda: stream.write(text))
        except UnicodeEncodeError:  # the stream encoded nothing, so nothing of `text` was written
            return stdout_written(lambda: stream.write(self._encodable(text)))

    def _encodable(self, text: str) -> str:
        """`text` with what stdout's encoding cannot write as its escape (`\\u2713` where the
        encoding is ASCII, `\\ud800` for a lone surrogate anywhere), as stderr writes it."""
        encoding = self.encoding
        return text.encode(encoding, "backslashreplace").decode(encoding)

    def flush(self) -> None:
        if self._stream is not None:  # nothing written can be pending on a closed stdout
            stdout_written(self._stream.flush)

    def fileno(self) -> int:
        if self._stream is None:
            raise io.UnsupportedOperation("stdout is closed")
        return self._stream.fileno()

    def isatty(self) -> bool:
        return is_a_terminal(self._stream)

    def writable(self) -> bool:
        return True


class GuardedStdoutBytes:
    """stdout's binary buffer (None: stdout is closed), its write failures StdoutError."""

    def __init__(self, buffer: Any) -> None:
        self._buffer = buffer

    def write(self, data: bytes) -> int:
        """Writes all of `data` and returns its length. With stdout unbuffered (PYTHONUNBUFFERED=1,
        `python -u`) the buffer is the raw file, whose write may take part of the bytes (a reader
        gone mid-write, a pipe that is non-blocking): the rest is written after them."""
        buffer = self._buffer
        if buffer is None:
            raise stdout_closed()
        left = memoryview(data).cast("B")
        while left:
            taken = stdout_written(lambda: buffer.write(left))
            if taken is None:  # a non-blocking stdout with no room: as a buffered one says it
                raise StdoutError(f"cannot write stdout: {os.strerror(errno.EAGAIN)}")
            left = left[taken:]
        return len(data)

    def flush(self) -> None:
        if self._buffer is not None:
            stdout_written(self._buffer.flush)

    def writable(self) -> bool:
        return True


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
    """A console writing to `stream` (sys.stdout as it is now, by default; None when stdout is
    closed) through GuardedStdout, that is a terminal exactly when the stream is one, whatever
    the environment says, and draws text as its own characters (no emoji codes)."""
    stream = sys.stdout if stream is None else stream
    terminal = is_a_terminal(stream)
    # Not a terminal: never a live display either (TTY_INTERACTIVE=1 would ask for one).
    return StdoutConsole(file=GuardedStdout(stream), force_terminal=terminal,  # type: ignore[arg-type]
                         force_interactive=None if terminal else False, emoji=False)
