"""Run one delivered job message: claim the attempt, call the handler within its time, and hand
what it returned or raised to outcome.py, which records how the attempt ended."""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional, Union

from pydantic import ValidationError

from chalicelib.defaults import (
    CANCEL_POLL_INTERVAL_S,
    HANDLER_GIVE_UP_S,
    HANDLER_MIN_TIME_S,
    INVOCATION_MARGIN_S,
    LEASE_GRACE_S,
    MAX_ERROR_MESSAGE_CHARS,
    OUTCOME_RETRY_MARGIN_S,
    PROGRESS_MIN_INTERVAL_S,
)

from chalicelib.domain.errors import InvalidPayloadError, PayloadGoneError, StaleJobError, describe
from chalicelib.domain.job import Job, JobErrorInfo, parse_time
from chalicelib.domain.registry import JobType, JobTypeRegistry
from chalicelib.lifecycle import ClaimOutcome, JobLifecycle
from chalicelib.ports import ArtifactStore, Clock, JobMessage, job_message_of
from chalicelib.worker.context import JobContext
from chalicelib.worker.ending import error_info
from chalicelib.worker.outcome import AttemptOutcomes
from chalicelib.worker.progress import ProgressReporter
from chalicelib.worker.timeout import run_with_timeout


class DeferredDelivery(Exception):
    """The message must stay on the queue (another worker holds the attempt, or this
    invocation is out of time); reported as a batch item failure, to be delivered again
    after `retry_after_s`."""

    def __init__(self, reason: str, retry_after_s: Optional[int]) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


def parse_message(body: str) -> JobMessage:
    """Raises ValueError for a body that is not a job message (it then goes to the DLQ)."""
    return job_message_of(body)


