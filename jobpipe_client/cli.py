"""`jobpipe`: submit, rerun, inspect, list, cancel and watch jobs, and fetch their artifacts, from a shell.

Connection from flags or the environment: `--api-url` / JOBPIPE_API_URL, `--token` /
JOBPIPE_TOKEN, `--fallback-url` (repeatable) / JOBPIPE_FALLBACK_URLS (comma-separated).

Exit codes: 0 done (every watched job completed); 1 a watched job failed or was canceled, or is no
longer found (not_found: deleted while watched), or the job's result asked for is gone (its
stored object no longer exists: blob_not_found);
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
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import signal
import sys
import tempfile
from typing import Any, BinaryIO, Callable, Mapping, NoReturn, Optional, Sequence, TextIO

from rich.console import Console

from jobpipe_client.cli_options import UsageError, parse_payload
from jobpipe_client.cli_stdout import StdoutError, stdout_console
from jobpipe_client.artifact_view import artifacts_table, check_target, is_text, plain_artifacts
from jobpipe_client.cli_parser import (
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    build_parser,
)
from jobpipe_client.client import JobpipeClient
from jobpipe_client.errors import (
    JobpipeClientError,
    JobpipeError,
    JobpipeInputError,
    JobpipeUnavailableError,
    ResultGoneError,
    SubmitInterruptedError,
    SubmitOutcomeUnknownError,
    WaitTimeoutError,
)
from jobpipe_client.polling import DEFAULT_GIVE_UP_AFTER_S, Outage
from jobpipe_client.progress_view import (
    EXIT_JOB_FAILED,
    ProgressBoard,
    exit_code,
    jobs_table,
    outage_line,
    plain_table,
)
from jobpipe_client.terminal_text import shown
from jobpipe_client.waiting import holds_claim_check, read_whole


class Terminated(KeyboardInterrupt):
    """SIGTERM (`timeout`, `kill`, a CI job canceled), raised where the command stands so it ends
    as Ctrl-C ends it: the progress display closed and the cursor shown again, a submit's key
    named. A KeyboardInterrupt, so a submit waiting for its answer turns it into
    SubmitInterruptedError like Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


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
    try:
        return JobpipeClient(url, token.strip(), [f for f in fallbacks if f.strip()],
                             timeout=getattr(args, "request_timeout", 10.0))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _check_watch_flags(args: argparse.Namespace) -> None:
    """UsageError for a flag that bounds a watch given without --watch."""
    if args.timeout is not None and not args.watch:
        raise UsageError("--timeout needs --watch: it bounds the wait for the job "
                         "(--request-timeout bounds each request)")
    if args.give_up_after is not None and not args.watch:
        raise UsageError("--give-up-after needs --watch: it bounds how long the watch rides out "
                         "polls that get no answer")


