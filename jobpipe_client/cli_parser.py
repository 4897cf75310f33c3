"""The `jobpipe` command line's grammar: its commands and their flags, the help they show, and
the exit codes the help lists (cli.py runs the command the parser returns)."""
from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn, Optional, TextIO

from jobpipe_client.cli_exits import (
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    stdout_closed,
    stdout_written,
)
from jobpipe_client.cli_options import (
    parse_delay,
    parse_limit,
    parse_idempotency_key,
    parse_request_timeout,
    parse_run_at,
    parse_wait_timeout,
)
from jobpipe_client.polling import DEFAULT_GIVE_UP_AFTER_S
from jobpipe_client.terminal_text import first_of, shown

STATUSES = ("queued", "running", "retrying", "completed", "failed", "canceled")
EXIT_CODES = f"""exit codes:
  0    done: every watched job, and every child it spawned, completed (with --no-children: the
       watched jobs alone; status, result, list, types, cancel, artifacts, a plain submit or rerun: the
       answer was shown; artifact: it was written)
  1    a watched job or one of its children failed or was canceled, or is no longer found (not_found:
       deleted while watched); the last lines name the children that did not complete;
       result: the job's result is gone, its stored object no longer exists (blob_not_found)
  {EXIT_BAD_INPUT}    bad input: usage, payload, idempotency key, artifact name, configuration, an -o FILE that
       exists (without --force) or cannot be written, stdout that cannot be written (a full disk, `>&-`),
       a job type the API does not take (types TYPE), or the API refused the request (4xx: an unknown job or artifact, a rerun of a job not finished; a
       quota's 429 too: its line says when to try again)
  {EXIT_UNAVAILABLE}    the API is unavailable: no URL answered, or it answered 5xx; a watch gives up after
       --give-up-after seconds of unanswered polls; a submit or rerun names the key that repeats it safely;
       an artifact's download from its S3 link failed (refused or expired link, object gone, no answer)
  {EXIT_TIMEOUT}    a watch's --timeout ran out
  {EXIT_INTERRUPTED}  interrupted
  {EXIT_BROKEN_PIPE}  stdout was closed early (`jobpipe list | head`); a submit or rerun whose job's id it
       could not write names the job on stderr
  {EXIT_TERMINATED}  terminated (SIGTERM: `timeout 600 jobpipe watch ID`, `kill`), ended as Ctrl-C ends it"""


