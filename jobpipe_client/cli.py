"""`jobpipe`: submit, rerun, inspect, list, cancel and watch jobs, list the job types, and fetch their artifacts, from a shell.

Connection from flags or the environment: `--api-url` / JOBPIPE_API_URL, `--token` /
JOBPIPE_TOKEN, `--fallback-url` (repeatable) / JOBPIPE_FALLBACK_URLS (comma-separated).

Exit codes: 0 done (every watched job, and every child it spawned, completed); 1 a watched job or
one of its children failed or was canceled, or is no longer found (not_found: deleted while
watched), or the job's result asked for is gone (its stored object no longer exists:
blob_not_found);
2 bad input (usage, payload, idempotency key, an artifact name outside the rules, an output
file that exists without --force or cannot be written, stdout that cannot be written (a full
disk, closed: `>&-`; a submit's line names the job it made), configuration such as a URL with an
unusable host, or the API refused the request, e.g. an unknown job or artifact or the tenant's
quota (429 quota_exceeded, its line saying when to try again)); 3 no API URL answered, or none
with an answer that could be read, or the API said it is unavailable (its code is on the line),
or an artifact's download from its S3 link failed (refused, expired, gone, no answer); for
a submit or rerun that may have been accepted, the line names the idempotency key to repeat it with,
quoted for a shell; a watch rides out polls that get no answer, and exits 3 only once they have
failed for --give-up-after seconds in a row (default 60), or when its --timeout runs out while
they fail; 4 a --timeout ran out; 130 interrupted (during a submit's request, with the
key to repeat it with); 141 stdout was closed early (`jobpipe list | head`), quietly (but for a
submit or rerun whose job's id it had not yet taken: that line names the job); 143
terminated (SIGTERM: `timeout`, `kill`), ended as Ctrl-C ends it. Every failure is one line on
stderr.

This module runs a command: it parses the command line (cli_parser.py), builds the client, runs
the command (cli_commands.py) and turns how it failed into that line and its exit code.
cli_entry.py, the console script's entry point, makes Ctrl-C and SIGTERM its own before it
imports this, and ends what main does not (its exit code, a reader gone, a stdout that fails).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, TextIO

from jobpipe_client import cli_entry
from jobpipe_client.cli_options import UsageError
from jobpipe_client.cli_exits import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    EXIT_TERMINATED,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    StdoutError,
    Terminated,
)
from jobpipe_client.cli_parser import build_parser
from jobpipe_client.terminal_text import say
from jobpipe_client.inputs import api_url
from jobpipe_client.errors import (
    describe_details,
    JobpipeClientError,
    JobpipeError,
    JobpipeInputError,
    JobpipeUnavailableError,
    ResultGoneError,
    SubmitInterruptedError,
    SubmitOutcomeUnknownError,
    WaitTimeoutError,
)

# The client (requests), the commands and rich are imported once the command line is read:
# `--help`, `--version` and a usage error need none of them (a tenth of the time without).
if TYPE_CHECKING:
    from rich.console import Console

    from jobpipe_client.cli_commands import Commands
    from jobpipe_client.client import JobpipeClient


def client_from(args: argparse.Namespace, environ: Mapping[str, str]) -> JobpipeClient:
    """The client the flags and environment describe; UsageError when something is missing or
    unusable (a URL that is not http(s) with a host, a token that cannot go in a header)."""
    url = getattr(args, "api_url", None)
    if url is not None and not url.strip():  # `--api-url "$UNSET_VARIABLE"`: not the environment's URL instead
        raise UsageError("--api-url is empty: give the API's base URL, or leave the flag out to use JOBPIPE_API_URL")
    url = url or environ.get("JOBPIPE_API_URL", "")
    token = getattr(args, "token", None)
    if token is not None and not token.strip():
        raise UsageError("--token is empty: give a token, or leave the flag out to use JOBPIPE_TOKEN")
    token = token or environ.get("JOBPIPE_TOKEN", "")
    fallbacks = getattr(args, "fallback_url", None) or environ.get("JOBPIPE_FALLBACK_URLS", "").split(",")
    if not url.strip():
        raise UsageError("no API URL: set JOBPIPE_API_URL or pass --api-url (`make run` prints it)")
    if not token.strip():
        raise UsageError("no token: set JOBPIPE_TOKEN or pass --token (`make run` prints one)")
    fallbacks = [f for f in fallbacks if f.strip()]
    # A bad value is named with where it came from: a variable exported long ago is not in sight.
    given = [(url, "--api-url" if getattr(args, "api_url", None) else "JOBPIPE_API_URL"),
             *((f, "--fallback-url" if getattr(args, "fallback_url", None) else "JOBPIPE_FALLBACK_URLS")
               for f in fallbacks)]
    for value, source in given:
        try:
            api_url(value)
        except ValueError as exc:
            raise UsageError(f"{source}: {exc}") from None
    from jobpipe_client.client import JobpipeClient

    try:
        return JobpipeClient(url, token.strip(), fallbacks, timeout=getattr(args, "request_timeout", 10.0))
    except ValueError as exc:
        source = "--token" if getattr(args, "token", None) else "JOBPIPE_TOKEN"
        raise UsageError(f"{source}: {exc}" if "token" in str(exc) else str(exc)) from None


def refusal_line(exc: JobpipeClientError) -> str:
    """A 4xx in one line: the API's message and code, then its `details` (which field, what is
    wrong), e.g. `refused: payload is not valid ... (invalid_payload): steps: Input should be
    greater than or equal to 1`. A refusal the client made before sending (no status: nothing
    reached the API) says so: `refused by the client before sending: 'a/b' is not a job id
    (invalid_job_id)`."""
    who = "refused" if exc.status is not None else "refused by the client before sending"
    line = f"{who}: {exc.message} ({exc.code})"
    problems = describe_details(exc.details)
    return " ".join(f"{line}: {problems}".split()) if problems else line


def outcome_unknown_line(exc: SubmitOutcomeUnknownError) -> str:
    """A submit that got no answer in one line: why each URL failed, that the job may exist,
    and the flag that repeats it safely."""
    reasons = "; ".join(f"{url}: {reason}" for url, reason in exc.failures)
    return f"no answer to the {exc.action} ({reasons}); {repeat_hint(exc.idempotency_key)}"


def interrupted_submit_line(exc: SubmitInterruptedError, how: str = "interrupted") -> str:
    """Ctrl-C (or SIGTERM: `how` is then "terminated") while a submit waited for its answer: it
    may have arrived, so the key matters."""
    return f"{how} while the {exc.action} waited for its answer; {repeat_hint(exc.idempotency_key)}"


def repeat_hint(key: str) -> str:
    """That the job may exist, and the flag that repeats the submit safely, with the key quoted
    for a shell only when it needs it (a pasted `--idempotency-key nightly run` would send `nightly`)."""
    return (f"the job may have been accepted: repeating it with --idempotency-key {shlex.quote(key)} is safe "
            "(the API returns the job it made, never a second one)")


def main(
    argv: Optional[Sequence[str]] = None,
    *,
    environ: Optional[Mapping[str, str]] = None,
    out: Optional[Console] = None,
    err: Optional[TextIO] = None,
    make_client: Callable[[argparse.Namespace, Mapping[str, str]], JobpipeClient] = client_from,
) -> int:
    """Run one command; returns the exit code. Every failure is one line on `err`. `out` is
    stdout's console (by default `stdout_console()`: a terminal only when stdout is one)."""
    err = err or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except StdoutError as exc:  # --help or --version into a stdout that cannot take it
        say(err, str(exc))
        return EXIT_BAD_INPUT
    from jobpipe_client.cli_commands import Commands
    from jobpipe_client.cli_stdout import stdout_console

    commands: Optional[Commands] = None
    try:
        client = make_client(args, os.environ if environ is None else environ)
        commands = Commands(client, out or stdout_console(), err)
        return getattr(commands, args.command)(args)
    except BrokenPipeError:  # the reader went away: quiet (141), unless that lost a job's id
        if commands is not None and commands.unshown_job:
            say(err, _naming_unshown_job("stdout was closed before the job's id was written on it", commands, args))
        raise
    except _ENDINGS as exc:
        code, message = _ending(exc)
        say(err, _naming_unshown_job(message, commands, args))
        return code


