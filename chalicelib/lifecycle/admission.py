"""A new job: checked, stored queued (or held for a start beyond SQS's delay) and sent its first
message; a submission's Idempotency-Key answering its job again; a running attempt's children."""
from __future__ import annotations

import inspect
import math
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping, Optional, Sequence

from chalicelib.defaults import (
    MAX_ANSWER_BYTES,
    MAX_CHILDREN,
    MAX_JSON_DEPTH,
    MAX_SCHEDULE_S,
    REPLAY_RESEND_AFTER_S,
    SPAWN_ANSWER_ROOM_BYTES,
    SQS_MAX_DELAY_S,
)
from chalicelib.domain.caches import check_name
from chalicelib.domain.errors import (
    AnswerFullError,
    BlobNotFoundError,
    ChildPlaceTakenError,
    IdempotencyConflictError,
    InvalidRequestError,
    JobNotFinishedError,
    JobNotFoundError,
    JobPurgedError,
    PayloadTooDeepError,
    PayloadTooLargeError,
    QueueUnavailableError,
    QuotaExceededError,
    RecordFullError,
    RecordTooLargeError,
    StaleJobError,
    StoreUnavailableError,
    TooManyChildrenError,
)
from chalicelib.domain.job import (
    PRIORITIES,
    Job,
    answer_bytes,
    answer_shares,
    child_job_id,
    isoformat,
    listed_bytes,
    nested_deeper_than,
    new_job_id,
    parse_time,
    too_deep_message,
)
from chalicelib.domain.numbers import shown_number
from chalicelib.domain.registry import JobType
from chalicelib.domain.status import JobStatus
from chalicelib.domain.submission_keys import check_key, request_hash
from chalicelib.lifecycle.transitions import JobTransitions, start_message
from chalicelib.ports import SubmissionKey


# submit's keywords that say who submits and how, not what is asked; every other one is the
# request (POST /jobs passes its body's fields as them), over which a key's hash is taken.
NOT_THE_REQUEST = frozenset({"self", "tenant", "user", "job_id", "idempotency_key", "admit"})
# The request's keywords when keys began: hashed at any value, their defaults too.
FIRST_KEYED = frozenset({"type", "payload", "priority", "delay_seconds", "run_at", "scope"})


def check_finished(job: Job) -> None:
    """Returns if `job` may run again: only a finished job (completed, failed or canceled) is
    rerun, queued or inline. Raises JobNotFinishedError."""
    if not job.status.is_terminal:
        raise JobNotFinishedError.of(job.id, job.status.value)


