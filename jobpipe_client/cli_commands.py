"""Each `jobpipe` command run against the client: what it asks the API and what it writes on
stdout (the JSON, a table, a line, a watch's progress), a job it made named until stdout shows it.
cli.py parses the command line, builds the client and turns a command's failure into its line
and exit code; `say` is that line on stderr, which a command writes too (jobs not found, a
watch's outage)."""
from __future__ import annotations

import argparse
import io
import json
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, TextIO

from rich.console import Console

from jobpipe_client.artifact_file import written_in_place
from jobpipe_client.artifact_view import artifacts_table, check_target, is_text, plain_artifacts
from jobpipe_client.cli_options import UsageError, parse_payload
from jobpipe_client.cli_parser import EXIT_BAD_INPUT
from jobpipe_client.client import JobpipeClient
from jobpipe_client.job_type_view import plain_types, type_lines, types_table
from jobpipe_client.polling import DEFAULT_GIVE_UP_AFTER_S, Outage
from jobpipe_client.progress_view import ProgressBoard, exit_code, jobs_table, outage_line, plain_table
from jobpipe_client.terminal_text import say, shown
from jobpipe_client.waiting import holds_claim_check, read_whole


def _check_watch_flags(args: argparse.Namespace) -> None:
    """UsageError for a flag that bounds or shapes a watch given without --watch."""
    if args.timeout is not None and not args.watch:
        raise UsageError("--timeout needs --watch: it bounds the wait for the job "
                         "(--request-timeout bounds each request)")
    if args.give_up_after is not None and not args.watch:
        raise UsageError("--give-up-after needs --watch: it bounds how long the watch rides out "
                         "polls that get no answer")
    if not args.children and not args.watch:
        raise UsageError("--no-children needs --watch: it makes the watch follow the job alone, "
                         "not the children it spawns")


class Commands:
    """The commands, one method each, named as on the command line: each takes the parsed
    arguments and returns the exit code; a failure is raised for cli.py to turn into its line."""

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
        return self._listing(jobs, args, plain_table, jobs_table, "no jobs")

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

    def types(self, args: argparse.Namespace) -> int:
        found = self.client.job_types()
        if args.type is not None:
            return self._job_type(args, found)
        return self._listing(found, args, plain_types, types_table, "no job types")

    def _job_type(self, args: argparse.Namespace, found: list[dict[str, Any]]) -> int:
        """`jobpipe types TYPE`: the type, or a usage error naming the types there are."""
        chosen = next((t for t in found if t["type"] == args.type), None)
        if chosen is None:
            known = ", ".join(shown(t["type"]) for t in found) or "none"
            raise UsageError(f"unknown job type {shown(args.type)!r}; known types: {known}")
        if args.json:
            self._json(chosen)
        else:
            for line in type_lines(chosen):
                self._line(line)
        return 0

    def artifacts(self, args: argparse.Namespace) -> int:
        found = list(self.client.artifacts(args.id))
        return self._listing(found, args, plain_artifacts, artifacts_table, "no artifacts")

    def _listing(self, found: list[dict[str, Any]], args: argparse.Namespace, plain: Callable[[Any], str],
                 table: Callable[[Any], Any], nothing: str) -> int:
        """A listing (`found`) as the JSON list with --json; into a pipe or a file `plain`'s
        header and aligned lines (an empty listing the header alone); on a terminal `table`'s
        table, or `nothing` when it is empty."""
        if args.json:
            self._json(found)
        elif found or not self.out.is_terminal:
            self._table(found, plain, table)
        else:
            self.out.print(nothing)
        return 0

    def artifact(self, args: argparse.Namespace) -> int:
        if args.output not in (None, "-"):
            check_target(args.output, replace=args.force)  # before the download, not after it
            # `-o /dev/stdout`, a device: the bytes alone, as with `-o -` (no line after them)
            stream = written_in_place(Path(args.output))
            try:
                size = self.client.download_artifact(args.id, args.name, args.output, overwrite=args.force)
            except FileExistsError:  # one appeared while the download ran
                raise UsageError(f"{args.output} exists: pass --force to replace it") from None
            except OSError as exc:
                raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
            if not stream:
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
        """Follow `jobs` and their children (the jobs their handlers spawned, theirs in turn; with
        --no-children `jobs` alone) to their end, --timeout counted from `started` (the client's
        clock; None: now); exit 0 only when every one of them completed. Polls that get no
        answer are ridden out: on a terminal a `reconnecting` status line under the bars;
        elsewhere one line on stderr as an outage begins and one as it ends; with --json nothing
        (stdout is the jobs, stderr the failure)."""
        give_up_after = DEFAULT_GIVE_UP_AFTER_S if args.give_up_after is None else args.give_up_after
        if as_json:
            final = self.client.wait_many(jobs, timeout=args.timeout, give_up_after=give_up_after, started=started,
                                          children=args.children)
            self._json(next(iter(final.values())) if single else list(final.values()))
            return exit_code(final)
        board = ProgressBoard(self.out, watched=[job["id"] for job in jobs])

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
                                              give_up_after=give_up_after, on_outage=on_outage, started=started,
                                              children=args.children)
        finally:
            board.summary()
        return exit_code(final)

    def _json(self, value: Any) -> None:
        print(json.dumps(value, indent=2), file=self.out.file, flush=True)

    def _table(self, rows: list[dict[str, Any]], plain: Callable[[Any], str] = plain_table,
               table: Callable[[Any], Any] = jobs_table) -> None:
        """`table`'s fitted table on a terminal; `plain`'s whole values in aligned columns
        anywhere else (jobs, unless told)."""
        if self.out.is_terminal:
            self.out.print(table(rows))
        else:
            self.out.file.write(plain(rows))
            self.out.file.flush()

    def _report_unknown(self, jobs: dict[str, dict[str, Any]]) -> int:
        unknown = [i for i, j in jobs.items() if j.get("status") == "not_found"]
        if unknown:
            say(self.err, f"{'job' if len(unknown) == 1 else 'jobs'} {', '.join(unknown)} not found")
        return EXIT_BAD_INPUT if unknown else 0