class _HelpFormatter(argparse.HelpFormatter):
    """A command's description wrapped to the terminal, its exit codes (the epilog) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return text if text is EXIT_CODES else super()._fill_text(text, width, indent)


# The commands that take one job id: another word after it is a second id, not an unknown flag.
ONE_ID_COMMANDS = ("cancel", "rerun", "result", "artifacts")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (argparse prints the whole usage by default)."""

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """argparse's, but a second id given to a command that takes one is named as such
        (`jobpipe cancel a b` read `unrecognized arguments: b`)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            if command in ONE_ID_COMMANDS and not any(word.startswith("-") for word in extras):
                ids = [parsed.id, *extras]
                named = first_of(ids, 3, " ")
                self.exit(EXIT_BAD_INPUT, f"{self.prog} {command}: error: takes one job id, not {len(ids)} "
                                          f"({shown(named)}): run `{self.prog} {command} ID` for each "
                                          f"(see '{self.prog} {command} --help')\n")
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def print_help(self, file: Optional[TextIO] = None) -> None:
        """argparse's, but written as a command's output is (argparse drops a failure to write it
        and exits 0): see `_write_out`."""
        _write_out(self.format_help(), file)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}{_payload_hint(message)} "
                                  f"(see '{self.prog} --help')\n")


def _write_out(text: str, file: Optional[TextIO] = None) -> None:
    """`text` on `file` (stdout by default), flushed: a stdout that cannot take it (a full disk,
    closed) is StdoutError, whose message is the CLI's line (exit 2); a reader gone stays
    BrokenPipeError (141, quietly)."""
    stream = sys.stdout if file is None else file
    if stream is None:  # closed (`>&-`): Python has no sys.stdout
        raise stdout_closed()
    stdout_written(lambda: stream.write(text))
    stdout_written(stream.flush)


def _payload_hint(message: str) -> str:
    """A word on --payload when what argparse did not recognise is a JSON object or an @file:
    `jobpipe submit demo.steps '{"steps": 3}'` is the first thing many type."""
    extras = message.partition("unrecognized arguments: ")[2]
    if extras and any(word.startswith(("{", "@")) for word in extras.split()):
        return "; a job's payload goes after --payload: jobpipe submit TYPE --payload '{...}'"
    return ""


def build_parser() -> argparse.ArgumentParser:
    connection = _Parser(add_help=False)
    connection.add_argument("--api-url", default=argparse.SUPPRESS, help="API base URL (default: $JOBPIPE_API_URL)")
    connection.add_argument("--token", default=argparse.SUPPRESS, help="bearer token (default: $JOBPIPE_TOKEN)")
    connection.add_argument("--fallback-url", action="append", default=argparse.SUPPRESS,
                            help="URL tried when the primary fails; repeatable (default: $JOBPIPE_FALLBACK_URLS)")
    connection.add_argument("--request-timeout", type=parse_request_timeout, default=argparse.SUPPRESS,
                            metavar="SECONDS", help="seconds per HTTP request, its whole answer included (default 10)")

    parser = _Parser(prog="jobpipe", description="Submit and follow jobpipe jobs.", parents=[connection],
                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_Version, help="print the client's version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str, description: Optional[str] = None) -> argparse.ArgumentParser:
        """A command: its help line in the list, and its own --help saying what it does (that
        line, unless it has more to say) and the exit codes."""
        return commands.add_parser(name, parents=[connection], help=help, epilog=EXIT_CODES,
                                   description=description or f"{help[0].upper()}{help[1:]}.",
                                   formatter_class=_HelpFormatter)

    submit = command("submit", help="submit a job",
                     description="Submit a job of TYPE with a JSON payload. Prints the new job's id (the job with "
                                 "--json); with --watch follows it, and the children it spawns, until they end.")
    submit.add_argument("type", metavar="TYPE", help="job type, e.g. demo.steps")
    submit.add_argument("--payload", default="{}", help="JSON object, or @file.json, or @- to read it from standard input (default {})")
    submit.add_argument("--priority", choices=("high", "normal", "low"), help="its queue (default: the job type's)")
    _start_flags(submit)
    submit.add_argument("--scope", help="what the job works on, e.g. a run id: its completion invalidates that "
                                        "scope's caches (letters, digits and . _ : @ -; no /)")
    submit.add_argument("--idempotency-key", type=parse_idempotency_key, metavar="KEY",
                        help="a repeated submit with the same key and payload returns the job the first made "
                             "(default: a fresh key)")
    _watch_flags(submit, "the job")

    rerun = command("rerun", help="run a finished job again, as a new job",
                    description="Run a finished job (completed, failed or canceled) again: a new job with its "
                                "type, payload, priority and scope, whose rerun_of names it. Prints the new "
                                "job's id, as submit does.")
    rerun.add_argument("id", metavar="JOB_ID", help="the finished job")
    _start_flags(rerun)
    rerun.add_argument("--idempotency-key", type=parse_idempotency_key, metavar="KEY",
                       help="a repeated rerun of the same job with the same key returns the job the first made "
                            "(default: a fresh key)")
    _watch_flags(rerun, "the new job")

    status = command("status", help="show jobs",
                     description="Show jobs by id: a row each (a JSON list with --json). Ids no job has are "
                                 "named on stderr, and the command exits 2.")
    status.add_argument("ids", nargs="+", metavar="ID", help="job ids, read in one batch per 100")
    _json_flag(status, "a JSON list of the whole jobs, as GET /jobs/{id} returns each")

    listing = command("list", help="list recent jobs, newest first",
                      description="List the tenant's recent jobs, newest first, up to --limit: a row each (a "
                                  "JSON list with --json).")
    listing.add_argument("--status", choices=STATUSES, help="only the jobs in this status")
    listing.add_argument("--type", help="only the jobs of this type, its exact name (e.g. demo.steps; "
                                        "a name no job has lists none)")
    listing.add_argument("--limit", type=parse_limit, default=25, help="how many jobs (default 25)")
    _json_flag(listing, "a JSON list of the jobs as the API returns them")

    result = command("result", help="print a job's result as JSON (null while it has none)")
    result.add_argument("id", metavar="ID", help="the job")
    _json_flag(result, "the result, as without it (taken so that every command but artifact takes it)")

    cancel = command("cancel", help="cancel a job",
                     description="Cancel a job: a queued or retrying one is canceled at once, a running one "
                                 "stops at its next check. A finished job is refused (exit 2).")
    cancel.add_argument("id", metavar="ID", help="the job: a queued or retrying one is canceled at once, a "
                                                 "running one stops at its next check")
    _json_flag(cancel, "the job as the API returns it after the cancel")

    watch = command("watch", help="follow jobs, and their children, until they end",
                    description="Follow jobs, and the children they spawn, until they end. Exits 0 when every "
                                "one completed, 1 when one failed, was canceled or is no longer found.")
    watch.add_argument("ids", nargs="+", metavar="ID", help="the jobs to follow (with the children they spawn)")
    watch.add_argument("--timeout", type=parse_wait_timeout, metavar="SECONDS",
                       help="give up after SECONDS in all (exit 4)")
    _give_up_flag(watch)
    _children_flag(watch, "the jobs named", "they have")
    _json_flag(watch, "no progress display; a JSON list of the jobs as they ended, their children after them")

    types = command("types", help="list the job types the API takes, or show one",
                    description="List the job types the API takes: a row each with its name, priority, "
                                "attempts, timeout (seconds) and description (a JSON list with --json). With "
                                "TYPE, show that type: its run policy, its payload's JSON schema and a submit "
                                "of each example payload the schema gives.")
    types.add_argument("type", metavar="TYPE", nargs="?", help="the type to show, e.g. demo.steps")
    _json_flag(types, "the types as GET /job-types lists them (with TYPE: that type alone)")

    artifacts = command("artifacts", help="list a job's artifacts",
                        description="List a job's artifacts: a row each with its name, size, where it is kept, "
                                    "when it was made and its content type (a JSON list with --json).")
    artifacts.add_argument("id", metavar="JOB_ID", help="the job")
    _json_flag(artifacts, "a JSON list of every artifact as the API lists them")

    artifact = command("artifact", help="download one artifact of a job, to stdout or a file",
                       description="Download one artifact of a job: to stdout, or with -o to a file, written "
                                   "whole or not at all. A terminal is shown text only.")
    artifact.add_argument("id", metavar="JOB_ID", help="the job")
    artifact.add_argument("name", metavar="NAME", help="the artifact's name, as `jobpipe artifacts` lists it")
    artifact.add_argument("-o", "--output", metavar="FILE",
                          help="write it to FILE, whole or not at all (a device such as /dev/null or "
                               "/dev/stdout as it is; default, or -: stdout)")
    artifact.add_argument("--force", action="store_true", help="replace FILE if it exists (refused otherwise)")
    return parser


class _Version(argparse.Action):
    """--version: `jobpipe VERSION` on stdout, exit 0, as argparse's version action, but the
    version read only when asked (importlib.metadata is a third of the parser's import time)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, default: Any = argparse.SUPPRESS,
                 help: Optional[str] = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> NoReturn:
        _write_out(f"jobpipe {_version()}\n")
        parser.exit()


def _version() -> str:
    """The installed client's version (pyproject.toml's, as `make venv` installs it)."""
    from importlib import metadata

    try:
        return metadata.version("jobpipe-client")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _start_flags(parser: argparse.ArgumentParser) -> None:
    """When a new job starts: --delay or --run-at (submit's and rerun's)."""
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--delay", type=parse_delay, default=0, metavar="DURATION",
                       help="start after DURATION: seconds, or with a unit (90s, 15m, 6h, 3d); up to 365 days")
    start.add_argument("--run-at", type=parse_run_at, metavar="TIME",
                       help="start at TIME, ISO 8601 with a zone (2027-01-31T09:00:00Z); up to 365 days ahead")