# The errors a command ends with, each with its exit code and its line, in the order they are
# told apart: a subclass before its base (SubmitOutcomeUnknownError is a JobpipeUnavailableError,
# every client error a JobpipeError; SubmitInterruptedError and Terminated are KeyboardInterrupts).
_EXITS: tuple[tuple[Any, int, Callable[[Any], str]], ...] = (
    ((UsageError, JobpipeInputError, StdoutError), EXIT_BAD_INPUT, str),
    (JobpipeClientError, EXIT_BAD_INPUT, refusal_line),
    (ResultGoneError, EXIT_JOB_FAILED, str),
    (SubmitOutcomeUnknownError, EXIT_UNAVAILABLE, outcome_unknown_line),
    (JobpipeUnavailableError, EXIT_UNAVAILABLE, str),
    (WaitTimeoutError, EXIT_TIMEOUT, str),
    (JobpipeError, EXIT_UNAVAILABLE, str),
    (Terminated, EXIT_TERMINATED, lambda _: "terminated"),
    (KeyboardInterrupt, EXIT_INTERRUPTED, lambda _: "interrupted"),
)
_ENDINGS = tuple(t for types, _, _ in _EXITS for t in (types if isinstance(types, tuple) else (types,)))


def _ending(exc: BaseException) -> tuple[int, str]:
    """(exit code, line on stderr) of an error in _ENDINGS. A submit interrupted while it waited
    for its answer names its key, ended by SIGTERM (143) or Ctrl-C (130)."""
    if isinstance(exc, SubmitInterruptedError):
        if isinstance(exc.__cause__, Terminated):
            return EXIT_TERMINATED, interrupted_submit_line(exc, "terminated")
        return EXIT_INTERRUPTED, interrupted_submit_line(exc)
    return next((code, line(exc)) for types, code, line in _EXITS if isinstance(exc, types))


def _naming_unshown_job(message: str, commands: Optional[Commands], args: argparse.Namespace) -> str:
    """`message`, naming the job the command made when stdout has not shown its id yet."""
    job_id = commands.unshown_job if commands else None
    if job_id:
        message += f" (job {job_id} was {'submitted' if args.command == 'submit' else 'made'}: " \
                   f"`jobpipe watch {job_id}` follows it)"
    return message


# Console scripts installed before the entry point moved to cli_entry.py name this one.
run = cli_entry.run


if __name__ == "__main__":  # `python -m jobpipe_client.cli`
    run()
