"""Throttled, coalescing progress reporting for one attempt.

At most one store write per `min_interval_s`. Reports inside the window replace each other;
the latest is written when the window ends (by a timer), and the attempt's outcome carries the
last one not yet written in its own write (`settle`). `force=True` writes at once. A decrease is
refused at the call, before anything is queued, and the store's conditional write refuses it
again for any other writer."""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from chalicelib.defaults import MAX_ANSWER_BYTES, PROGRESS_MIN_INTERVAL_S, REPORT_SLACK_BYTES
from chalicelib.domain.errors import JobpipeError, ProgressRejectedError, StoreUnavailableError
from chalicelib.domain.job import Job, Progress, answer_bytes, listed_bytes
from chalicelib.domain.numbers import shown_number
from chalicelib.domain.progress import check_not_decreasing, check_report, clamp_percent, fitting_message
from chalicelib.ports import Clock, Timer


class ProgressReporter:
    def __init__(
        self,
        job: Job,
        write: Callable[[Job, Progress], Job],
        *,
        clock: Clock,
        min_interval_s: float = PROGRESS_MIN_INTERVAL_S,
        on_error: Callable[[Exception], None] = lambda exc: None,
    ) -> None:
        """`write(job, progress)` performs the conditional store write and returns the stored job.
        The claim that started the attempt counts as the window's first write. The window is
        timed on `clock` (the worker's), and its end is a timer of that clock."""
        self._job = job
        self._write = write
        self._interval = min_interval_s
        self._clock = clock
        self._on_error = on_error
        self._accepted = job.progress.percent
        self._last_write = clock.monotonic()  # when a write was last tried: the window's start
        self._last_read = self._last_write  # when a write last returned the stored job
        self._pending: Optional[Progress] = None
        self._payload_bytes: Optional[int] = None  # the payload's share of the job's answer (measured once)
        self._rest: Optional[tuple[Job, int]] = None  # the job as last written, and the rest of its answer
        self._report: Optional[tuple[Progress, int]] = None  # the report last measured, and its share
        self._writing: Optional[Progress] = None  # the report a write is carrying now (see `abandon`)
        self._timer: Optional[Timer] = None
        self._lock = threading.RLock()

    @property
    def job(self) -> Job:
        """The job as last written (or as claimed)."""
        return self._job

    @property
    def percent(self) -> float:
        """The highest percent accepted in this attempt (written or still pending): a report
        refused at the call, by a check or by the store's write, counts for nothing."""
        return self._accepted

    @property
    def last_details(self) -> Optional[dict[str, Any]]:
        """The details of the last report taken (pending, else as last written): those the
        attempt's outcome keeps beside its final message."""
        with self._lock:
            return (self._pending or self._job.progress).details

    @property
    def last_write_at(self) -> float:
        """When (monotonic) a write last returned the stored job, and so read it back (the claim
        counts): a write the store did not answer, or refused, read nothing."""
        return self._last_read

    def report(
        self,
        percent: Any,
        step: Optional[str] = None,
        message: Optional[str] = None,
        details: Optional[dict[str, Any]] = None,
        *,
        force: bool = False,
    ) -> Job:
        """Record progress; returns the job as last written. Raises ProgressRejectedError for a
        decrease, a non-number or a report too large or not JSON (domain/progress.check_report),
        and what the store raises for a forced or due write but its not answering: a write the
        store did not answer (StoreUnavailableError, its retries spent) is reported to
        `on_error` and kept, tried again when the next window ends and carried by the outcome
        otherwise, while the handler goes on (a progress report is worth no attempt). Once the
        job as last written shows a cancel request, a report is not taken: the job is returned
        as it is, and the caller (JobContext.progress) raises JobCancelledError."""
        value = clamp_percent(percent)
        check_report(step, message, details)
        with self._lock:
            if self._job.cancel_requested:
                # A write (the window's timer's, on its thread) returned the request after the
                # caller looked: the attempt knows of it, so no write carries this report.
                return self._job
            check_not_decreasing(self._accepted, value)
            report = Progress(percent=value, step=step, message=message, details=details)
            self._check_answerable(report)
            accepted, pending = self._accepted, self._pending
            self._accepted, self._pending = value, report
            since = self._clock.monotonic() - self._last_write
            if force or since >= self._interval:
                try:
                    self._flush_locked()
                except StoreUnavailableError as exc:
                    self._on_error(exc)
                    self._arm_locked(self._interval)
                except ProgressRejectedError:
                    # Refused as at the call: the attempt holds what it held, the report this one
                    # replaced (taken earlier) still due.
                    self._accepted, self._pending = accepted, pending
                    if pending is not None:
                        self._arm_locked(self._interval)
                    raise
            else:
                self._arm_locked(max(0.0, self._interval - since))
            return self._job

    def listed(self, child_id: str) -> None:
        """Take note of a child the attempt listed on its job (a spawn): the job as last written
        lists it from now on, so what measures the attempt's answer (its reports, its spawns, its
        outcome) counts it before the next write reads it back. Its share is added to the rest
        of the job measured (`listed_bytes`), not measured again with the whole list."""
        with self._lock:
            children = self._job.children
            if child_id in children:  # a write read it back already
                return
            job = self._job.model_copy(update={"children": [*children, child_id]})
            if self._rest is not None and self._rest[0] is self._job:
                self._rest = (job, self._rest[1] + listed_bytes(child_id, len(children)))
            self._job = job

    def answer_past(self, bound: int, extra: int = 0) -> Optional[int]:
        """The bytes of the job's answer as the attempt stands (its payload, the report not yet
        written or else the last written, the children listed) with `extra` more, when they
        pass `bound`; None when they stay within it. Measured in parts as a report is
        (`_past`): a handler spawning in a loop costs no measure of the whole job per child."""
        with self._lock:
            return self._past(self._pending or self._job.progress, bound, extra)

    def _check_answerable(self, report: Progress) -> None:
        """ProgressRejectedError when the job showing `report` would pass what one answer of the
        API carries (MAX_ANSWER_BYTES): beside a payload near that bound, a long message would
        make every GET of the job fail at Lambda's 6 MB."""
        size = self._past(report, MAX_ANSWER_BYTES)
        if size is not None:
            raise ProgressRejectedError(
                f"the job with this progress report would be {shown_number(size)} bytes as the API answers it, "
                f"past the {shown_number(MAX_ANSWER_BYTES)} it can return (Lambda's 6 MB) beside its payload: "
                "send a shorter message or smaller details")

    def _past(self, report: Progress, bound: int, extra: int = 0) -> Optional[int]:
        """The bytes of the job showing `report`, with `extra` more, when past `bound`, else None.
        A report is called for in loops, so each call measures the report alone: the payload
        (fixed for the attempt) is measured once, the rest of the job once per write that
        changed it, and a report once. JSON escapes character by character, so the parts add
        up; only a sum within REPORT_SLACK_BYTES of the bound (a report's field names and its
        time, counted twice to be safe) is measured whole."""
        if self._payload_bytes is None:
            self._payload_bytes = answer_bytes(self._job.payload) - answer_bytes({})
        if self._rest is None or self._rest[0] is not self._job:
            self._rest = (self._job, answer_bytes(self._shown(Progress())))
        if self._report is None or self._report[0] is not report:
            self._report = (report, answer_bytes(report.model_dump()))
        if self._payload_bytes + self._rest[1] + self._report[1] + extra + REPORT_SLACK_BYTES <= bound:
            return None
        size = answer_bytes(self._shown(report)) + self._payload_bytes + extra
        return size if size > bound else None

    def _shown(self, report: Progress) -> dict[str, Any]:
        """The job as answered with `report` as its progress (stamped as a write stamps it), its
        payload left out (`_payload_bytes`)."""
        return self._job.model_copy(update={"payload": {}, "progress": report.model_copy(
            update={"updated_at": self._job.created_at})}).public()

    def _arm_locked(self, delay_s: float) -> None:
        """Write what is pending in `delay_s`, unless a timer is set already."""
        if self._timer is None:
            timer = self._timer = self._clock.timer(delay_s, lambda: self._on_timer(timer))
            timer.start()

    def _disarm_locked(self) -> None:
        """Stop the window's timer, if one is set: what is pending is written by the caller."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def report_final(self, percent: Any, step: Optional[str], message: Optional[str]) -> None:
        """Queue the last report of an attempt that is failing: never refused, a lower or
        invalid percent keeps the one reached (progress stays monotonic), a message longer than
        a report takes (MAX_PROGRESS_MESSAGE_CHARS characters, MAX_PROGRESS_REPORT_BYTES with
        the details) is cut to it (marked with "…"). Carried by the failure's write (`settle`)
        alone: a timer armed for a report before it is stopped, so the failure's report is not
        written as a `running` job's progress while the handler finishes."""
        with self._lock:
            self._disarm_locked()
            try:
                value = max(self._accepted, clamp_percent(percent))
            except JobpipeError:
                value = self._accepted
            self._accepted = value
            details = self.last_details
            # Never refused, so bounded here: a failure's message (a whole stderr) is cut.
            self._pending = Progress(percent=value, step=step, message=fitting_message(message, details),
                                     details=details)

    def settle(self) -> Optional[Progress]:
        """Stop the timer and hand back the pending report instead of writing it: for the
        completion, whose own write carries the final progress (one write instead of two)."""
        with self._lock:
            self._disarm_locked()
            pending, self._pending = self._pending, None
            return pending

    def abandon(self) -> Optional[Progress]:
        """As `settle`, for an attempt given up on while its handler still runs (the give-up
        past its timeout, from another thread): never waits for the lock, which the handler's
        thread may hold for good (the alarm cut it inside a write that will not return). The
        report not yet written is then read as it stands: the pending one, else the one a write
        is carrying (written already or not, the outcome's write carries it again, harmless)."""
        if self._lock.acquire(blocking=False):
            try:
                return self.settle()
            finally:
                self._lock.release()
        return self._pending or self._writing

    def _on_timer(self, timer: Timer) -> None:
        with self._lock:
            if self._timer is not timer:
                # Fired as a write stopped it (a due report, `settle`, `report_final`), its thread
                # then waiting for the lock: that write took what it was set for, and the window's
                # timer now, if any, is another one, which stays armed and stoppable.
                return
            self._timer = None
            report = self._pending
            try:
                self._flush_locked()
            except Exception as exc:  # a timer thread has no caller to raise to
                self._on_error(exc)
                if isinstance(exc, StoreUnavailableError):  # kept: tried again when the next window ends
                    self._arm_locked(self._interval)
                elif isinstance(exc, ProgressRejectedError) and self._pending is None:
                    # Refused (its record has no room): left for the outcome, whose write makes room,
                    # as for a report whose window had not ended; written again by no window.
                    self._pending = report

    def _flush_locked(self) -> None:
        if self._pending is None:
            return
        # In this order, so that an interrupt between any two lines leaves the report where
        # `abandon` reads it: pending, or being written.
        pending = self._writing = self._pending
        self._pending = None
        self._disarm_locked()
        started = self._last_write = self._clock.monotonic()
        try:
            self._job = self._write(self._job, pending)
            self._last_read = started  # the job as it stood then, cancel request included
            if self._job.cancel_requested and self._pending is None:
                # Met a cancel request: not stored (the write is conditional on none). Made before
                # the attempt knew of it, it is the progress the job reached: the `canceled`
                # write carries it (`settle`), whichever of this write and a poll saw it first.
                self._pending = pending
        except ProgressRejectedError:
            raise  # refused: the caller decides what is kept (`report` raises, `_on_timer` keeps it)
        except BaseException:
            # Not written (the store did not answer, the attempt's time ran out mid-write): kept
            # unless a later report replaced it, so the next write or the outcome carries it.
            if self._pending is None:
                self._pending = pending
            raise
        finally:
            self._writing = None