class JobRunner:
    def __init__(
        self,
        lifecycle: JobLifecycle,
        registry: JobTypeRegistry,
        *,
        clock: Clock,
        observe: Optional[Callable[[str, Job, dict[str, Any]], None]] = None,
        progress_interval_s: float = PROGRESS_MIN_INTERVAL_S,
        artifacts: Optional[ArtifactStore] = None,
        admit: Optional[Callable[..., None]] = None,
        end_process: Optional[Callable[[], None]] = None,
        give_up_after_s: float = HANDLER_GIVE_UP_S,
    ) -> None:
        """`clock`: the worker's Clock (the composition root's `clock`), the one each attempt's
        progress window, cancel polls, remaining time and durations are read on.
        `admit(tenant, pending=n)`: the tenant quota's admission (TenantQuota.admit), for the
        jobs a handler spawns; `pending` is how many this attempt spawned before.
        `end_process()`: ends the worker's process (the composition root gives it on Lambda):
        called when a handler went on HANDLER_GIVE_UP_S past its timeout, interrupts and all,
        once its attempt was failed `timeout`. Without it such a handler is only interrupted
        again and again."""
        self._end_process = end_process
        self._give_up_after_s = give_up_after_s
        self._admit = admit
        self.lifecycle = lifecycle
        self.artifacts = artifacts
        self.registry = registry
        self._progress_interval_s = progress_interval_s
        self._observe = observe or (lambda event, job, extra: None)
        self._clock = clock
        self._outcomes = AttemptOutcomes(lifecycle, clock=clock, observe=self._observe, end_process=end_process)

    def run(
        self,
        message: JobMessage,
        *,
        time_left_s: Optional[float] = None,
        hold: Optional[Callable[[int], None]] = None,
    ) -> Optional[Job]:
        """Process one delivery. Returns the job as left by this delivery (None if it does not
        exist); raises DeferredDelivery when the message must be delivered again later, and
        QueueUnavailableError when the job's owed dead letter could not be parked (it is parked
        when the message comes back).

        A message hidden for the queue's visibility timeout (longer than any invocation) needs
        nothing once claimed: if this process dies, the reconciler finds the attempt's lease
        expired and retries the job (worker_lost). `hold(seconds)`, given for a message hidden
        only briefly (a batch-mate), is called once the attempt is claimed with the lease that
        keeps it hidden for the attempt; the caller takes it then or, for a batch-mate, only if
        the attempt outlives its short lease (chalicelib/worker/batch.py)."""
        claim = self.lifecycle.claim(message, time_left_s=time_left_s)
        if claim.outcome == ClaimOutcome.DEFER:
            raise DeferredDelivery(claim.reason, claim.retry_after_s)
        if claim.outcome == ClaimOutcome.SKIP:
            if claim.job is not None:
                self._observe("skipped", claim.job, {"reason": claim.reason})
            return claim.job
        job = claim.job
        assert job is not None
        if hold is not None:
            hold(job.timeout_s + LEASE_GRACE_S)
        self._observe("started", job, {})
        try:
            return self._execute(job)
        except StaleJobError as exc:
            # The attempt was taken over or finished elsewhere; its outcome is not ours to write.
            # If the reconciler failed it while the dead-letter queue did not answer, this
            # delivery's message is the one that parks the letter: it is acknowledged next.
            self._observe("abandoned", job, {"reason": exc.message})
            fresh = self.lifecycle.store.get(job.id, fetch=(), mark_gone=False)  # its record decides
            return self.lifecycle.park_owed_letter(fresh) if fresh is not None else None

    def _execute(self, job: Job) -> Job:
        """The claimed attempt of `job` run and its outcome written: the job as it leaves it."""
        found = self._handler_and_payload(job)
        if isinstance(found, JobErrorInfo):  # no attempt of it can ever run: failed for good
            return self._outcomes.fail(job, found, False)
        job_type, payload = found
        reporter = ProgressReporter(
            job,
            self.lifecycle.record_progress,
            clock=self._clock,
            min_interval_s=self._progress_interval_s,
            on_error=lambda exc: self._observe("progress_refused", job, {"reason": str(exc)}),
        )
        time_s = self._handler_time_s(job)
        ctx = self._context(job, reporter, time_s)
        started = self._clock.monotonic()
        result, raised = self._call_handler(job, job_type, payload, ctx, reporter, started, time_s)
        # The claim left the invocation INVOCATION_MARGIN_S past the handler's time, and the
        # lease LEASE_GRACE_S: the outcome, written again while the store does not answer, keeps
        # OUTCOME_RETRY_MARGIN_S of the former for the batch's answer.
        ends_by = started + time_s + INVOCATION_MARGIN_S - OUTCOME_RETRY_MARGIN_S
        return self._outcomes.after_handler(job, ctx, reporter, started, result, raised, ends_by=ends_by)

    def _call_handler(self, job: Job, job_type: JobType, payload: Any, ctx: JobContext, reporter: ProgressReporter,
                      started: float, time_s: float) -> tuple[Any, Optional[BaseException]]:
        """(what the handler returned, what it raised): the handler run within `time_s`, its ctx
        closed after it. Raises only KeyboardInterrupt and GeneratorExit."""
        try:
            give_up = functools.partial(self._outcomes.give_up, reporter, started, ctx=ctx) \
                if self._end_process else None
            return run_with_timeout(lambda: job_type.handler(ctx, payload), time_s, ctx.expire,
                                    clock=self._clock, give_up=give_up, give_up_after_s=self._give_up_after_s,
                                    timeout_s=job.timeout_s), None
        except (KeyboardInterrupt, GeneratorExit):
            # Not the handler's failure: KeyboardInterrupt is someone stopping this process (Ctrl-C
            # on a local worker), which must stop; GeneratorExit only unwinds a generator being
            # closed. The job's lease brings it back (worker_lost) as for a process that died.
            raise
        except BaseException as exc:  # noqa: B036 - SystemExit, asyncio.CancelledError, a library's own
            # BaseException: it ends this attempt like any error instead of leaving the runner
            # (and the batch-mates behind it) and the job `running` until its lease ends.
            return None, exc
        finally:
            ctx.close()  # a ctx kept past the handler (a thread, a callback) writes nothing more

    def _handler_time_s(self, job: Job) -> float:
        """How long the claimed attempt of `job` gives its handler: its timeout, counted from the
        claim as its lease is (`lease_expires_at` less LEASE_GRACE_S, on the lifecycle's clock),
        so a claim whose write or payload read took long leaves the handler only the rest, and
        the attempt (and a give-up after it) still ends inside its lease. Whole seconds, rounded
        up (a claim's usual milliseconds take nothing from the handler; the grace has room for
        one more); at least HANDLER_MIN_TIME_S."""
        if job.lease_expires_at is None:
            return job.timeout_s
        left_s = (parse_time(job.lease_expires_at) - self.lifecycle.clock()).total_seconds() - LEASE_GRACE_S
        return max(HANDLER_MIN_TIME_S, min(job.timeout_s, math.ceil(left_s)))

    def _handler_and_payload(self, job: Job) -> Union[tuple[JobType, Any], JobErrorInfo]:
        """The job's type and its payload as the handler takes it, or why no attempt of it can
        run: its payload object gone, its type not registered, its payload not the type's."""
        if "payload" in job.gone:  # the claim found its object gone: no attempt can ever read it
            return error_info(PayloadGoneError.of(job.id))
        job_type = self.registry.find(job.type)
        if job_type is None:
            return JobErrorInfo(code="unknown_job_type", message=f"no handler is registered for {job.type!r}")
        try:
            # What counts as invalid is decided there, as at submit; the payload as it was stored.
            return job_type, job_type.parse_payload(job.payload, stored=True)
        except InvalidPayloadError as exc:
            cause = exc.__cause__  # pydantic's own message names each field; a validator's error names itself
            message = str(cause) if isinstance(cause, ValidationError) else \
                f"the payload model of {job.type!r} raised {describe(cause or exc)}"
            return JobErrorInfo(code="invalid_payload", message=message[:MAX_ERROR_MESSAGE_CHARS])

    def _context(self, job: Job, reporter: ProgressReporter, time_s: float) -> JobContext:
        """The handler's `ctx` for this attempt of `job`, its reports through `reporter`, its
        deadline `time_s` from now."""
        return JobContext(
            reporter,
            # its cancel request: the record alone, no object read (none can be found gone)
            reload=lambda job_id: self.lifecycle.store.get(job_id, fetch=(), mark_gone=False),
            clock=self._clock,
            deadline=self._clock.monotonic() + time_s,
            spawn=functools.partial(self._spawn, listed_at_claim=len(job.children), answer_past=reporter.answer_past),
            store_artifact=functools.partial(self.artifacts.put, attempt=job.attempts)
            if self.artifacts is not None else None,
            cancel_poll_interval_s=max(CANCEL_POLL_INTERVAL_S, self._progress_interval_s),
            on_poll_error=lambda exc: self._observe("cancel_poll_unanswered", job, {"reason": str(exc)}),
        )

    def _spawn(self, parent: Job, index: int, *, made: int, listed_at_claim: int,
               answer_past: Callable[[int, int], Optional[int]], **request: Any) -> Job:
        """Child number `index` of `parent`, admitted like a submitted job: a handler spawning in
        a loop stays within its tenant's bound (QuotaExceededError at the call). The `made`
        children this attempt spawned before count though the stream has not counted them yet,
        and count towards the children the parent may list, beside those it listed when the
        attempt was claimed (its earlier attempts'). `answer_past`: the attempt's reporter's,
        which measures the parent's answer in parts kept between calls."""
        admit = functools.partial(self._admit, pending=made) if self._admit is not None else None
        return self.lifecycle.spawn(parent, index, admit=admit, listed=listed_at_claim + made,
                                    answer_past=answer_past, **request)

