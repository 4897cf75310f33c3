"""What a job handler gets: its job, progress reporting, cancellation and the time it has left."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from chalicelib.defaults import CANCEL_POLL_INTERVAL_S, MAX_JSON_DEPTH
from chalicelib.domain.errors import (
    AttemptEndedError,
    ChildPlaceTakenError,
    FatalJobError,
    InvalidArtifactError,
    JobCancelledError,
    JobTimeoutError,
    ProgressRejectedError,
    StoreUnavailableError,
    error_code,
    text_of,
)
from chalicelib.domain.job import Job, JobErrorInfo, nested_deeper_than, non_text_key, too_deep_message
from chalicelib.domain.media_types import UTF8_TEXT
from chalicelib.domain.progress import check_report
from chalicelib.domain.text import NOT_UNICODE, holds_lone_surrogate
from chalicelib.ports import ArtifactInfo, Clock
from chalicelib.worker.progress import ProgressReporter

# (job_id, name, data, content_type, *, write, replaces): ArtifactStore.put of the attempt's
# `write`-th write of `name`, deleting once it lands the objects of its writes `replaces`
StoreArtifact = Callable[..., ArtifactInfo]


@dataclass(frozen=True)
class Completion:
    """How a handler finished its work: the result and a final progress message. A message a
    progress report could not carry (not text, too long, a lone surrogate) raises
    ProgressRejectedError here, in the handler, as `ctx.progress` would: the completion's
    write could not store it either."""

    result: Any
    message: Optional[str] = None

    def __post_init__(self) -> None:
        check_report(None, self.message, None)


@dataclass(frozen=True)
class Failure:
    """How a handler declared its job failed: the code and message the job ends with.
    `after_cancel`: the handler had seen the job's cancel request when it declared it, so the
    cancel ends the job; a request it first sees after (a clean-up's look) leaves it this one."""

    code: str
    message: str
    after_cancel: bool = False


def _artifact_json(name: str, data: Union[dict, list]) -> bytes:
    """`data` as its JSON artifact's bytes; InvalidArtifactError when it is not JSON data that
    reads back as given (checked at the call, as a result and progress details are, instead of
    an invalid artifact stored or a raw TypeError failing the attempt `handler_error`)."""
    key = non_text_key(data)
    if key is not None:  # json.dumps would write {1: ...} as {"1": ...}
        raise InvalidArtifactError(f"artifact {name!r:.140} must be JSON: the keys of its objects are text, "
                                   f"not {key:.100}")
    try:
        return json.dumps(data, allow_nan=False, separators=(",", ":")).encode()
    except TypeError as exc:  # a datetime, a set: not converted unseen
        raise InvalidArtifactError(f"artifact {name!r:.140} must be JSON: {exc}") from None
    except ValueError:  # written as NaN or Infinity, which no strict JSON reader takes
        raise InvalidArtifactError(f"artifact {name!r:.140} must be JSON: it holds NaN or Infinity, "
                                   "which JSON has no form for") from None


def _check_final_report(message: Optional[str], details: Optional[dict[str, Any]]) -> None:
    """ProgressRejectedError when a completion's final `message`, which fits a report alone, and
    the last report's `details`, which the completion keeps beside it, take more together than
    a report may (check_report): refused at the call, not cut when the record has no room."""
    if message is None:
        return
    try:
        check_report(None, message, details)
    except ProgressRejectedError as exc:
        raise ProgressRejectedError(f"{exc.message} (the completion keeps the last progress report's details "
                                    "beside its final message)") from None


class JobContext:
    def __init__(
        self,
        reporter: ProgressReporter,
        *,
        reload: Callable[[str], Optional[Job]],
        clock: Clock,
        deadline: float,
        spawn: Optional[Callable[..., Job]] = None,
        store_artifact: Optional[StoreArtifact] = None,
        cancel_poll_interval_s: float = CANCEL_POLL_INTERVAL_S,
        on_poll_error: Callable[[Exception], None] = lambda exc: None,
    ) -> None:
        """`on_poll_error`: told of a routine cancel poll the store did not answer."""
        self._reporter = reporter
        self._on_poll_error = on_poll_error
        self._cancel_poll_interval_s = cancel_poll_interval_s
        self._spawn = spawn
        self._spawn_lock = threading.Lock()  # a handler may spawn from several threads
        self._fail_lock = threading.Lock()  # and fail from several: the first call decides
        self._spawned = 0  # the places spawns took: the next spawn's index is the one after
        # That next place holds the child of a spawn the store did not answer, if it made one.
        self._held = False
        # The places a spawn passed over (ChildPlaceTakenError: an unanswered spawn's child, another
        # request's) and their children, which no spawn has taken on yet: a later spawn asking for
        # one of them (the handler trying the unanswered spawn again) takes it on.
        self._untaken: dict[int, str] = {}
        self._made = 0  # the children spawns made (or may have: the held place's)
        self._store_artifact = store_artifact
        # Each name's writes are numbered (each stores its object under a key of its own) and
        # made one at a time: the one that lands deletes the objects no item names then, those
        # `_artifact_left` holds (the last landed write's, and any after it not answered).
        self._artifact_writes: dict[str, int] = {}
        self._artifact_left: dict[str, tuple[int, ...]] = {}
        self._artifact_locks: dict[str, threading.Lock] = {}
        self._artifact_locks_lock = threading.Lock()
        self._reload = reload
        self._deadline = deadline
        self._clock = clock  # the worker's: `deadline` is a reading of it
        self._last_cancel_check = clock.monotonic()
        self._cancel_seen = False
        self._cancel_seen_in_time: Optional[bool] = None  # `_cancel_seen` as the time ran out
        self._expired = threading.Event()
        self._closed = threading.Event()
        self._completion: Optional[Completion] = None
        self._failure: Optional[Failure] = None

    @property
    def job(self) -> Job:
        return self._reporter.job

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def attempt(self) -> int:
        return self.job.attempts

    @property
    def tenant(self) -> str:
        return self.job.tenant

    @property
    def scope(self) -> Optional[str]:
        return self.job.scope

    def progress(
        self,
        percent: float,
        step: Optional[str] = None,
        message: Optional[str] = None,
        details: Optional[dict[str, Any]] = None,
        force: bool = False,
    ) -> None:
        """Report progress for this attempt: throttled to one write per interval, the latest
        report kept and written when the interval ends, `force=True` written now. Raises
        ProgressRejectedError if the percent would decrease, and JobCancelledError once a
        cancel was requested, so a handler that reports progress stops cooperatively. A write
        the store does not answer raises nothing: the report is kept and written later. A
        report made once the cancel is known (a write returned it, `cancelled()` saw it) is not
        taken: it raises at once, kept for no write, as the write that met the request stored
        nothing. A report made once `fail` recorded the attempt's end (a `finally:` block's) is
        not taken either, and raises nothing: the failed job shows the failure's progress."""
        self._check_writable()
        if self._failure is not None:  # before the cancel: a clean-up's report sees no request
            return
        self._raise_if_cancel_known()
        if self._completion is not None:  # its final message will stand beside these details
            _check_final_report(self._completion.message, details)
        self._reporter.report(percent, step, message, details, force=force)
        self._raise_if_cancel_known()  # the report's write may have returned the request

    @property
    def progress_percent(self) -> float:
        """The highest percent reported in this attempt (written or still pending); a report
        refused at the call (ProgressRejectedError, by a check or by the store's write) leaves
        it as it was."""
        return self._reporter.percent

    @property
    def completion(self) -> Optional[Completion]:
        """What `complete` recorded (None if it was not called)."""
        return self._completion

    @property
    def failure(self) -> Optional[Failure]:
        """What `fail` recorded first (None if it was not called)."""
        return self._failure

    @property
    def cancel_seen(self) -> bool:
        """True once this context has seen the job's cancel request."""
        return self._cancel_seen

    @property
    def cancel_seen_in_time(self) -> bool:
        """True when this context saw the job's cancel request before its time ran out (while
        it has time left, as `cancel_seen`): a request first seen after (a look from a loop
        that caught the timeout) does not decide how the attempt ends."""
        in_time = self._cancel_seen_in_time
        return self._cancel_seen if in_time is None else in_time

    def complete(self, result: Any, message: Optional[str] = None) -> Completion:
        """Record the job's result and final message: the job completes with them once the
        handler ends, whatever it returns, and though it raises or runs past its timeout after
        this call (unless `fail` is called after it, or the handler sees a cancel request). A
        later call replaces an earlier one. Raises AttemptEndedError, recording nothing, once
        `fail` decided the job fails (its handler caught fail_job's error and went on): the job
        fails as fail_job said. Raises ProgressRejectedError, recording nothing, for a message a
        progress report could not carry (see Completion), alone or beside the last report's
        details, which the completion keeps with it."""
        self._check_writable()
        self._refuse_once_failed("it is not completed")
        completion = Completion(result, message)
        _check_final_report(message, self._reporter.last_details)
        self._completion = completion
        return self._completion

    def fail(self, code: str, message: str, percent: Optional[float] = None) -> FatalJobError:
        """Record that the job fails with `code` and `message` (no retry), and the percent
        reached when given (a lower or invalid one keeps the percent already reached: never
        refused). The first call decides; the handler should raise what this returns, but the
        job fails with the recorded code whatever the handler does next, unless it was
        canceled before (a cancel request the handler had seen ends the job canceled, showing
        the progress reached before it: `percent` is not written then). A request it first sees
        after this call (a clean-up's artifact or `cancelled()`, a spawn on another thread)
        leaves the job the failure's code, as one it never sees."""
        self._check_writable()
        with self._fail_lock:  # two threads failing at once: one decides, both raise its error
            if self._failure is None:
                # As the job's error will show them (JobErrorInfo): the percent's report carries the message too.
                error = JobErrorInfo(code=error_code(code, "handler_failed"), message=text_of(message))
                after_cancel = self._cancel_seen  # read once: another thread's spawn may see the request now
                self._failure = Failure(error.code, error.message, after_cancel)
                # Once the handler has seen the cancel the job ends canceled: a report made now is no
                # progress it reached before, so none is kept for that write (as `progress`). One it
                # never saw (whenever a write learned of it) leaves the failure its word, as a
                # report made before it.
                if percent is not None and not after_cancel:
                    self._reporter.report_final(percent, "failed", self._failure.message)
            failure = self._failure
        return FatalJobError(failure.message, code=failure.code)

    def spawn(self, type: str, payload: Any, *, priority: Optional[str] = None,
              scope: Optional[str] = None) -> str:
        """Submit a child job (validated like any submission) and list it in this job's
        `children`; returns the child's id. Raises JobCancelledError, making no child, once the
        job's cancel was requested (the handler has seen it then, as after a progress report),
        and AttemptEndedError once `fail` decided the job fails (a `finally:` block's follow-up):
        a failed job starts no child that would run on without it. StoreUnavailableError (the
        store did not answer: the child may be made) keeps the spawn's place for the next one,
        which takes that child on if it is the one asked for and is made beside it if not; a
        later spawn asking for it takes it on then, whatever spawns came between (once: a second
        one makes another).
        Safe from several threads: their spawns are made one at a time, each child its own."""
        with self._spawn_lock:
            # Checked in turn: a spawn that waited for another thread's sees a fail_job, a timeout
            # or the attempt's end that came meanwhile.
            self._check_writable()
            self._refuse_once_failed(f"child {type!r:.140} is not spawned")
            if self._spawn is None:
                raise RuntimeError("this context cannot spawn child jobs")
            return self._spawn_one(type, payload, priority=priority, scope=scope)

    def _refuse_once_failed(self, refused: str) -> None:
        """AttemptEndedError (its message ending with `refused`) once `fail` decided the job fails."""
        if self._failure is not None:
            raise AttemptEndedError(f"job {self.job_id} has failed (fail_job {self._failure.code!r:.140}): {refused}")

    def _raise_if_cancel_known(self, refused: str = "") -> None:
        """JobCancelledError (its message ending with `refused`) once a cancel request is known
        (seen, or on the job a write returned), without reading the store."""
        if self._cancel_seen or self.job.cancel_requested:
            self._cancel_seen = True
            raise JobCancelledError(f"job {self.job_id} was canceled{refused}")

    def _spawn_one(self, type: str, payload: Any, *, priority: Optional[str], scope: Optional[str]) -> str:
        self._raise_if_cancel_known()
        untaken = tuple(self._untaken)  # not those this spawn passes over: not the child it asks for
        while True:
            index, held = self._spawned + 1, self._held
            try:
                # A held place's child, counted as made already, is not counted before itself.
                child = self._spawn(self.job, index, made=self._made - held, held=held, type=type,
                                    payload=payload, priority=priority, scope=scope, untaken=untaken)
            except ChildPlaceTakenError as exc:  # another request's child: the job's, this one goes next
                self._spawned, self._held, self._made = index, False, self._made + (not held)
                self._untaken[index] = exc.child_id  # until a spawn asks for it
                self._reporter.listed(exc.child_id)
                untaken = ()  # looked at already: none was the child asked for
                continue
            except JobCancelledError:
                self._cancel_seen = True
                raise
            except StoreUnavailableError:
                # It may have made the child: the place is held, and the next spawn made there
                # takes that child on if it is the one asked for (a handler trying again).
                self._held, self._made = True, self._made + (not held)
                raise
            except Exception:
                # Refused before a child was made (its request, the quota, the bound, the record):
                # counts towards nothing. A held place stays held: its child may still be there.
                self._spawned = self._spawned if held else index
                raise
            taken = next((place for place, child_id in self._untaken.items() if child_id == child.id), None)
            if taken is not None:  # a passed-over place's child, counted and listed: this place stays as it is
                del self._untaken[taken]
                return child.id
            self._spawned, self._held, self._made = index, False, self._made + (not held)
            self._reporter.listed(child.id)  # the job lists it: what measures its answer counts it
            return child.id

    def artifact(
        self, name: str, data: Union[bytes, str, dict, list], content_type: Optional[str] = None
    ) -> ArtifactInfo:
        """Store an output of this job under `name` (replacing one of the same name): bytes
        as given, str as UTF-8 text, dict/list as JSON. Small text stays in the job's record,
        the rest goes to S3. Raises InvalidArtifactError, for dict/list data too that is not
        JSON as a result must be (NaN, Infinity, a key that is not text, a datetime, more than
        MAX_JSON_DEPTH levels). Raises JobCancelledError, storing nothing, once the cancel
        request is known (as `progress`): a canceled job keeps no output made after it."""
        self._check_writable()
        self._raise_if_cancel_known(f": artifact {name!r:.140} is not stored")
        if self._store_artifact is None:
            raise InvalidArtifactError("this worker has no artifact store configured")
        if isinstance(data, (dict, list)) and nested_deeper_than(data, MAX_JSON_DEPTH):  # before any walk: a cycle ends here
            raise InvalidArtifactError(f"artifact {name!r:.140}: {too_deep_message('data')}")
        if isinstance(data, (str, dict, list)) and holds_lone_surrogate(data):  # no UTF-8 text, no JSON reader takes it
            raise InvalidArtifactError(f"artifact {name!r:.140} {NOT_UNICODE}")
        if isinstance(data, (bytes, bytearray)):
            raw, default_type = bytes(data), "application/octet-stream"
        elif isinstance(data, str):
            raw, default_type = data.encode(), UTF8_TEXT
        elif isinstance(data, (dict, list)):
            raw, default_type = _artifact_json(name, data), "application/json"
        else:
            raise InvalidArtifactError(f"artifact data must be bytes, str, dict or list, not {type(data).__name__}")
        with self._artifact_locks_lock:
            lock = self._artifact_locks.setdefault(name, threading.Lock())
        with lock:
            write = self._artifact_writes[name] = self._artifact_writes.get(name, 0) + 1
            left = self._artifact_left.get(name, ())
            try:
                # Only None takes the default: an empty or falsy one is no media type, refused as any other.
                info = self._store_artifact(self.job_id, name, raw,
                                            default_type if content_type is None else content_type,
                                            write=write, replaces=left)
            except (InvalidArtifactError, AttemptEndedError):
                raise  # it left no object: refused before its upload, or its upload deleted
            except Exception:
                # Not answered: its object may be there, even named by the item its answer did not confirm.
                self._artifact_left[name] = (*left, write)
                raise
            self._artifact_left[name] = (write,) if info.location == "s3" else ()
            return info

    def cancelled(self, *, fresh: bool = False) -> bool:
        """True once a cancel was requested. Reads the store at most once per poll interval, and
        not at all while progress writes the store answered (they return the stored job) are
        fresher than that;
        `fresh=True` reads it now (before a step that cannot be undone, such as starting
        another job).

        A routine poll the store does not answer (StoreUnavailableError, botocore's retries
        spent) answers what is known, no request, and is made again an interval later, as a
        progress report the store does not take is kept for the next window: a moment's outage
        does not fail the attempt. `fresh=True` raises it: the step it guards waits for an
        answer."""
        if self._cancel_seen or self.job.cancel_requested:
            self._cancel_seen = True
            return True
        now = self._clock.monotonic()
        fresh_at = max(self._last_cancel_check, self._reporter.last_write_at)
        if fresh or now - fresh_at >= self._cancel_poll_interval_s:
            self._last_cancel_check = now
            try:
                stored = self._reload(self.job_id)
            except StoreUnavailableError as exc:
                if fresh:
                    raise
                self._on_poll_error(exc)
                return self._cancel_seen
            self._cancel_seen = bool(stored is not None and stored.cancel_requested)
        return self._cancel_seen

    def check_cancelled(self, *, fresh: bool = False) -> None:
        """Raise JobCancelledError if a cancel was requested (`fresh`: as `cancelled` takes it)."""
        if self.cancelled(fresh=fresh):
            raise JobCancelledError(f"job {self.job_id} was canceled")

    def remaining_ms(self) -> int:
        """Milliseconds before this attempt's timeout."""
        return max(0, int((self._deadline - self._clock.monotonic()) * 1000))

    def expire(self) -> None:
        """Called by the runner when the attempt timed out: later calls from a handler that
        is still running raise instead of writing, and a cancel request first seen from now on
        is not `cancel_seen_in_time`."""
        if self._cancel_seen_in_time is None:
            self._cancel_seen_in_time = self._cancel_seen
        self._expired.set()

    @property
    def expired(self) -> bool:
        """True once the attempt's time ran out (whatever the handler did with the timeout)."""
        return self._expired.is_set()

    def close(self) -> None:
        """Called by the runner once the handler is done: the attempt is ending, so a context
        kept past it (by a thread, a callback) refuses every call that writes."""
        self._closed.set()

    def _check_writable(self) -> None:
        # Ended first: a ctx kept past its attempt is refused alike whether that attempt timed out or not.
        if self._closed.is_set():
            raise AttemptEndedError(
                f"attempt {self.attempt} of job {self.job_id} has ended: its context no longer reports "
                "progress, completes, fails, spawns or stores artifacts (use it only while the handler runs)")
        if self._expired.is_set():
            raise JobTimeoutError(f"attempt {self.attempt} of job {self.job_id} timed out")
