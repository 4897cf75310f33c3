"""Waiting for jobs to end: the polls behind `JobpipeClient.wait` and `wait_many`.

One job is polled with a conditional GET /jobs/{id} (its ETag sent back as If-None-Match, so an
unchanged job costs a 304), several with one conditional POST /jobs/status per 100 ids. The
pause between polls is `polling.Backoff`'s; a poll no URL answered starts an outage, which
`polling.OutageClock` paces and bounds; the wait's timeout bounds every request of a poll
(`FailoverTransport.bounded_by`)."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional, Union

import requests

from jobpipe_client.answers import answer, is_batch, is_finite_number, is_job, is_number
from jobpipe_client.errors import (
    ClientRefusalError,
    JobpipeClientError,
    JobpipeUnavailableError,
    WaitTimeoutError,
    WaitUnavailableError,
)
from jobpipe_client.inputs import batch_id, path_id
from jobpipe_client.polling import Backoff, Outage, OutageClock, changed, is_final
from jobpipe_client.transport import FailoverTransport

Job = dict[str, Any]
JobRef = Union[str, Mapping[str, Any]]
OnChange = Callable[[Job], None]
OnOutage = Callable[[Outage], None]
BATCH_LIMIT = 100  # ids per POST /jobs/status


class JobWatch:
    """Polls jobs over `transport` until each is final. `get` reads one job whole (the client's
    GET /jobs/{id}); `sleep`, `clock` and `backoff` pace the polls."""

    def __init__(
        self,
        transport: FailoverTransport,
        get: Callable[[str], Job],
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        backoff: Callable[[], Backoff],
    ) -> None:
        self.transport = transport
        self._get = get
        self._sleep = sleep
        self._clock = clock
        self._backoff = backoff

    def one(
        self,
        job: JobRef,
        timeout: Optional[float],
        on_change: Optional[OnChange],
        give_up_after: Optional[float],
        on_outage: Optional[OnOutage],
        started: Optional[float] = None,
        children: bool = True,
    ) -> Job:
        """`JobpipeClient.wait`: the job's final state, once its descendants have ended too
        (unless `children` is false)."""
        check_wait_arguments(timeout, on_change, give_up_after, on_outage, started, children)
        job_id, known = _ref(job)
        tree = {job_id: known}
        poll = self._poll_of(tree, lone=job_id)
        return self._watch(tree, poll, timeout, on_change, give_up_after, on_outage, started, children)[job_id]

    def many(
        self,
        jobs: Iterable[JobRef],
        timeout: Optional[float],
        on_change: Optional[OnChange],
        give_up_after: Optional[float],
        on_outage: Optional[OnOutage],
        started: Optional[float] = None,
        children: bool = True,
    ) -> dict[str, Job]:
        """`JobpipeClient.wait_many`: the final states by id, in the order given, then (unless
        `children` is false) those of their descendants, in the order they were found."""
        check_wait_arguments(timeout, on_change, give_up_after, on_outage, started, children)
        if isinstance(jobs, (str, Mapping)):  # it would be read one character (or key) at a time
            raise ValueError("wait_many takes a list of jobs or ids: wait_many([job_id]), or wait(job_id) for one")
        try:
            given = iter(jobs)
        except TypeError:
            raise TypeError(f"wait_many's jobs must be a list of jobs or ids, not {type(jobs).__name__}") from None
        known = dict(_ref(job) for job in given)
        return self._watch(known, self._poll_of(known), timeout, on_change, give_up_after, on_outage, started,
                           children)

    def _poll_of(self, known: dict[str, Optional[Job]], lone: Optional[str] = None) -> Callable[[], dict[str, Job]]:
        """One poll of the jobs of `known` that are not final (`known` grows as the wait finds
        children): `lone` (a wait's one job) by its conditional GET, the others by conditional
        POST /jobs/status, a request per BATCH_LIMIT ids. A final job is not asked again (it
        will not change), so the polls of a fan-out shrink as its children end."""
        given = set(known)
        etags: dict[tuple[str, ...], Optional[str]] = {}  # by the ids of a batch: the batches shift as jobs end
        lone_etag: Optional[str] = None
        missed: set[str] = set()  # children that read not_found once

        def whole(job_id: str, job: Job) -> tuple[Job, bool]:
            """(the job to keep, whether it is as the batch showed it): a job that ended with a
            value kept in S3 is read whole, and so is one the batch showed without its children
            (`children_cut`: a batch of wide fan-outs would not fit one answer), whose children
            the wait follows. GET /jobs/{id} reads eventually consistently, so that read may come
            from before the batch's: kept as what is known, and False, so the batch is asked
            again in full (not with its tag, which would answer 304 from now on)."""
            if not (children_cut(job) or (is_final(job) and holds_claim_check(job))):
                return job, True
            before = known.get(job_id)
            if before is not None and not changed(before, job) and not children_cut(before):
                return before, True  # read whole when it was last shown so
            read = read_whole(self._get, job_id)
            behind = isinstance(read.get("version"), int) and read["version"] < job.get("version", 0)
            return read, not behind

        def unseen_child_missing(job_id: str, job: Job) -> bool:
            """True the first time a child never read answers not_found: the read is eventually
            consistent and the child was made in the same write that listed it, so a replica
            may not have it yet. Asked again at the next poll; not_found a second time, it is."""
            if job.get("status") != "not_found" or job_id in given or known.get(job_id) is not None \
                    or job_id in missed:
                return False
            missed.add(job_id)
            return True

        def poll() -> dict[str, Job]:
            nonlocal lone_etag
            fresh: dict[str, Job] = {}
            if lone is not None and not is_final(known[lone]):
                job, lone_etag = self._get_conditional(lone, lone_etag)
                if job is not None:
                    fresh[lone] = job
            ids = [i for i, job in known.items() if i != lone and not is_final(job)]
            tags: dict[tuple[str, ...], Optional[str]] = {}  # kept once the whole poll is read: a later batch may fail
            for start in range(0, len(ids), BATCH_LIMIT):
                batch = tuple(ids[start : start + BATCH_LIMIT])
                answer, tags[batch] = status_batch(self.transport, list(batch), etags.get(batch))
                for job_id, job in (answer or {}).items():
                    if unseen_child_missing(job_id, job):
                        tags[batch] = None
                        continue
                    fresh[job_id], as_shown = whole(job_id, job)
                    if not as_shown:
                        tags[batch] = None
            etags.clear()
            etags.update(tags)
            return fresh

        return poll

    def _watch(
        self,
        known: dict[str, Optional[Job]],
        poll: Callable[[], dict[str, Job]],
        timeout: Optional[float],
        on_change: Optional[OnChange],
        give_up_after: Optional[float],
        on_outage: Optional[OnOutage],
        started: Optional[float],
        children: bool,
    ) -> dict[str, Job]:
        """The polls until every job is final (with `children`, every descendant found too);
        the timeout counts from `started` (a time on the clock), or from now when it is None
        (the arguments checked by `check_wait_arguments`)."""
        deadline = None if timeout is None else (self._clock() if started is None else started) + timeout

        def bounded_poll() -> dict[str, Job]:
            with self.transport.bounded_by(deadline):  # a poll's URLs hanging cannot carry it past
                return poll()

        return _Polls(self._sleep, self._clock, self._backoff(), known, bounded_poll, deadline, timeout,
                      on_change, give_up_after, on_outage, children).until_final()

    def _get_conditional(self, job_id: str, etag: Optional[str]) -> tuple[Optional[Job], Optional[str]]:
        """(job, etag), or (None, etag) when the job has not changed since `etag` (304)."""
        headers = {"If-None-Match": etag} if etag else {}

        def read(response: requests.Response) -> tuple[Optional[Job], Optional[str]]:
            return answer(response, is_job, "a job", conditional=bool(etag)), response.headers.get("ETag", etag)

        return self.transport.read("GET", f"/jobs/{path_id(job_id)}", read, headers=headers)


class _Polls:
    """One wait's polls: the pause before each, what a poll's answer changes, and the outage a
    poll no URL answered starts. `known` holds each job's last state (None: not read yet)."""

    def __init__(self, sleep: Callable[[float], None], clock: Callable[[], float], backoff: Backoff,
                 known: dict[str, Optional[Job]], poll: Callable[[], dict[str, Job]], deadline: Optional[float],
                 timeout: Optional[float], on_change: Optional[OnChange], give_up_after: Optional[float],
                 on_outage: Optional[OnOutage], children: bool = False) -> None:
        self._sleep, self._clock, self._backoff = sleep, clock, backoff
        self._known, self._poll = known, poll
        self._deadline, self._timeout = deadline, timeout
        self._on_change, self._give_up_after, self._on_outage = on_change, give_up_after, on_outage
        self._children = children  # whether a job's children are followed too (added to `known` as found)
        self._moved = True  # whether the last poll changed a job (the backoff starts again)
        self._outage: Optional[OutageClock] = None

    def until_final(self) -> dict[str, Job]:
        """Every job's final state. Raises WaitTimeoutError when the deadline passes (after one
        poll at least), WaitUnavailableError when an outage outlasts give_up_after or the deadline."""
        for job in self._known.values():
            if job is not None and self._on_change is not None:
                self._on_change(job)
        self._follow_children()
        # A job known by its id alone is read at once; a wait polls once at least before its
        # deadline ends it, a timeout of 0 too: "look once" never answers unasked.
        polled = any(job is None for job in self._known.values())
        if polled:
            self._poll_once()
        while not all(is_final(job) for job in self._known.values()):
            self._sleep(self._pause(polled))
            polled = True
            self._poll_once()
        return self._known  # type: ignore[return-value]  # every entry is final, so none is None

    def _pause(self, polled: bool) -> float:
        """The seconds to wait before the next poll: the outage's retry, else the backoff's,
        never past the deadline. Raises the wait's end once the deadline has passed and a poll
        was made."""
        delay = self._outage.retry_in_s if self._outage is not None else self._backoff.next_delay(self._moved)
        if self._deadline is None:
            return delay
        remaining = max(self._deadline - self._clock(), 0.0)
        if remaining <= 0 and polled:
            if self._outage is not None:  # the jobs' state is not known: the API is not answering
                raise WaitUnavailableError(self._outage.error, self._outage.since_s(self._clock()), self._seen(),
                                           timeout_s=self._timeout or 0.0)
            raise WaitTimeoutError(self._timeout or 0.0, self._seen())
        return min(delay, remaining)

    def _poll_once(self) -> None:
        """One poll: its jobs absorbed, or the outage it starts or goes on with."""
        sent = self._clock()
        try:
            fresh = self._poll()
        except JobpipeUnavailableError as exc:
            self._outage = self._outage or OutageClock(sent, self._give_up_after)
            self._outage.failed(exc, self._clock())
            if self._outage.over(self._clock()):
                raise WaitUnavailableError(exc, self._outage.since_s(self._clock()), self._seen()) from None
            if self._on_outage is not None:
                self._on_outage(self._outage.report(self._clock()))
            return
        if self._outage is not None:
            if self._on_outage is not None:
                self._on_outage(self._outage.report(self._clock(), ended=True))
            self._outage = None
        self._moved = self._absorb(fresh)

    def _absorb(self, fresh: dict[str, Job]) -> bool:
        """Keeps each changed job and shows it to on_change; True when any changed."""
        moved = False
        for job_id, job in fresh.items():
            if job_id in self._known and changed(self._known[job_id], job):
                self._known[job_id] = job
                moved = True
                if self._on_change is not None:
                    self._on_change(job)
        return self._follow_children() or moved

    def _follow_children(self) -> bool:
        """Adds the children the known jobs list that are not known yet, unread (None), when
        the wait follows children; True when any was added. A parent lists a child in the
        write that makes it, and never after it has ended, so once every job known is final
        no child is left unknown."""
        if not self._children:
            return False
        found = [child for job in list(self._known.values()) if job is not None
                 for child in children_of(job) if child not in self._known]
        for child in found:
            self._known.setdefault(child, None)
        return bool(found)

    def _seen(self) -> dict[str, Job]:
        """The jobs a poll (or the caller) has shown, by id: the state a wait that ends early carries."""
        return {i: j for i, j in self._known.items() if j is not None}


def children_of(job: Job) -> list[str]:
    """The ids in the job's `children` (those its handler spawned, in launch order), trimmed as
    a batch answers them; what is no id (not text, empty, holding a comma) is left out."""
    listed = job.get("children")
    if not isinstance(listed, list):
        return []
    return [c.strip() for c in listed if isinstance(c, str) and c.strip() and "," not in c]


def check_wait_arguments(timeout: Any, on_change: Any, give_up_after: Any, on_outage: Any, started: Any,
                         children: Any = True) -> None:
    """A wait's arguments, checked at the call, before any request: ValueError for a `timeout`
    or `give_up_after` that is no number of seconds >= 0 (NaN would wait forever) or a `started`
    that is no finite time, TypeError for an `on_change` or `on_outage` that is neither None nor
    callable (it would fail only once a job changed, or a poll failed, deep inside the wait).
    Each names the argument."""
    if timeout is not None and not _seconds(timeout):
        raise ValueError(f"a wait's timeout must be a number of seconds >= 0, not {timeout!r}")
    if give_up_after is not None and not _seconds(give_up_after):
        raise ValueError(f"a wait's give_up_after must be a number of seconds >= 0 or None, not {give_up_after!r}")
    if started is not None and not is_finite_number(started):  # a NaN deadline never comes
        raise ValueError(f"a wait's started must be a time on the client's clock, not {started!r}")
    for name, callback in (("on_change", on_change), ("on_outage", on_outage)):
        if callback is not None and not callable(callback):
            raise TypeError(f"a wait's {name} must be a function (or None), not {type(callback).__name__}")
    if not isinstance(children, bool):
        raise TypeError(f"a wait's children must be True or False, not {children!r}")


def status_batch(transport: FailoverTransport, ids: list[str],
                 etag: Optional[str]) -> tuple[Optional[dict[str, Job]], Optional[str]]:
    """POST /jobs/status for up to BATCH_LIMIT ids: (jobs by id in request order, etag), or
    (None, etag) when none has changed since `etag` (304)."""
    headers = {"If-None-Match": etag} if etag else {}

    def read(response: requests.Response) -> tuple[Optional[dict[str, Job]], Optional[str]]:
        batch = answer(response, is_batch, "the jobs asked for", conditional=bool(etag))
        if batch is None:
            return None, etag
        return {i: batch["jobs"][i] for i in batch["job_ids"]}, response.headers.get("ETag")

    return transport.read("POST", "/jobs/status", read, json={"job_ids": ids}, headers=headers)


def read_whole(get: Callable[[str], Job], job_id: str) -> Job:
    """The job read on its own with `get` (GET /jobs/{id}: its payload and result whole), or
    `{"id", "status": "not_found"}` when it was removed since a batch showed it: as it ends one."""
    try:
        return get(job_id)
    except JobpipeClientError as exc:
        if exc.code != "job_not_found":
            raise
        return {"id": job_id, "status": "not_found"}


def children_cut(job: Job) -> bool:
    """True when a batch showed the job without its children (`children_cut`, their number;
    `children` empty): GET /jobs/{id} lists them."""
    return isinstance(job.get("children_cut"), int) and job["children_cut"] > 0


def holds_claim_check(job: Job) -> bool:
    """True when a listing showed the job's payload or result as kept in S3: the batch and
    list routes give `{"claim_check": {"bytes": n}}` in its place (GET /jobs/{id} the value)."""
    return any(isinstance(value := job.get(field), dict) and set(value) == {"claim_check"}
               for field in ("payload", "result"))


def _ref(job: JobRef) -> tuple[str, Optional[Job]]:
    """(id, the job as given, or None to read it at once). A job given as a batch or a listing
    showed it, ended with a value kept in S3, is read again: its final state carries the value,
    not the `claim_check` in its place."""
    if isinstance(job, Mapping):
        if "id" not in job:  # status_many's answer, keyed by id, given where one job goes
            raise ClientRefusalError("invalid_job_id", "a job given as a mapping holds its 'id' (a job as "
                                     "the API answers it); status_many answers jobs by id: pass one of its values")
        given = dict(job)
        return batch_id(job.get("id")), None if is_final(given) and holds_claim_check(given) else given
    return batch_id(job), None


def _seconds(value: Any) -> bool:
    """A number of seconds >= 0 (NaN is not: it would wait forever)."""
    return is_number(value) and value >= 0