class Commands:
    def __init__(self, client: JobpipeClient, out: Console, err: TextIO) -> None:
        self.client = client
        self.out = out
        self.err = err
        self.unshown_job: Optional[str] = None  # a job that was made but is not on stdout yet

    def submit(self, args: argparse.Namespace) -> int:
        _check_watch_flags(args)
        payload = parse_payload(args.payload)
        job = self.client.submit(args.type, payload, priority=args.priority, delay_seconds=args.delay,
                                 run_at=args.run_at, scope=args.scope, idempotency_key=args.idempotency_key)
        return self._made(job, args)

    def rerun(self, args: argparse.Namespace) -> int:
        _check_watch_flags(args)
        job = self.client.rerun(args.id, delay_seconds=args.delay, run_at=args.run_at,
                                idempotency_key=args.idempotency_key)
        return self._made(job, args)

    def _made(self, job: dict[str, Any], args: argparse.Namespace) -> int:
        """A job a submit or rerun made: its id (the job with --json), then followed with --watch."""
        self.unshown_job = job["id"]  # until stdout shows it, a failure (stdout's too) names it
        if args.json:
            if args.watch:  # stdout shows the job once it ends
                code = self._watch([job], args, as_json=True, single=True)
                self.unshown_job = None
                return code
            self._json(job)
            self.unshown_job = None
            return 0
        self._line(job["id"])
        self.unshown_job = None
        return self._watch([job], args) if args.watch else 0

    def status(self, args: argparse.Namespace) -> int:
        jobs = self.client.status_many(args.ids)
        if args.json:  # the whole job: a payload or result the batch showed as kept in S3 read too
            jobs = {job_id: read_whole(self.client.get, job_id) if holds_claim_check(job) else job
                    for job_id, job in jobs.items()}
        found = [j for j in jobs.values() if j.get("status") != "not_found"]
        if args.json:
            self._json(found)
        elif found:
            self._table(found)
        return self._report_unknown(jobs)

    def result(self, args: argparse.Namespace) -> int:
        self._json(self.client.result(args.id))
        return 0

    def list(self, args: argparse.Namespace) -> int:
        jobs = list(self.client.list(status=args.status, type=args.type, limit=args.limit))
        if args.json:
            self._json(jobs)
        elif jobs or not self.out.is_terminal:
            self._table(jobs)  # into a pipe an empty listing is the header alone
        else:
            self.out.print("no jobs")
        return 0

    def cancel(self, args: argparse.Namespace) -> int:
        job = self.client.cancel(args.id)
        if args.json:
            self._json(job)
        elif job["status"] == "canceled":
            self._line(f"{job['id']} canceled")
        else:
            self._line(f"{job['id']} cancel requested: it is {job['status']} and stops at its next check")
        return 0

    def watch(self, args: argparse.Namespace) -> int:
        started = self.client.clock()  # --timeout is in all: the first read counts against it
        jobs = self.client.status_many(args.ids, timeout=args.timeout)
        if self._report_unknown(jobs):
            return EXIT_BAD_INPUT
        return self._watch(list(jobs.values()), args, as_json=args.json, started=started)

    def artifacts(self, args: argparse.Namespace) -> int:
        found = list(self.client.artifacts(args.id))
        if args.json:
            self._json(found)
        elif not self.out.is_terminal:
            self.out.file.write(plain_artifacts(found))  # into a pipe an empty listing is the header alone
            self.out.file.flush()
        elif found:
            self.out.print(artifacts_table(found))
        else:
            self.out.print("no artifacts")
        return 0

    def artifact(self, args: argparse.Namespace) -> int:
        if args.output not in (None, "-"):
            check_target(args.output, replace=args.force)  # before the download, not after it
            try:
                size = self.client.download_artifact(args.id, args.name, args.output, overwrite=args.force)
            except FileExistsError:  # one appeared while the download ran
                raise UsageError(f"{args.output} exists: pass --force to replace it") from None
            except OSError as exc:
                raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
            self._line(f"saved {args.name} to {args.output} ({size} bytes)")
        elif self.out.is_terminal:
            with tempfile.TemporaryFile() as held:  # on disk, not in memory: it is read twice
                try:
                    size = self.client.download_artifact(args.id, args.name, held)
                except OSError as exc:  # the temporary file's: a full disk
                    raise UsageError(f"cannot hold {args.name} to show it: {exc.strerror or exc}") from None
                self._show_on_terminal(args.name, held, size)
        else:
            self.out.file.flush()
            self.client.download_artifact(args.id, args.name, self.out.file.buffer)
            self.out.file.buffer.flush()
        return 0

    def _line(self, text: str) -> None:
        """`text` on stdout as one line, whatever the console's width (a pipe's is 80), its
        control characters escaped and nothing in it read as markup."""
        self.out.print(shown(text), markup=False, highlight=False, soft_wrap=True)

    def _show_on_terminal(self, name: str, held: BinaryIO, size: int) -> None:
        """Text as text, its control characters escaped (a job's output is the tenant's: an escape
        sequence in it would be obeyed); anything else is refused, as curl refuses binary."""
        if not is_text(held):
            raise UsageError(f"{name} is not text ({size} bytes): pass -o FILE, or send stdout to a file or a pipe")
        held.seek(0)
        text = io.TextIOWrapper(held, encoding="utf-8", newline="")  # lines end at \n, \r\n or \r
        for piece in text:
            for line in piece.splitlines():
                self._line(line)
        text.detach()  # `held` is closed by its owner

    def _watch(self, jobs: list[dict[str, Any]], args: argparse.Namespace, *, as_json: bool = False,
               single: bool = False, started: Optional[float] = None) -> int:
        """Follow `jobs` to their end, --timeout counted from `started` (the client's clock; None:
        now). Polls that get no answer are ridden out: on a terminal a
        `reconnecting` status line under the bars; elsewhere one line on stderr as an outage
        begins and one as it ends; with --json nothing (stdout is the jobs, stderr the failure)."""
        give_up_after = DEFAULT_GIVE_UP_AFTER_S if args.give_up_after is None else args.give_up_after
        if as_json:
            final = self.client.wait_many(jobs, timeout=args.timeout, give_up_after=give_up_after, started=started)
            self._json(next(iter(final.values())) if single else list(final.values()))
            return exit_code(final)
        board = ProgressBoard(self.out)

        def on_outage(outage: Outage) -> None:
            if board.live:
                board.outage(outage)
            elif outage.ended:
                say(self.err, f"reconnected after {outage.since_s:.0f} s")
            elif outage.failures == 1:
                say(self.err, outage_line(outage))

        try:
            with board:
                final = self.client.wait_many(jobs, timeout=args.timeout, on_change=board.update,
                                              give_up_after=give_up_after, on_outage=on_outage, started=started)
        finally:
            board.summary()
        return exit_code(final)

    def _json(self, value: Any) -> None:
        print(json.dumps(value, indent=2), file=self.out.file, flush=True)

    def _table(self, jobs: list[dict[str, Any]]) -> None:
        """A fitted table on a terminal; whole values in aligned columns anywhere else."""
        if self.out.is_terminal:
            self.out.print(jobs_table(jobs))
        else:
            self.out.file.write(plain_table(jobs))
            self.out.file.flush()

    def _report_unknown(self, jobs: dict[str, dict[str, Any]]) -> int:
        unknown = [i for i, j in jobs.items() if j.get("status") == "not_found"]
        if unknown:
            say(self.err, f"{'job' if len(unknown) == 1 else 'jobs'} {', '.join(unknown)} not found")
        return EXIT_BAD_INPUT if unknown else 0


