"""The `jobpipe` console script's entry point (pyproject.toml's [project.scripts]).

Ctrl-C and SIGTERM are made the CLI's before anything heavy is imported: the parser, the client
(requests) and rich load under them, so an interrupt while they load (most of a short command's
time) ends as one later does, one line and exit 130 (143 for SIGTERM), never a traceback. This
module imports nothing but the standard library's os, signal and sys, cli_exits.py and
terminal_text.py (which imports `re`, loaded before any of it by Python's start).
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Any, NoReturn, Optional

from jobpipe_client.cli_exits import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated
from jobpipe_client.terminal_text import say


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def run() -> NoReturn:
    """Runs the command on sys.argv and exits with its code. SIGTERM ends a command as Ctrl-C does
    (exit 143); stdout that cannot be written is one line and exit 2, a reader gone exit 141,
    quietly."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    code: Optional[int] = None
    try:
        from jobpipe_client import cli  # after the handler: an interrupt while it loads is caught below

        code = cli.main()
        if sys.stdout is not None:  # None: closed (`>&-`), nothing to flush
            sys.stdout.flush()  # a reader gone before the last buffered output shows up here
    except KeyboardInterrupt as exc:  # one main does not end: while the CLI loads or reads its arguments
        terminated = isinstance(exc, Terminated)
        say(sys.stderr, "terminated" if terminated else "interrupted")
        sys.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
    except BrokenPipeError:
        code = EXIT_BROKEN_PIPE
    except OSError as exc:
        if code is None:  # not the flush's
            raise
        if code == 0:  # a write the command made failed first, and said so
            say(sys.stderr, f"cannot write stdout: {exc.strerror or exc}")
            code = EXIT_BAD_INPUT
    else:
        sys.exit(code)
    # What stdout still holds is flushed again on the way out: point it at devnull so that flush
    # cannot fail too (the Python docs' recipe for SIGPIPE).
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)


if __name__ == "__main__":
    run()
