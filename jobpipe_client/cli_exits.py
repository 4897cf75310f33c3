"""How a `jobpipe` command ends: its exit codes, Terminated (SIGTERM) and StdoutError, with the
two helpers every write to stdout goes through (`stdout_written`, `stdout_closed`). Nothing
imported: cli_entry.py reads these before anything else of the CLI is loaded, cli.py tells a
command's endings apart and the parser writes --help before the client and rich are loaded."""
from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a command whose reader went away
EXIT_TERMINATED = 143  # 128 + SIGTERM: what a shell reports for a command that SIGTERM ended


class Terminated(KeyboardInterrupt):
    """SIGTERM (`timeout`, `kill`, a CI job canceled), raised where the command stands so it ends
    as Ctrl-C ends it: the progress display closed and the cursor shown again, a submit's key
    named. A KeyboardInterrupt, so a submit waiting for its answer turns it into
    SubmitInterruptedError like Ctrl-C."""


class StdoutError(Exception):
    """stdout cannot take what is written to it: `cannot write stdout: <why>`. Not a reader
    that went away: that stays BrokenPipeError (the command ends quietly, 141)."""


def stdout_written(write: Callable[[], T]) -> T:
    """`write()`'s result; an OSError it raises, but for BrokenPipeError, as StdoutError."""
    try:
        return write()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise StdoutError(f"cannot write stdout: {exc.strerror or exc}") from exc


def stdout_closed() -> StdoutError:
    """What a write to a closed stdout (`>&-`: Python has no sys.stdout) raises."""
    return StdoutError("cannot write stdout: it is closed")