def say(err: TextIO, message: str) -> None:
    """`jobpipe: message` on `err` in one line, whatever line breaks or other control
    characters (escaped) the message (often the server's text) holds."""
    print(f"jobpipe: {' '.join(shown(message).split())}", file=err)


def refusal_line(exc: JobpipeClientError) -> str:
    """A 4xx in one line: the API's message and code, then its `details` (which field, what is
    wrong), e.g. `refused: payload is not valid ... (invalid_payload): steps: Input should be
    greater than or equal to 1`."""
    line = f"refused: {exc.message} ({exc.code})"
    problems = describe_details(exc.details)
    return " ".join(f"{line}: {problems}".split()) if problems else line


def describe_details(details: Any) -> str:
    """The API's `details` as text: `loc: msg` per validation problem, `key=value` for a mapping.
    Any JSON is described: a refusal is the API's answer whatever its details hold (a `loc`
    that is one value rather than a list is that value)."""
    if details is None or details == [] or details == {}:
        return ""
    if isinstance(details, list):
        parts = []
        for item in details:
            if isinstance(item, dict) and "msg" in item:
                loc = item.get("loc")
                if isinstance(loc, list):
                    where = ".".join(map(_as_text, loc))
                else:
                    where = "" if loc is None else _as_text(loc)
                parts.append(f"{where}: {_as_text(item['msg'])}" if where else _as_text(item["msg"]))
            else:
                parts.append(_as_text(item))
        return "; ".join(parts)
    if isinstance(details, dict):
        return ", ".join(f"{k}={_as_text(v)}" for k, v in details.items())
    return _as_text(details)


def _as_text(value: Any) -> str:
    """A JSON value as text: a string as it is, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


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
    args = build_parser().parse_args(argv)
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


def run() -> NoReturn:
    """The console-script entry point. SIGTERM ends a command as Ctrl-C does (exit 143); stdout
    that cannot be written is one line and exit 2, a reader gone exit 141, quietly."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    code: Optional[int] = None
    try:
        code = main()
        if sys.stdout is not None:  # None: closed (`>&-`), nothing to flush
            sys.stdout.flush()  # a reader gone before the last buffered output shows up here
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
