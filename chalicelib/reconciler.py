"""The reconciler: one bounded, idempotent pass over what could leave a job stuck.

A scheduled function runs a pass every few minutes (stack parameter `ReconcilerSchedule`).
Each pass, in this order:

1. dead letters: a message on a jobs dead-letter queue that should start a queued or retrying
   job's next attempt means nothing will run that job any more: it fails `dead_lettered` (and
   its event goes out). The message stays on the queue for operators and redrive. A message
   that is the letter a failed job still owes (SQS moved it there itself after the receive
   that failed the job) clears the job's mark: it is not parked a second time. A letter whose
   job no longer exists (removed by retention) is deleted (`orphaned_letter_deleted`). The letters
   a pass reads are held hidden until it has decided on them, so a pass started beside it reads
   others: a letter is deleted, and counted, by one pass.
2. due jobs, from the sparse by_due index (never a Scan), earliest first, page after page until
   none is left or RECONCILE_DUE_BUDGET_S is spent (the rest stays due): a queued or retrying
   job no worker claimed by its due time gets its message again (lost, purged or stuck
   messages; a job held for a start beyond SQS's 15-minute delay is released the same way);
   a running attempt past its lease ends `worker_lost` and is retried or failed as usual;
   a job whose next attempt was sent `max_dispatches` times with none claimed fails
   `undeliverable` (the bound that holds whatever the dead-letter queues hold: step 1 reads
   only their oldest letters), unless its queue still holds a line its messages may be
   waiting in (`backlogged`: looked at again in an hour, for at most the queue's retention);
   a job is not sent again while its queue holds messages and none in flight, received by no
   worker (`unconsumed`: its consumption paused, its message waiting there);
   a failed job still owing its dead letter OWED_LETTER_WAIT_S after it failed (the attempt's
   message, which parks it, never came back) has it parked (`owed_letter_parked`) by the pass
   whose conditional write took the job first, before the send (a pass that ends between the
   two leaves it owed, due again RECONCILE_RETRY_S later).
3. failed stream batches: a batch of the jobs table's stream that the change-stream function
   gave up on is read back from the stream and counted and published again, so its status
   events still reach subscribers and its changes are still counted (events/replay.py); a
   record parked there whole is published from its message, or, once an operator gave it up
   while it was hidden, deleted unpublished (`stream_record_dropped`). The batches a pass takes
   stay hidden until its invocation ends, so a pass started beside it takes none of them.

A pass keeps to its invocation's time: once less than RECONCILE_PASS_MARGIN_S is left it takes
nothing more, and its due step takes nothing more once it spent RECONCILE_DUE_BUDGET_S (both
counted `out_of_time`), so it ends and reports, and the stream batches get their turn. The time
left is looked at between letters, jobs and batches, and, by the scheduled function that runs the
pass (AwsClients.sending_while), before each AWS request: none is started with less than the
margin left, so a job's action or a batch's replay cut there fails with its request unsent
(counted in `errors`; the job or batch stays for a later pass, a due job not put back). The
function's clients have the reconciler's limits (RECONCILER_AWS_*), under which one request takes
at most RECONCILE_REQUEST_WORST_S: one started just above the margin leaves the pass's record its
time, so the invocation ends inside its timeout, with its record and line.

The steps fail alone, and so does each queue, job or batch within them: a dead-letter queue that
cannot be read (the others' letters still count), or a job whose action raises, is counted in
`errors` and the rest of the pass goes on.
A due job whose action raised is put back RECONCILE_RETRY_S in the due index, so a job that
fails on every pass cannot hold the place of the jobs due after it. An action whose write landed
and only the send after it failed (a lease that ended with the dead-letter queue or the jobs
queue not answering) counts both: its outcome (`lease_expired`) and the error; the job, as
written, is due for the send, so it is not put back.

Every action is a conditional write against the status and version read, so overlapping passes,
workers and cancels cannot double anything; a duplicate message is harmless because claims are
idempotent. What a pass did is returned as counts for the logs, metrics and system stats."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from chalicelib.defaults import (
    DEAD_LETTERS_PER_PASS,
    DUE_PAGE,
    PEEK_HIDE_S,
    RECONCILE_DUE_BUDGET_S,
    RECONCILE_PASS_MARGIN_S,
    REPLAY_RETRY_BASE_S,
)
from chalicelib.domain.errors import StaleJobError, StreamBatchUnreadableError, describe_failure
from chalicelib.domain.job import PRIORITIES, Job, isoformat
from chalicelib.domain.status import JobStatus
from chalicelib.events.replay import DROPPED, UNREADABLE, StreamReplay
from chalicelib.lifecycle import JobLifecycle, ReconcileOutcome, SendAfterOutcomeError
from chalicelib.ports import DeadLetter, JobMessage, QueueOperations, job_message_of


@dataclass
class ReconcilePass:
    """What one pass did: counts per outcome (`released`, `redispatched`, `lease_expired`,
    `dead_lettered`, `owed_letter_found`, `owed_letter_parked`, `orphaned_letter_deleted`, `undeliverable`, `backlogged`,
    `unconsumed`, `raced`,
    `stream_batch_replayed`, `stream_batch_unreadable`, `stream_record_dropped`, `errors`, `out_of_time`), and
    the time it ran."""

    started_at: str
    counts: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "counts": dict(self.counts), "errors": self.errors[:10]}


class Reconciler:
    def __init__(
        self,
        lifecycle: JobLifecycle,
        dead_letters: Optional[QueueOperations],
        *,
        replay: Optional[StreamReplay] = None,
        due_page: int = DUE_PAGE,
        dead_letters_per_pass: int = DEAD_LETTERS_PER_PASS,
        observe: Optional[Callable[[str, dict[str, Any]], None]] = None,
    ) -> None:
        self._lifecycle = lifecycle
        self._dead_letters = dead_letters
        self._replay = replay
        self._due_page = due_page
        self._dead_letters_per_pass = dead_letters_per_pass
        self._observe = observe or (lambda message, extra: None)
        self._time_left_s: Optional[Callable[[], float]] = None
        self._due_until_s: Optional[float] = None  # the time left at which the due step stops
        self._hold_s = PEEK_HIDE_S  # how long the letters a pass reads are held hidden
        self._depths: Optional[dict[str, Optional[dict[str, int]]]] = None  # per priority, per pass (None: unread)

    def run_pass(self, time_left_s: Optional[Callable[[], float]] = None) -> ReconcilePass:
        """Every step, each on its own: a dead-letter queue that cannot be read (or a letter
        that breaks its step) must not stop the due jobs, which bound every other wait.
        `time_left_s`: the invocation's remaining seconds (None: no limit)."""
        result = ReconcilePass(started_at=isoformat(self._lifecycle.clock()))
        self._time_left_s = time_left_s
        left = time_left_s() if time_left_s is not None else None
        self._due_until_s = left - RECONCILE_DUE_BUDGET_S if left is not None else None
        # The letters the pass reads stay hidden, should it end before showing them again, for
        # the rest of its invocation (PEEK_HIDE_S without a limit).
        self._hold_s = PEEK_HIDE_S if left is None else max(1, math.ceil(left))
        self._depths = None
        if self._dead_letters is not None:
            self._step(result, "dead letters", lambda: self._fail_dead_lettered(result))
        self._step(result, "due jobs", lambda: self._reconcile_due(result))
        if self._replay is not None:
            self._step(result, "failed stream batches", lambda: self._replay_failed_batches(result))
        return result

    def _replay_failed_batches(self, result: ReconcilePass) -> None:
        # Hidden until this invocation ends: the batches are replayed one after another, and a
        # pass started beside this one (the schedule's next) must not take one this pass may still
        # replay, publishing its events a second time.
        hold_s = REPLAY_RETRY_BASE_S if self._time_left_s is None else math.ceil(self._time_left_s())
        for batch in self._replay.take(hold_s=hold_s):
            if self._out_of_time(result):
                return  # taken batches come back once this invocation is over
            where = f"stream batch {batch.first_sequence}-{batch.last_sequence}"
            try:
                outcome = self._replay.replay(batch)
            except StreamBatchUnreadableError as exc:  # its events are lost: said in every pass that sees it
                result.counts[UNREADABLE] += 1
                result.errors.append(f"{where}: {describe_failure(exc)}")
                self._observe("stream batch unreadable", {"batch": where, "error": describe_failure(exc)})
                continue
            except Exception as exc:  # noqa: BLE001 - held for a later pass; one batch never stops the rest
                self._failed(result, where, exc, "stream batch replay failed", {"batch": where})
                continue
            result.counts[outcome] += 1
            if outcome == DROPPED:  # an operator's DELETE, made while the reconciler held it hidden
                self._observe("parked stream record dropped: deleted unpublished",
                              {"batch": where, "message_id": batch.message_id})
            else:
                self._observe("stream batch replayed", {"batch": where, "condition": batch.condition})

    def _reconcile_due(self, result: ReconcilePass) -> None:
        """Every job due by the pass's start, earliest first, page after page: a job acted on
        leaves the pages still to come (its due time moves past `now`), and one that raced or
        failed is passed by through the cursor, never read twice."""
        now = isoformat(self._lifecycle.clock())
        after: Optional[str] = None
        while True:
            if self._out_of_time(result, due=True):
                return
            page = self._lifecycle.store.due(now, self._due_page, after)
            for job in page.jobs:
                if self._out_of_time(result, due=True):
                    return
                if not self._act(result, job, _attempt_of(job), lambda job=job: self._lifecycle.reconcile(
                        job, waiting=lambda priority: self._waiting(result, priority),
                        unconsumed=lambda priority: self._unconsumed(result, priority))):
                    if self._out_of_time(result):  # a request cut unsent, as a put-back would be
                        return
                    self._put_back(result, job)
            if page.cursor is None:
                return
            after = page.cursor

    def _waiting(self, result: ReconcilePass, priority: str) -> bool:
        """Whether `priority`'s queue holds messages no worker has received yet, read once a
        pass and only when a job reached its dispatch bound or is to be sent again. Unknown (no
        queue operations given: False; the depths unreadable: True, counted in errors) decides
        as the safer side for the job: a job is not failed on a guess."""
        if self._dead_letters is None:
            return False
        depth = self._depth(result, priority)
        return depth is None or depth.get("visible", 0) > 0

    def _unconsumed(self, result: ReconcilePass, priority: str) -> bool:
        """Whether `priority`'s queue holds messages and none in flight: no worker receives it
        (its event source mapping is disabled: its consumption paused). Unknown: False, the job's
        message is sent again as it would be."""
        depth = self._depth(result, priority) if self._dead_letters is not None else None
        return depth is not None and depth.get("visible", 0) > 0 and depth.get("in_flight", 0) == 0

    def _depth(self, result: ReconcilePass, priority: str) -> Optional[dict[str, int]]:
        """`priority`'s queue depths, read once a pass; None when they could not be read (counted
        in errors once)."""
        if self._depths is None:
            self._depths = {}
        if priority not in self._depths:
            try:
                self._depths[priority] = self._dead_letters.queue_depth(priority)
            except Exception as exc:  # noqa: BLE001 - the job is looked at again later
                self._failed(result, "queue depths", exc, "reconciler could not read queue depths",
                             {"priority": priority})
                self._depths[priority] = None
        return self._depths[priority]

    def _put_back(self, result: ReconcilePass, job: Job) -> None:
        try:
            self._lifecycle.put_back(job)
        except StaleJobError:
            pass  # the failed action moved the job itself (a resend's due time written before its send)
        except Exception as exc:  # noqa: BLE001 - the job stays where it is; the next pass tries again
            self._failed(result, job.id, exc, "reconcile put-back failed",
                         {"job_id": job.id, "attempt": _attempt_of(job)})

    def _out_of_time(self, result: ReconcilePass, *, due: bool = False) -> bool:
        """True once the invocation has less than RECONCILE_PASS_MARGIN_S left or, for the due
        step (`due`), once it spent RECONCILE_DUE_BUDGET_S: what is left waits for the next pass."""
        if self._time_left_s is None:
            return False
        left = self._time_left_s()
        if left >= RECONCILE_PASS_MARGIN_S and not (due and left <= self._due_until_s):
            return False
        result.counts["out_of_time"] = 1
        return True

    def _step(self, result: ReconcilePass, name: str, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - counted and logged; the pass goes on
            self._failed(result, name, exc, "reconciler step failed", {"step": name})

    def _failed(self, result: ReconcilePass, where: str, exc: Exception, message: str,
                extra: dict[str, Any]) -> None:
        """A step or a job's action that raised: one more error in the pass, said where."""
        result.counts["errors"] += 1
        result.errors.append(f"{where}: {describe_failure(exc)}")
        self._observe(message, {**extra, "error": describe_failure(exc)})

    def _fail_dead_lettered(self, result: ReconcilePass) -> None:
        # The letters are held hidden while the pass decides on them: a pass started beside this
        # one reads others, so a letter of a removed job is deleted, and counted, by one pass.
        held = self._peek_all(result)
        deleted: set[str] = set()
        try:
            self._act_on_letters(result, held, deleted)
        finally:
            self._show_again(result, [(p, letter) for p, letter in held if letter.message_id not in deleted])

    def _show_again(self, result: ReconcilePass, letters: list[tuple[str, DeadLetter]]) -> None:
        """Show the letters the pass held and did not delete: operators list and redrive them."""
        for priority, shown in _by_priority(letters).items():
            try:
                self._dead_letters.show_dead_letters(priority, shown)
            except Exception as exc:  # noqa: BLE001 - they show again when their hold ends
                self._failed(result, f"dead letters ({priority})", exc,
                             "reconciler could not show the letters it read again", {"priority": priority})

    def _act_on_letters(self, result: ReconcilePass, held: list[tuple[str, DeadLetter]], deleted: set[str]) -> None:
        messages: dict[str, JobMessage] = {}
        lettered: list[tuple[str, DeadLetter, str]] = []  # (priority, letter, its job's id)
        for priority, letter in held:
            message = _job_message(letter)
            if message is not None:
                messages.setdefault(f"{message.job_id}:{message.attempt}", message)
                lettered.append((priority, letter, message.job_id))
        if not messages:
            return
        jobs = self._lifecycle.store.get_many({m.job_id for m in messages.values()})
        removed = self._removed(result, {job_id for _, _, job_id in lettered if job_id not in jobs})
        self._delete_orphans(result, [(p, letter) for p, letter, job_id in lettered if job_id in removed], deleted)
        for message in messages.values():
            if self._out_of_time(result):
                return
            job = jobs.get(message.job_id)
            if job is None:
                continue
            if not job.status.is_terminal:
                self._act(result, job, message.attempt,
                          lambda job=job, m=message: self._lifecycle.fail_dead_lettered(job, m))
            elif job.owes_dead_letter(message.attempt):
                self._act(result, job, message.attempt,
                          lambda job=job, m=message: self._lifecycle.owed_letter_found(job, m))

    def _removed(self, result: ReconcilePass, job_ids: set[str]) -> set[str]:
        """Those of `job_ids` (left out of the pass's read of the letters' jobs) whose record is
        gone, each read on its own: a page leaves out a record this code cannot read too (a status
        a later version added, met during a rollback), and that job is still recorded. A record
        that cannot be read, a store that does not answer, or a pass out of time keeps the letter
        for a later pass."""
        removed = set()
        for job_id in job_ids:
            if self._out_of_time(result):
                break
            try:
                if self._lifecycle.store.get(job_id, fetch=(), mark_gone=False) is None:
                    removed.add(job_id)
            except Exception:  # noqa: BLE001 - not known to be removed: its letter stays
                continue
        return removed

    def _delete_orphans(self, result: ReconcilePass, orphans: list[tuple[str, DeadLetter]], deleted_ids: set[str]) -> None:
        """Delete the letters whose job no longer exists (retention removed it: a DLQ keeps a
        letter longer than the table keeps its job), once: no redrive can run it and no job
        record explains it, and left there it would be peeked every pass until the queue's
        retention ends, holding a place among the oldest letters a pass reads. `deleted_ids` gets
        the ids of the letters whose delete was asked (not shown again: one SQS refused shows
        again when its hold ends)."""
        for priority, letters in _by_priority(orphans).items():
            try:
                deleted = self._dead_letters.delete_dead_letters(priority, letters)
                deleted_ids.update(letter.message_id for letter in letters)
            except Exception as exc:  # noqa: BLE001 - peeked and deleted again next pass
                self._failed(result, f"dead letters ({priority})", exc,
                             "reconciler could not delete the letters of removed jobs", {"priority": priority})
                continue
            if deleted:
                result.counts["orphaned_letter_deleted"] += deleted
                self._observe("dead letters of removed jobs deleted",
                              {"priority": priority, "deleted": deleted,
                               "job_ids": sorted({str(letter.body.get("job_id")) for letter in letters})[:10]})

    def _peek_all(self, result: ReconcilePass) -> list[tuple[str, DeadLetter]]:
        """The oldest letters of every priority's DLQ with the priority each was read from, each
        queue read on its own: one that does not answer is an error of the pass, named by
        priority, and the others' letters still count. Each is held hidden until the step shows
        it again (or deletes it), so priorities that share one DLQ read different letters of it,
        each message once."""
        letters: dict[str, tuple[str, DeadLetter]] = {}
        for priority in PRIORITIES:
            try:
                peeked = self._dead_letters.peek_dead_letters(priority, self._dead_letters_per_pass,
                                                              hold_s=self._hold_s)
            except Exception as exc:  # noqa: BLE001 - read again next pass; the other DLQs go on
                self._failed(result, f"dead letters ({priority})", exc, "reconciler could not read a dead-letter queue",
                             {"priority": priority})
                continue
            for letter in peeked:
                letters[letter.message_id] = (priority, letter)
        return list(letters.values())

    def _act(self, result: ReconcilePass, job: Job, attempt: int, action: Callable[[], ReconcileOutcome]) -> bool:
        """Run one job's action on `attempt`; False when it raised (counted and said, with the
        job's tenant, type and the attempt; one job never stops the rest)."""
        said = {"job_id": job.id, "tenant": job.tenant, "job_type": job.type, "attempt": attempt}
        try:
            outcome = action()
        except StaleJobError:
            result.counts["raced"] += 1  # a worker or a cancel got there first: nothing to do
            return True
        except SendAfterOutcomeError as exc:  # the outcome stands; the job is due for the send that failed
            self._counted(result, exc.outcome, said)
            self._failed(result, job.id, exc.cause, "reconcile action's send failed", said)
            return True
        except Exception as exc:  # noqa: BLE001
            self._failed(result, job.id, exc, "reconcile action failed", said)
            return False
        self._counted(result, outcome, said)
        return True

    def _counted(self, result: ReconcilePass, outcome: ReconcileOutcome, said: dict[str, Any]) -> None:
        if outcome != ReconcileOutcome.SKIPPED:
            result.counts[outcome.value] += 1
            self._observe(f"job {outcome.value}", said)


def _attempt_of(job: Job) -> int:
    """The attempt a due job's action is about: the running one, else the one its message asks for."""
    return job.attempts if job.status == JobStatus.RUNNING else job.attempts + 1


def _by_priority(letters: list[tuple[str, DeadLetter]]) -> dict[str, list[DeadLetter]]:
    """(priority, letter) pairs as each priority's letters, in their order: one request a queue."""
    grouped: dict[str, list[DeadLetter]] = {}
    for priority, letter in letters:
        grouped.setdefault(priority, []).append(letter)
    return grouped


def _job_message(letter: DeadLetter) -> Optional[JobMessage]:
    try:
        return job_message_of(letter.body)
    except ValueError:
        return None  # not a job message; operators see it in GET /api/system/dlq