def _watch_flags(parser: argparse.ArgumentParser, what: str) -> None:
    """Following the job a command made: --watch, --timeout, --give-up-after, --no-children, --json."""
    parser.add_argument("--watch", action="store_true", help=f"follow {what} until it ends")
    parser.add_argument("--timeout", type=parse_wait_timeout, metavar="SECONDS",
                        help="with --watch: give up after SECONDS in all (exit 4)")
    _give_up_flag(parser, "with --watch: ")
    _children_flag(parser, what, "it has", "with --watch: ")
    _json_flag(parser, f"{what} as the API returns it (with --watch: as it ended)")


def _give_up_flag(parser: argparse.ArgumentParser, lead: str = "") -> None:
    parser.add_argument("--give-up-after", type=parse_wait_timeout, metavar="SECONDS",
                        help=f"{lead}while the API does not answer (no connection, timeouts, 5xx), keep "
                             f"reconnecting for up to SECONDS of failed polls in a row, then exit 3 "
                             f"(default {DEFAULT_GIVE_UP_AFTER_S:g}; 0 gives up at the first)")


def _children_flag(parser: argparse.ArgumentParser, what: str, ended: str, lead: str = "") -> None:
    """--no-children: `args.children` False, the watch following `what` alone."""
    parser.add_argument("--no-children", dest="children", action="store_false",
                        help=f"{lead}follow {what} alone, not the children spawned (theirs in turn): end as "
                             f"soon as {ended} ended (a fan-out's parent completes while its children "
                             f"still run)")


def _json_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print JSON on stdout: {what}")
