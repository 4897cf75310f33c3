"""How a `jobpipe` command ends: its exit codes, and Terminated (SIGTERM). Nothing imported:
cli_entry.py reads these before anything else of the CLI is loaded."""
from __future__ import annotations

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