def hashed_request(signature: inspect.Signature, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The request a call of `signature` (Admission.submit's) with `arguments` asks for, as its
    Idempotency-Key's hash reads it: each keyword but NOT_THE_REQUEST. One added after
    FIRST_KEYED counts only when given other than its default: a key stored before it existed
    hashed no such field, and a replay of that key's request must still match it."""
    return {name: arguments[name] for name, parameter in signature.parameters.items()
            if name not in NOT_THE_REQUEST and (name in FIRST_KEYED or arguments[name] != parameter.default)}


def taken_request(request: Mapping[str, Any], job: Job, job_type: JobType) -> dict[str, Any]:
    """`request` (hashed_request's) as the job it made takes it, whose hash a key keeps beside the
    request's as sent (SubmissionKey.taken_hash): the priority the job runs at left out (None)
    when it is `job_type`'s own, as when the request gives none, and the payload as its type
    reads it, its fields at their default left out (JobType.asked_payload), so a request spelling
    out a default is the same request as one leaving it to the default (a retry from a client
    that fills defaults in)."""
    return {**request, "payload": job_type.asked_payload(job.payload),
            "priority": None if job.priority == job_type.priority else job.priority}


def start_time(now: datetime, delay_seconds: int, run_at: Optional[datetime]) -> datetime:
    """When a job asked at `now` to start `delay_seconds` later, or at `run_at` (one passed: now),
    starts. Raises InvalidRequestError: both given, a `run_at` with no zone, a negative delay, a
    start more than MAX_SCHEDULE_S ahead."""
    if run_at is not None and delay_seconds:
        raise InvalidRequestError("give either run_at or delay_seconds, not both")
    if run_at is not None:
        if run_at.tzinfo is None:
            raise InvalidRequestError("run_at needs a time zone (for example 2027-01-31T09:00:00Z)")
        start = max(now, run_at)
    else:
        if delay_seconds < 0:
            raise InvalidRequestError("delay_seconds must not be negative")
        start = now + timedelta(seconds=delay_seconds)
    if (start - now).total_seconds() > MAX_SCHEDULE_S:
        raise InvalidRequestError(
            f"a job can be scheduled at most {MAX_SCHEDULE_S // 86400} days ahead",
            details={"max_delay_seconds": MAX_SCHEDULE_S},
        )
    return start


def check_answerable(shown: Mapping[str, Any]) -> None:
    """Raises PayloadTooLargeError when no answer could carry `shown` (a job as the API shows it:
    not its 202, not a GET of it)."""
    size = answer_bytes(shown)
    if size > MAX_ANSWER_BYTES:
        raise PayloadTooLargeError.unanswerable(size)


def _check_answer_room(parent: Job, child_id: str,
                       answer_past: Optional[Callable[[int, int], Optional[int]]]) -> None:
    """Raises AnswerFullError when `parent`'s answer with `child_id` listed would pass
    MAX_ANSWER_BYTES less SPAWN_ANSWER_ROOM_BYTES (the room its outcome keeps), naming the parts
    the parent holds; `answer_past` as Admission.spawn takes it."""
    bound = MAX_ANSWER_BYTES - SPAWN_ANSWER_ROOM_BYTES
    extra = listed_bytes(child_id, len(parent.children))
    if answer_past is None:
        whole = answer_bytes(parent.public()) + extra
        size = whole if whole > bound else None
    else:
        size = answer_past(bound, extra)
    if size is None:
        return
    shares = [("its payload", parent.payload), ("its progress", parent.progress.model_dump(mode="json")),
              (f"its {len(parent.children) + 1} children's ids", [*parent.children, child_id])]
    raise AnswerFullError(
        f"job {parent.id} with child {child_id} listed would be {shown_number(size)} bytes as the API answers it ("
        f"{answer_shares(shares)}), past the {shown_number(bound)} "
        f"a spawn may take it to (Lambda returns 6 MB; the rest is kept for the job's outcome): pass large "
        "input by reference (an object in S3) instead of in the payload, report smaller progress details or "
        "a shorter message, or spawn the rest from its children (a tree)",
        details={"answer_bytes": size, "limit": bound})


class Admission(JobTransitions):
    """A new job: submitted (with its Idempotency-Key) or spawned by a running attempt."""

    def submit(
        self,
        *,
        tenant: str,
        user: str,
        type: str,
        payload: Any,
        priority: Optional[str] = None,
        delay_seconds: int = 0,
        run_at: Optional[datetime] = None,
        scope: Optional[str] = None,
        rerun_of: Optional[str] = None,
        job_id: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        admit: Optional[Callable[[str], None]] = None,
    ) -> Job:
        """Validate, store as queued, enqueue. The job starts `delay_seconds` from now or at
        `run_at` (at most MAX_SCHEDULE_S ahead). A start within SQS's delay is sent at once;
        a later one is held in the store and released by the reconciler. `rerun_of`: the
        finished job this one runs again (`rerun`), recorded on the job. The record is
        written first and is what counts: if the enqueue fails, the reconciler sends the
        message once the job is due, so an accepted job is never stranded.

        `admit(tenant)` (admission, the tenant quota) runs before anything is written and may
        raise to refuse the job. With an `idempotency_key` the job and the key's record are
        written in one atomic write, the key kept `key_ttl_s`; while it is kept, the same
        request under that key returns the job it made, sending and writing nothing (but the first
        message of a job whose request may have died before sending it: `_send_unclaimed`).
        Raises UnknownJobTypeError, InvalidPayloadError, InvalidRequestError,
        IdempotencyConflictError (the key was used with another request), JobPurgedError (the
        key's job was removed while the key is kept), what `admit` raises."""
        request = hashed_request(_SUBMIT, locals())  # first: its arguments, nothing else yet
        key = check_key(idempotency_key) if idempotency_key is not None else None
        now = self.clock()
        job, wait_s = self._new_job(now, tenant=tenant, user=user, type=type, payload=payload, priority=priority,
                                    delay_seconds=delay_seconds, run_at=run_at, scope=scope, job_id=job_id,
                                    rerun_of=rerun_of)
        if key is None:
            if admit is not None:
                admit(tenant)
            self.store.create(job)
        else:
            taken = taken_request(request, job, self.registry.get(type))
            record = SubmissionKey(tenant, key, job.id, request_hash(request), int(now.timestamp()) + self.key_ttl_s,
                                   taken_hash=request_hash(taken))
            # Admission comes before the key is written, so a new job costs no read of the key;
            # a replay refused by admission looks its key up then (one GetItem, on refusals
            # only): the key's first request was admitted, and its replays answer its job.
            if admit is not None:
                try:
                    admit(tenant)
                except QuotaExceededError:
                    first = self.store.submission_key(tenant, key, now=int(now.timestamp()))
                    if first is None:
                        raise
                    return self._replayed(first, record)
            first = self.store.create_keyed(job, record, now=int(now.timestamp()))
            if first is not None:
                return self._replayed(first, record)
        self._send_first(job, wait_s)
        return job

    def rerun(
        self,
        *,
        tenant: str,
        user: str,
        job_id: str,
        delay_seconds: int = 0,
        run_at: Optional[datetime] = None,
        new_id: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        admit: Optional[Callable[[str], None]] = None,
        internal: bool = False,
        payload: Optional[dict[str, Any]] = None,
    ) -> Job:
        """Run the tenant's finished job `job_id` again: `submit` of a new job (`new_id`, or a
        fresh id) with its type, payload (read back from S3 when kept there; `payload` instead
        when given: a maintenance task's parameters without its run's bookkeeping), priority and scope,
        submitted by `user`, starting now or as `delay_seconds`/`run_at` say, and `rerun_of` the
        original's id. A child's rerun is a top-level job: no parent lists it. The original is
        read, never written. `idempotency_key` and `admit` as for submit: the key's request is
        the rerun (the original's fields and `rerun_of`), so the same rerun under it answers the
        job it made, and any other request under it is IdempotencyConflictError. `internal`: the
        caller may start built-in (maintenance) jobs; without it their type is as unknown as on
        POST /jobs. Raises, writing and sending nothing: JobNotFoundError (no such job, or
        another tenant's), JobNotFinishedError, UnknownJobTypeError (its type no longer
        registered, or built-in), BlobNotFoundError (its payload's object is gone), and what
        submit raises (InvalidPayloadError for a payload its type's model no longer takes)."""
        original = self.store.get(job_id, tenant=tenant, fetch=("payload",), mark_gone=True)
        if original is None:
            made = self.rerun_made(tenant, idempotency_key, job_id)
            if made is not None:  # a replay after the original was removed: its key still answers
                return made
            raise JobNotFoundError(f"job {job_id} not found")
        check_finished(original)
        (self.registry.get if internal else self.registry.get_public)(original.type)
        if "payload" in original.gone:
            made = self.rerun_made(tenant, idempotency_key, job_id)
            if made is not None:
                return made
            raise BlobNotFoundError.payload_gone(job_id)
        return self.submit(
            tenant=original.tenant, user=user, type=original.type,
            payload=original.payload if payload is None else payload,
            priority=original.priority, delay_seconds=delay_seconds, run_at=run_at, scope=original.scope,
            rerun_of=original.id, job_id=new_id, idempotency_key=idempotency_key, admit=admit,
        )

    def rerun_made(self, tenant: str, idempotency_key: Optional[str], job_id: str) -> Optional[Job]:
        """The job the tenant's kept `idempotency_key` made as a rerun of `job_id`, or None;
        reads only. Asked only when `job_id` is gone (one GetItem, then the job's): a client
        repeating its keyed rerun after the original's removal still gets its answer. Its request
        cannot be hashed without the original, so the job's `rerun_of` stands for it. Raises
        InvalidRequestError for a key that is no key."""
        if idempotency_key is None:
            return None
        record = self.store.submission_key(tenant, check_key(idempotency_key), now=int(self.clock().timestamp()))
        if record is None:
            return None
        made = self.store.get(record.job_id, tenant=tenant, mark_gone=True)
        return made if made is not None and made.rerun_of == job_id else None

    def _new_job(self, now: datetime, *, tenant: str, user: str, type: str, payload: Any, priority: Optional[str],
                 delay_seconds: int, run_at: Optional[datetime], scope: Optional[str], job_id: Optional[str],
                 parent_id: Optional[str] = None, rerun_of: Optional[str] = None) -> tuple[Job, int]:
        """A checked request as the queued job to store, and the seconds until it starts.
        Raises UnknownJobTypeError, InvalidPayloadError, InvalidRequestError,
        PayloadTooLargeError (no answer could carry the job)."""
        job_type = self.registry.get(type)
        model = job_type.parse_payload(payload, stored=rerun_of is not None)  # a rerun's: as its original stored it
        if priority is not None and priority not in PRIORITIES:  # POST /jobs's model checks it; ctx.spawn's comes here
            raise InvalidRequestError(f"priority must be high, normal or low, not {priority!r:.100}")
        start = start_time(now, delay_seconds, run_at)
        wait_s = math.ceil((start - now).total_seconds())
        held = wait_s > SQS_MAX_DELAY_S
        job = Job(
            id=job_id or new_job_id(),
            type=job_type.name,
            payload=job_type.stored_payload(model),
            tenant=tenant,
            user=user,
            scope=scope,
            parent_id=parent_id,
            rerun_of=rerun_of,
            priority=priority or job_type.priority,
            max_attempts=job_type.max_attempts,
            timeout_s=job_type.timeout_s,
            created_at=isoformat(now),
            not_before=isoformat(start),
            due_at=isoformat(start - timedelta(seconds=SQS_MAX_DELAY_S) if held
                             else self._claim_deadline(start, sent=1)),
            dispatches=0 if held else 1,
        )
        check_answerable(job.public())
        return job, wait_s

    def _send_first(self, job: Job, wait_s: int) -> None:
        """The stored job's first message, unless it is held for a start beyond SQS's delay.
        The record is what counts: a send that fails leaves it to the reconciler."""
        if wait_s > SQS_MAX_DELAY_S:
            return
        try:
            self.queue.send(start_message(job, 1), priority=job.priority, delay_seconds=max(0, wait_s))
        except QueueUnavailableError:
            pass  # stored with a due time: the reconciler sends the message then

    def _replayed(self, first: SubmissionKey, again: SubmissionKey) -> Job:
        """The job `first` made, answering a request under the same key (`again`); raises
        IdempotencyConflictError when `again` is another request: a key names one request. The
        same request as sent, or as the job takes it (when `first` keeps that hash: a record
        written before it was kept does not, and a version before it compares the first alone)."""
        same_as_taken = first.taken_hash is not None and first.taken_hash == again.taken_hash
        if first.request_hash != again.request_hash and not same_as_taken:
            raise IdempotencyConflictError.of()
        job = self.store.get(first.job_id, mark_gone=True)  # answered as GET /jobs/{id} shows it
        if job is None or job.tenant != first.tenant:  # removed after its retention, key still kept
            raise JobPurgedError.of(first.job_id, first.expires_at)
        self._send_unclaimed(job)
        return job

    def _send_unclaimed(self, job: Job) -> None:
        """Send `job`, answering a replay of its key, its first message again when it is still
        unclaimed REPLAY_RESEND_AFTER_S past its start with that message the only one counted:
        the request that made it may have died between its write and its send, and its client,
        answered nothing, repeats it. The job then starts now, not once the reconciler's
        dispatch grace ends (minutes). Once a job: a later resend is the reconciler's, on its
        schedule. A copy of a message that is in fact waiting (a backlog) costs one refused
        claim. Best effort, for the reconciler sends it all the same: a lost race (a worker
        claimed it meanwhile, a concurrent replay sent it), a store or queue that does not
        answer leave the replay answered as it would be without."""
        now = self.clock()
        if job.status != JobStatus.QUEUED or job.attempts or job.dispatches != 1 or job.not_before is None \
                or now < parse_time(job.not_before) + timedelta(seconds=REPLAY_RESEND_AFTER_S):
            return
        try:
            self._send_again(job, now, 0)
        except (StaleJobError, StoreUnavailableError, QueueUnavailableError):
            pass

    def spawn(
        self, parent: Job, index: int, *, type: str, payload: Any,
        priority: Optional[str] = None, scope: Optional[str] = None,
        admit: Optional[Callable[[str], None]] = None, listed: Optional[int] = None,
        answer_past: Optional[Callable[[int, int], Optional[int]]] = None, held: bool = False,
        untaken: Sequence[int] = (),
    ) -> Job:
        """Submit child number `index` of the running attempt of `parent` (same tenant and user,
        the parent's scope unless given) and list it in the parent's `children`, in one write
        (a worker dying between the two would leave a child its parent does not list).
        Spawning the same index again in the same attempt returns the child already there when
        it is the one asked for (its type, payload as stored, priority and scope), and raises
        ChildPlaceTakenError, naming it, when it is another request's; `held`: the spawn of this
        index before was not answered (StoreUnavailableError), so a child it made, still
        waiting for its first message, is sent it now, whichever request it is. `untaken`: the
        places of the attempt a later spawn passed over (ChildPlaceTakenError) whose children no
        spawn has taken on since; the first whose child is the one asked for is returned, made
        and sent nothing (its message went out when it was passed over), before `index` is
        looked at: a handler trying a spawn again after other spawns takes on the child its
        unanswered try made (one read a place, on an attempt with such places only). `admit` as
        for submit: a spawned job is admitted like a submitted one (what it raises reaches the
        handler). A `priority` or `scope` given is checked as a submitted one is (InvalidRequestError); the
        parent's is taken as it was accepted. Raises AttemptEndedError, writing and sending
        nothing, once that attempt is no longer the parent's running one (a worker that lost
        its lease and woke after the next attempt started, or after the parent ended), and
        JobCancelledError, the same way, once the parent's cancel was requested. A built-in
        (maintenance) type is as unknown to a handler as to POST /jobs (UnknownJobTypeError): its
        tasks reach every tenant's jobs. `listed`: how many children the parent may list already
        (default: its `children`); with MAX_CHILDREN of them, TooManyChildrenError, before the
        child is made. AnswerFullError, nothing made, when the parent's answer with the child's
        id would pass MAX_ANSWER_BYTES less SPAWN_ANSWER_ROOM_BYTES: `answer_past(bound, extra)`
        says whether the parent's answer with `extra` bytes more passes `bound` (its bytes, or
        None), as its attempt stands (the runner's reporter, which measures it in parts; default:
        `parent` measured whole). RecordFullError, nothing made, when the parent's record has no room to
        list it (DynamoDB's 400 KB). PayloadTooDeepError, nothing made, for a payload nesting more
        levels than a submitted one may (MAX_JSON_DEPTH less POST /jobs's envelope)."""
        self.registry.get_public(type)
        if nested_deeper_than(payload, MAX_JSON_DEPTH - 1):  # what POST /jobs's body parser refuses
            raise PayloadTooDeepError(f"{too_deep_message('payload', MAX_JSON_DEPTH - 1)}, as in a submitted job",
                                      details={"limit": MAX_JSON_DEPTH - 1})
        if scope is not None:
            check_name("scope", scope)
        request = {"type": type, "payload": payload, "priority": priority, "scope": scope}
        passed = self._passed_child(parent, untaken, request)
        if passed is not None:
            return passed
        child_id = child_job_id(parent.id, parent.attempts, index)
        existing = self.store.get(child_id, mark_gone=True)  # the child as recorded, whatever its objects
        if existing is not None:  # made by an earlier spawn of this place the store did not answer
            return self._placed_child(parent, existing, request, unsent=held)
        earlier = self._earlier_child(parent, index, **request)
        if earlier is not None:
            return earlier
        if (len(parent.children) if listed is None else listed) >= MAX_CHILDREN:
            raise TooManyChildrenError(
                f"job {parent.id} lists {MAX_CHILDREN} children, as many as a job may; "
                "spawn the rest from its children (a tree) or from a follow-up job",
                details={"limit": MAX_CHILDREN})
        _check_answer_room(parent, child_id, answer_past)
        child, wait_s = self._new_job(
            self.clock(), tenant=parent.tenant, user=parent.user, type=type, payload=payload,
            priority=parent.priority if priority is None else priority, delay_seconds=0, run_at=None,
            scope=scope if scope is not None else parent.scope, job_id=child_id, parent_id=parent.id,
        )
        if admit is not None:
            admit(parent.tenant)
        try:
            self.store.create_child(child, parent.attempts)
        except StaleJobError:  # created by a concurrent spawn of the same index
            existing = self.store.get(child_id, mark_gone=True)
            if existing is None:  # gone as soon as made: what is there is not known, as when unanswered
                raise StoreUnavailableError(f"could not read back child {child_id} of job {parent.id}") from None
            return self._placed_child(parent, existing, request, unsent=False)
        except RecordTooLargeError as exc:  # the handler's doing, as a retry would find it
            raise RecordFullError(
                f"job {parent.id}'s record has no room to list child {child_id}: DynamoDB's 400 KB "
                "item holds its payload, its progress (message and details) and its children; report a "
                "shorter progress message or smaller details before spawning, or spawn the rest from "
                "its children (a tree)") from exc
        self._send_first(child, wait_s)
        return child

    def _placed_child(self, parent: Job, existing: Job, request: dict[str, Any], *, unsent: bool) -> Job:
        """`existing`, the child already at a spawn's place in the running attempt of `parent`,
        listed on it, when it is the child `request` asks for (one whose payload object is gone
        by the rest: its record, the payload named in `gone`, is the answer). Raises
        ChildPlaceTakenError when it is another request's child (listed by the write that made
        it), and what add_child raises (AttemptEndedError, JobCancelledError). Either way its
        first message is sent when `unsent` (the spawn that made it sent none) and it still
        waits for it."""
        asked = self._asked_for(parent, existing, **request, payload_known="payload" not in existing.gone)
        if asked:
            self.store.add_child(parent.id, existing.id, parent.attempts)
        if unsent and existing.status == JobStatus.QUEUED and existing.attempts == 0:
            self._send_first(existing, 0)  # the job's child either way: it runs now, not once due
        if not asked:
            raise ChildPlaceTakenError(
                f"child {existing.id} of job {parent.id} is another request's: the spawn goes to the next place",
                child_id=existing.id)
        return existing

    def _passed_child(self, parent: Job, untaken: Sequence[int], request: dict[str, Any]) -> Optional[Job]:
        """The child at the first of the `untaken` places of the running attempt of `parent` (as
        Admission.spawn takes them) that `request` asks for, or None (nothing read when there are
        none). Listed on the parent by the write that made it, and sent its message by the spawn
        that passed it over: taken on as it stands, nothing written or sent."""
        for place in untaken:
            child = self.store.get(child_job_id(parent.id, parent.attempts, place), mark_gone=True)
            if child is not None and self._asked_for(parent, child, **request,
                                                     payload_known="payload" not in child.gone):
                return child
        return None

    def _earlier_child(self, parent: Job, index: int, *, type: str, payload: Any, priority: Optional[str],
                       scope: Optional[str]) -> Optional[Job]:
        """The child an earlier attempt of `parent` spawned as number `index` (the latest that
        listed one), when it is the child asked for now (its type, payload as stored, priority
        and scope) and has not failed or been canceled: a retried parent takes it on instead of
        running its work twice. None otherwise, and on a first attempt (nothing read)."""
        if parent.attempts <= 1:
            return None
        listed = set(parent.children)
        for attempt in range(parent.attempts - 1, 0, -1):
            child_id = child_job_id(parent.id, attempt, index)
            if child_id in listed:
                break
        else:
            return None
        earlier = self.store.get(child_id, mark_gone=True)
        if earlier is None or earlier.status in (JobStatus.FAILED, JobStatus.CANCELED) or earlier.gone:
            return None
        return earlier if self._asked_for(parent, earlier, type=type, payload=payload, priority=priority,
                                          scope=scope) else None

    def _asked_for(self, parent: Job, child: Job, *, type: str, payload: Any, priority: Optional[str],
                   scope: Optional[str], payload_known: bool = True) -> bool:
        """Whether `child` of `parent` is the child a spawn of `type`, `payload`, `priority` and
        `scope` asks for: its type, payload as stored (unless not `payload_known`: its object is
        gone), priority and scope (the parent's, where not given). Raises InvalidPayloadError for
        a payload the type does not take."""
        job_type = self.registry.get(type)
        stored = job_type.stored_payload(job_type.parse_payload(payload))
        asked = (job_type.name, parent.priority if priority is None else priority,
                 parent.scope if scope is None else scope)
        return (child.type, child.priority, child.scope) == asked and (not payload_known or child.payload == stored)


_SUBMIT = inspect.signature(Admission.submit)
