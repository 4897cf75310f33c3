"""The reconciler over the in-memory adapters: nothing stays queued or running for good."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from chalicelib.adapters.memory import InMemoryFinishedJobs, InMemoryQueueOperations
from chalicelib.adapters.memory_blobs import InMemoryArtifactStore, InMemoryBlobStore
from chalicelib.domain.errors import (
    DeadLetterOwedError,
    DeadLetterUnavailableError,
    InvalidRequestError,
    StoreUnavailableError,
)
from chalicelib.domain.job import Job, JobErrorInfo, isoformat
from chalicelib.domain.status import JobStatus
from chalicelib.defaults import (
    DISPATCH_GRACE_S,
    JOBS_QUEUE_RETENTION_S,
    MAX_DISPATCH_BACKOFF_S,
    MAX_DISPATCHES,
    MAX_SCHEDULE_S,
    OWED_LETTER_WAIT_S,
    PEEK_HIDE_S,
    RECONCILE_PASS_MARGIN_S,
    RECONCILE_RETRY_S,
    SQS_MAX_DELAY_S,
)
from chalicelib.ports import JobMessage
from chalicelib.lifecycle import ClaimOutcome
from chalicelib.reconciler import Reconciler
from tests.unit.conftest import fail_owing_its_letter

STEPS = {"steps": 2, "step_ms": 0}


def unanswered(*args, **kwargs):
    """A store (or lifecycle) call the table did not answer."""
    raise StoreUnavailableError("the table did not answer")


@pytest.fixture
def reconciler(lifecycle, queue):
    return Reconciler(lifecycle, InMemoryQueueOperations(queue))


def removed_by_retention(store, *jobs):
    """The clean-up's purge of `jobs` (their records and objects), as retention removes them."""
    blobs = InMemoryBlobStore()
    finished = InMemoryFinishedJobs(store, InMemoryArtifactStore(blobs), blobs)
    for job in jobs:
        finished.purge(job.id)


def submit(lifecycle, **extra):
    return lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS, **extra)


def test_a_lost_message_is_sent_again_once_the_job_is_overdue(lifecycle, queue, clock, reconciler):
    job = submit(lifecycle, delay_seconds=15)
    queue.drain()  # the message is lost (a purge)
    clock.advance(15 + DISPATCH_GRACE_S - 1)
    assert reconciler.run_pass().counts == {}
    clock.advance(2)
    assert reconciler.run_pass().counts == {"redispatched": 1}
    assert queue.drain() == [JobMessage(job.id, 1)]
    assert reconciler.run_pass().counts == {}, "one resend per due time"
    clock.advance(2 * DISPATCH_GRACE_S)
    assert reconciler.run_pass().counts == {"redispatched": 1}, "the wait doubles after each resend"
    claim = lifecycle.claim(queue.drain()[0])
    assert claim.job.status == JobStatus.RUNNING
    assert reconciler.run_pass().counts == {}


def test_each_job_the_reconciler_acts_on_is_said_with_its_tenant_and_type(lifecycle, queue, clock):
    """An operator asked "why did tenant acme's job run twice" finds the rescue in the log by
    tenant and type, not only by an id they must already know."""
    lines = []
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue), observe=lambda m, extra: lines.append((m, extra)))
    job = submit(lifecycle)
    running = lifecycle.claim(queue.drain()[0]).job
    clock.advance(running.timeout_s + 31)
    assert reconciler.run_pass().counts == {"lease_expired": 1}
    assert lines == [("job lease_expired", {"job_id": job.id, "tenant": "acme", "job_type": "demo.steps", "attempt": 1})]


def test_each_job_line_of_the_reconciler_names_the_attempt_it_acted_on(lifecycle, queue, clock, store, monkeypatch):
    """A job's "lease_expired", "redispatched" and "dead_lettered" lines, and an action that
    failed, say which attempt: the running one for a lease, the one its message asks for else.
    Without it an operator reading a job's lines could not tell its second rescue from its first."""
    lines = []
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue), observe=lambda m, extra: lines.append((m, extra)))
    job = submit(lifecycle)
    running = lifecycle.claim(queue.drain()[0]).job
    clock.advance(running.timeout_s + 31)
    reconciler.run_pass()
    queue.drain()  # attempt 2's message is lost
    clock.advance(SQS_MAX_DELAY_S + DISPATCH_GRACE_S)
    reconciler.run_pass()
    queue.dead.append((queue.drain()[0], {}))  # and its resend is dead-lettered
    dead = submit(lifecycle)
    queue.dead.append((queue.drain()[0], {}))
    broken = submit(lifecycle)
    queue.drain()
    monkeypatch.setattr(lifecycle, "fail_dead_lettered", lambda job, message: (_ for _ in ()).throw(RuntimeError("x")))
    clock.advance(DISPATCH_GRACE_S + 1)
    reconciler.run_pass()
    said = {(m, e["job_id"]): e.get("attempt") for m, e in lines}
    assert said[("job lease_expired", job.id)] == 1
    assert said[("job redispatched", job.id)] == 2
    assert said[("reconcile action failed", dead.id)] == 1
    assert said[("reconcile action failed", job.id)] == 2
    assert said[("job redispatched", broken.id)] == 1


def test_a_claimed_job_is_left_alone_until_its_lease_ends(lifecycle, queue, clock, reconciler, store):
    job = submit(lifecycle)
    running = lifecycle.claim(queue.drain()[0]).job
    clock.advance(running.timeout_s + 29)
    assert reconciler.run_pass().counts == {}
    clock.advance(2)
    assert reconciler.run_pass().counts == {"lease_expired": 1}
    after = store.get(job.id, mark_gone=False)
    assert after.status == JobStatus.RETRYING and after.error.code == "worker_lost"
    assert [m.attempt for m in queue.drain()] == [2]


def test_a_lease_ended_while_the_queue_refused_the_next_attempt_counts_both_and_needs_no_put_back(
        lifecycle, queue, clock, reconciler, store, monkeypatch):
    """The pass's write (retrying, `worker_lost`) landed and the next attempt's message did not
    go: the lease did end, so the pass says so as well as the error, and the job, as written, is
    due for that message, so no put-back write is made."""
    job = submit(lifecycle)
    running = lifecycle.claim(queue.drain()[0]).job
    clock.advance(running.timeout_s + 31)
    monkeypatch.setattr(lifecycle, "put_back", lambda job: pytest.fail("put back a job that moved itself"))
    queue.fail_sends = True
    result = reconciler.run_pass()
    queue.fail_sends = False
    assert result.counts == {"lease_expired": 1, "errors": 1}
    assert result.errors and result.errors[0].startswith(job.id)
    waiting = store.get(job.id, mark_gone=False)
    assert waiting.status == JobStatus.RETRYING and waiting.error.code == "worker_lost" and waiting.due_at
    clock.advance(MAX_DISPATCH_BACKOFF_S + 1)
    assert reconciler.run_pass().counts == {"redispatched": 1}
    assert [m.attempt for m in queue.drain()] == [2]


def test_a_cancel_asked_of_a_job_whose_worker_died_ends_it_canceled_at_its_lease(lifecycle, queue, clock, reconciler,
                                                                                  store):
    """No worker is left to see the request: the attempt's lease ending is what ends the job, and
    as the user asked (canceled), not as a lost worker's attempt (retried, run again)."""
    job = submit(lifecycle)
    running = lifecycle.claim(queue.drain()[0]).job  # its worker dies here
    assert lifecycle.cancel("acme", job.id).status == JobStatus.RUNNING
    clock.advance(running.timeout_s + 31)
    assert reconciler.run_pass().counts == {"lease_expired": 1}
    after = store.get(job.id, mark_gone=False)
    assert after.status == JobStatus.CANCELED and after.error.code == "worker_lost"
    assert queue.drain() == [] and queue.dead == [], "no attempt more, and no letter: the job was not failed"
    assert reconciler.run_pass().counts == {}


def test_a_dead_letter_whose_job_no_longer_exists_is_deleted_once(lifecycle, queue, reconciler, store):
    """Retention removed the job (its record is kept fewer days than a DLQ keeps a letter): the
    letter can run nothing and tell nothing, so the first pass deletes it, rather than every
    pass peeking it until the queue's retention ends, holding a place among the oldest 50."""
    job = submit(lifecycle)
    failed = submit(lifecycle)
    for message in queue.drain():  # SQS's redrive policy parked both: no attempt ran
        queue.dead.append((message, {}))
    removed_by_retention(store, job)
    assert reconciler.run_pass().counts == {"dead_lettered": 1, "orphaned_letter_deleted": 1}
    assert [m.job_id for m, _ in queue.dead] == [failed.id], "the failed job's letter stays for operators"
    assert reconciler.run_pass().counts == {}


def test_the_letters_a_pass_read_show_again_once_it_decided_on_them(lifecycle, queue, store):
    """A pass holds the letters it reads hidden only while it decides on them: once it is done,
    the letter of the job it failed and a letter that names no job are listed again (operators
    list and redrive them), and only the removed job's letter, deleted, is gone."""
    failed, removed = submit(lifecycle), submit(lifecycle)
    for message in queue.drain():
        queue.dead.append((message, {}))
    queue.dead.append((_Raw({"detail": "from another system"}), {}))
    removed_by_retention(store, removed)
    operations = InMemoryQueueOperations(queue)
    assert Reconciler(lifecycle, operations).run_pass().counts == {"dead_lettered": 1, "orphaned_letter_deleted": 1}
    listed = operations.peek_dead_letters("normal", 10)
    assert [letter.body.get("job_id", letter.body.get("detail")) for letter in listed] == [
        failed.id, "from another system"]


class _UnshowableDeadLetters(InMemoryQueueOperations):
    def show_dead_letters(self, priority, letters):
        raise DeadLetterUnavailableError("could not show the letters again")


def test_letters_that_cannot_be_shown_again_are_an_error_of_the_pass_and_the_rest_goes_on(
        lifecycle, queue, clock, store):
    """SQS not answering the pass's "show them again" leaves the letters hidden until their hold
    ends: the pass counts it, named by priority, and its jobs are acted on all the same."""
    dead, stranded = submit(lifecycle), submit(lifecycle)
    queue.dead.append((queue.drain()[0], {}))
    clock.advance(DISPATCH_GRACE_S + 1)
    result = Reconciler(lifecycle, _UnshowableDeadLetters(queue)).run_pass()
    assert result.counts == {"dead_lettered": 1, "errors": 1, "redispatched": 1}
    assert result.errors == ["dead letters (normal): dlq_unavailable: could not show the letters again"]
    assert store.get(dead.id, mark_gone=False).error.code == "dead_lettered"
    assert store.get(stranded.id, mark_gone=False).dispatches == 2


def test_a_letter_whose_job_the_read_of_many_left_out_but_which_is_recorded_stays(lifecycle, queue, store,
                                                                                   monkeypatch):
    """The pass reads the letters' jobs together, and that read leaves out a record this code
    cannot read (a status a later version added, met during a rollback) as it leaves out a
    removed one: the job is read on its own before its letter is deleted, and, still recorded,
    its letter stays for operators and redrive."""
    job = submit(lifecycle)
    queue.dead.append((queue.drain()[0], {}))
    many = store.get_many
    monkeypatch.setattr(store, "get_many", lambda ids, **kw: {i: j for i, j in many(ids, **kw).items() if i != job.id})
    assert Reconciler(lifecycle, InMemoryQueueOperations(queue)).run_pass().counts == {}
    assert [m.job_id for m, _ in queue.dead] == [job.id]


def test_a_letter_whose_job_cannot_be_read_on_its_own_stays(lifecycle, queue, store, monkeypatch):
    """A job the read of many left out and whose own read the store did not answer is not known
    to be removed: its letter stays for operators and redrive, for a later pass to look at."""
    job = submit(lifecycle)
    queue.dead.append((queue.drain()[0], {}))
    monkeypatch.setattr(store, "get_many", lambda ids, **kw: {})
    monkeypatch.setattr(store, "get", unanswered)
    assert Reconciler(lifecycle, InMemoryQueueOperations(queue)).run_pass().counts == {}
    assert [m.job_id for m, _ in queue.dead] == [job.id]


def test_the_letters_a_pass_read_show_again_when_their_jobs_cannot_be_read(lifecycle, queue, store, monkeypatch):
    """A store that does not answer the read of the letters' jobs is an error of the pass, and
    the letters it held are listed again at once, not hidden from operators until the hold ends."""
    job = submit(lifecycle)
    queue.dead.append((queue.drain()[0], {}))
    monkeypatch.setattr(store, "get_many", unanswered)
    operations = InMemoryQueueOperations(queue)
    assert Reconciler(lifecycle, operations).run_pass().counts == {"errors": 1}
    assert [letter.body["job_id"] for letter in operations.peek_dead_letters("normal", 10)] == [job.id]


class _ShowRecording(InMemoryQueueOperations):
    def __init__(self, queue, shown, deletes=None):
        super().__init__(queue)
        self.shown, self.deletes = shown, deletes

    def show_dead_letters(self, priority, letters):
        self.shown.extend(letter.body["job_id"] for letter in letters)
        super().show_dead_letters(priority, letters)

    def delete_dead_letters(self, priority, letters):
        going = super().delete_dead_letters(priority, letters)
        return going if self.deletes is None else self.deletes


def test_the_letters_of_removed_jobs_deleted_are_said_and_not_shown_again(lifecycle, queue, store):
    """reliability.md: the `dead letters of removed jobs deleted` line names the priority, how
    many went and their jobs; a letter deleted is not made visible again (SQS has no such
    message any more), the others are."""
    lines = []
    kept, removed = submit(lifecycle), submit(lifecycle)
    for message in queue.drain():
        queue.dead.append((message, {}))
    removed_by_retention(store, removed)
    shown = []
    reconciler = Reconciler(lifecycle, _ShowRecording(queue, shown), observe=lambda m, extra: lines.append((m, extra)))
    assert reconciler.run_pass().counts == {"dead_lettered": 1, "orphaned_letter_deleted": 1}
    assert ("dead letters of removed jobs deleted",
            {"priority": "normal", "deleted": 1, "job_ids": [removed.id]}) in lines
    assert shown == [kept.id]


def test_the_line_of_many_removed_jobs_letters_deleted_names_ten_of_their_jobs(lifecycle, queue, store):
    """A pass deleting the letters of a dozen removed jobs says how many went and names ten of
    their jobs, the first by id: enough to look one up, and a line that stays one line however
    many letters a pass deletes."""
    lines = []
    jobs = [submit(lifecycle) for _ in range(12)]
    for message in queue.drain():
        queue.dead.append((message, {}))
    removed_by_retention(store, *jobs)
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue), observe=lambda m, extra: lines.append((m, extra)))
    assert reconciler.run_pass().counts == {"orphaned_letter_deleted": 12}
    assert ("dead letters of removed jobs deleted",
            {"priority": "normal", "deleted": 12, "job_ids": sorted(job.id for job in jobs)[:10]}) in lines


def test_a_pass_counts_and_says_only_the_letters_sqs_deleted(lifecycle, queue, store):
    """A letter received again since the pass read it (a redrive) stays where SQS refused its
    delete: a pass whose delete took none counts none and says no deletion."""
    lines = []
    removed = submit(lifecycle)
    queue.dead.append((queue.drain()[0], {}))
    removed_by_retention(store, removed)
    reconciler = Reconciler(lifecycle, _ShowRecording(queue, [], deletes=0),
                            observe=lambda m, extra: lines.append((m, extra)))
    assert reconciler.run_pass().counts == {}
    assert [m for m, _ in lines if m.startswith("dead letters")] == []


class _UndeletableDeadLetters(InMemoryQueueOperations):
    def delete_dead_letters(self, priority, letters):
        raise DeadLetterUnavailableError("could not delete from the dead-letter queue")


def test_letters_of_removed_jobs_that_cannot_be_deleted_do_not_stop_the_other_letters(lifecycle, queue, store):
    """The delete is an error of the pass, named by priority; the letter of a job still queued
    is acted on all the same, and the removed job's letter is deleted by a later pass."""
    removed = submit(lifecycle)
    queued = submit(lifecycle)
    for message in queue.drain():
        queue.dead.append((message, {}))
    removed_by_retention(store, removed)
    result = Reconciler(lifecycle, _UndeletableDeadLetters(queue)).run_pass()
    assert result.counts == {"errors": 1, "dead_lettered": 1}
    assert result.errors == ["dead letters (normal): dlq_unavailable: could not delete from the dead-letter queue"]
    assert store.get(queued.id, mark_gone=False).error.code == "dead_lettered"
    assert len(queue.dead) == 2


def test_a_pass_counts_and_says_as_many_letters_as_sqs_deleted_of_those_it_asked(lifecycle, queue, store):
    """Of two letters of removed jobs, SQS deleted one (the other received again since the
    pass read it): the pass counts one and its line says one went."""
    lines = []
    removed = [submit(lifecycle) for _ in range(2)]
    for message in queue.drain():
        queue.dead.append((message, {}))
    removed_by_retention(store, *removed)
    reconciler = Reconciler(lifecycle, _ShowRecording(queue, [], deletes=1),
                            observe=lambda m, extra: lines.append((m, extra)))
    assert reconciler.run_pass().counts == {"orphaned_letter_deleted": 1}
    assert [extra["deleted"] for m, extra in lines if m == "dead letters of removed jobs deleted"] == [1]


class _OneUndeletableDeadLetterQueue(InMemoryQueueOperations):
    def __init__(self, queue, undeletable: str) -> None:
        super().__init__(queue)
        self._undeletable = undeletable

    def delete_dead_letters(self, priority, letters):
        if priority == self._undeletable:
            raise DeadLetterUnavailableError("could not delete from the dead-letter queue")
        return super().delete_dead_letters(priority, letters)


@pytest.mark.parametrize("undeletable", ["high", "normal", "low"])
def test_one_dead_letter_queue_that_refuses_deletes_does_not_keep_the_others_letters_of_removed_jobs(
        lifecycle, queue, store, undeletable):
    """Each priority's letters of removed jobs are deleted on their own: the queue that refused
    is an error of the pass, named by priority, and the others' letters go all the same."""
    jobs = {priority: submit(lifecycle, priority=priority) for priority in ("high", "normal", "low")}
    for message in queue.drain():  # each priority's message parked on its own DLQ
        queue.dead_letter(message, priority=store.get(message.job_id, mark_gone=False).priority, reason={})
    removed_by_retention(store, *jobs.values())
    result = Reconciler(lifecycle, _OneUndeletableDeadLetterQueue(queue, undeletable)).run_pass()
    assert result.counts == {"orphaned_letter_deleted": 2, "errors": 1}
    assert result.errors == [f"dead letters ({undeletable}): dlq_unavailable: could not delete from the dead-letter queue"]
    assert [m.job_id for m, _ in queue.dead] == [jobs[undeletable].id]


def test_a_pass_out_of_time_acts_on_no_more_letters(lifecycle, queue, store):
    """The dead-letter step keeps to the invocation's time like the others: once less than
    RECONCILE_PASS_MARGIN_S is left it acts on no more letters (nor reads whether their jobs
    are gone); the next pass takes them."""
    jobs = [submit(lifecycle) for _ in range(2)]
    removed = [submit(lifecycle) for _ in range(2)]
    for message in queue.drain():
        queue.dead.append((message, {}))
    removed_by_retention(store, *removed)
    looks = [0]

    def time_left() -> float:  # the pass's start and the first removed job's read have the time
        looks[0] += 1
        return 60.0 if looks[0] <= 2 else RECONCILE_PASS_MARGIN_S - 1

    result = Reconciler(lifecycle, InMemoryQueueOperations(queue)).run_pass(time_left_s=time_left)
    assert result.counts == {"orphaned_letter_deleted": 1, "out_of_time": 1}
    left = [60.0]

    def observe(message, extra) -> None:  # the first letter acted on spends the time
        if message == "job dead_lettered":
            left[0] = RECONCILE_PASS_MARGIN_S - 1

    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue), observe=observe)
    assert reconciler.run_pass(time_left_s=lambda: left[0]).counts == {"orphaned_letter_deleted": 1,
                                                                       "dead_lettered": 1, "out_of_time": 1}
    assert sorted(store.get(j.id, mark_gone=False).status for j in jobs) == [JobStatus.FAILED, JobStatus.QUEUED]
    assert Reconciler(lifecycle, InMemoryQueueOperations(queue)).run_pass().counts == {"dead_lettered": 1}


class _HoldRecording(InMemoryQueueOperations):
    def __init__(self, queue, holds):
        super().__init__(queue)
        self.holds = holds

    def peek_dead_letters(self, priority, limit, hold_s=0):
        self.holds.append(hold_s)
        return super().peek_dead_letters(priority, limit, hold_s=hold_s)


@pytest.mark.parametrize("left, held", [(42.3, 43), (0.0, 1), (None, PEEK_HIDE_S)])
def test_the_letters_a_pass_reads_are_hidden_for_the_rest_of_its_invocation(lifecycle, queue, left, held):
    """A pass holds the letters it reads hidden, so a pass started beside it reads others; should
    it die before showing them again, they show again once its invocation is over (its time
    left, rounded up), never later, and never at once (a hold of 0 hides nothing). A pass with
    no time limit holds them PEEK_HIDE_S."""
    holds = []
    reconciler = Reconciler(lifecycle, _HoldRecording(queue, holds))
    reconciler.run_pass(time_left_s=None if left is None else (lambda: left))
    assert holds == [held] * 3


def test_a_job_another_writer_moved_first_counts_one_race_and_is_left_as_it_is(lifecycle, queue, clock, store,
                                                                              monkeypatch):
    """A cancel lands between the pass's read of the due index and its action: the action's
    conditional write is refused, counted `raced` once, and the canceled job is neither sent
    again nor put back."""
    job = submit(lifecycle)
    queue.drain()
    clock.advance(DISPATCH_GRACE_S + 1)
    reconcile = lifecycle.reconcile

    def canceled_first(job, **options):
        lifecycle.cancel("acme", job.id)
        return reconcile(job, **options)

    monkeypatch.setattr(lifecycle, "reconcile", canceled_first)
    monkeypatch.setattr(lifecycle, "put_back", lambda job: pytest.fail("put back a job another writer moved"))
    assert Reconciler(lifecycle, None).run_pass().counts == {"raced": 1}
    canceled = store.get(job.id, mark_gone=False)
    assert canceled.status == JobStatus.CANCELED and canceled.due_at is None and queue.sent == []


def test_a_dead_lettered_message_fails_its_queued_job(lifecycle, queue, reconciler, store):
    job = submit(lifecycle)
    other = submit(lifecycle)
    queue.dead.append((queue.drain()[0], {}))  # SQS's redrive policy parked it: no attempt ran
    result = reconciler.run_pass()
    assert result.counts == {"dead_lettered": 1}
    failed = store.get(job.id, mark_gone=False)
    assert failed.status == JobStatus.FAILED and failed.error.code == "dead_lettered"
    assert store.get(other.id, mark_gone=False).status == JobStatus.QUEUED
    assert reconciler.run_pass().counts == {}, "a failed job is not failed again"


def test_an_owed_letter_sqs_moved_itself_is_found_and_not_parked_again(lifecycle, queue, reconciler, store):
    """The delivery that failed the job was the queue's last before its redrive policy: the
    dead-letter queue did not take the letter, so the job owes it, and SQS then moved the
    attempt's message to the DLQ itself (no reason attribute). The pass that finds it there
    clears the mark: a redrive of that message is acknowledged, where the claim used to park
    it a second time, and GET /api/system/dlq showed it again after every redrive."""
    job = submit(lifecycle)
    fail_owing_its_letter(lifecycle, queue)
    assert store.get(job.id, mark_gone=False).dead_letter_owed == 1
    queue.dead.append((JobMessage(job.id, 1), {}))  # SQS's redrive policy moved it: its 10th receive failed
    assert reconciler.run_pass().counts == {"owed_letter_found": 1}
    stored = store.get(job.id, mark_gone=False)
    assert stored.dead_letter_owed is None and stored.status == JobStatus.FAILED
    assert reconciler.run_pass().counts == {}, "found once"
    assert InMemoryQueueOperations(queue).redrive("normal", 10) == {"moved": 1, "failed": 0}
    assert lifecycle.claim(queue.drain()[0]).outcome == ClaimOutcome.SKIP
    assert queue.dead == [], "the redriven letter is acknowledged, not parked again"


def owing_its_second_attempts_letter(lifecycle, queue, clock) -> Job:
    """A job whose first attempt failed to be retried and whose second failed for good while the
    dead-letter queue did not answer: failed, owing attempt 2's letter."""
    job = submit(lifecycle)
    running = lifecycle.claim(queue.drain()[0]).job
    lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="x"), retryable=True)
    clock.advance(900)
    running = lifecycle.claim(JobMessage(job.id, 2)).job
    queue.fail_sends = True
    with pytest.raises(DeadLetterOwedError):
        lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="x"), retryable=False)
    queue.fail_sends = False
    return job


def test_a_letter_of_another_attempt_does_not_settle_what_a_failed_job_owes(lifecycle, queue, reconciler, store, clock):
    job = owing_its_second_attempts_letter(lifecycle, queue, clock)
    queue.dead.append((JobMessage(job.id, 1), {}))  # a duplicate of attempt 1's message
    assert reconciler.run_pass().counts == {}
    assert store.get(job.id, mark_gone=False).dead_letter_owed == 2


def test_an_owed_letter_read_beside_a_letter_of_an_earlier_attempt_is_found_and_said_with_its_attempt(
        lifecycle, queue, store, clock):
    """Each attempt's letter is decided on its own: an older attempt's letter read first in the
    same pass does not hide the one the failed job owes, and the line names the attempt settled."""
    lines = []
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue), observe=lambda m, extra: lines.append((m, extra)))
    job = owing_its_second_attempts_letter(lifecycle, queue, clock)
    queue.dead.append((JobMessage(job.id, 1), {}))  # a duplicate of attempt 1's message
    queue.dead.append((JobMessage(job.id, 2), {}))  # the owed one, moved there by SQS itself
    assert reconciler.run_pass().counts == {"owed_letter_found": 1}
    assert store.get(job.id, mark_gone=False).dead_letter_owed is None
    assert ("job owed_letter_found",
            {"job_id": job.id, "tenant": "acme", "job_type": "demo.steps", "attempt": 2}) in lines


def test_a_dead_letter_of_an_earlier_attempt_does_not_fail_the_retry(lifecycle, queue, reconciler, store, clock):
    from chalicelib.domain.job import JobErrorInfo

    job = submit(lifecycle)
    running = lifecycle.claim(queue.drain()[0]).job
    lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="x"), retryable=True)
    queue.dead.append((JobMessage(job.id, 1), {}))
    assert reconciler.run_pass().counts == {}
    assert store.get(job.id, mark_gone=False).status == JobStatus.RETRYING


def test_a_long_schedule_is_held_and_released_within_sqs_delay(lifecycle, queue, clock, reconciler, store):
    job = submit(lifecycle, delay_seconds=3600)
    assert queue.sent == [] and job.not_before == isoformat(clock.now + timedelta(seconds=3600))
    clock.advance(3600 - SQS_MAX_DELAY_S - 1)
    assert reconciler.run_pass().counts == {}
    clock.advance(61)
    assert reconciler.run_pass().counts == {"released": 1}
    (message, _, delay), = queue.sent
    assert message == JobMessage(job.id, 1) and delay == SQS_MAX_DELAY_S - 60
    queue.drain()
    early = lifecycle.claim(JobMessage(job.id, 1))
    assert early.outcome.value == "defer" and early.retry_after_s == SQS_MAX_DELAY_S - 60


def test_a_claim_is_awaited_one_grace_after_the_release_and_the_first_resend_then_twice_as_long_each_time(
        lifecycle, queue, clock, reconciler, store):
    """docs/reliability.md: a job's message not claimed within DispatchGraceSeconds of its start
    is sent again, the same again after the first resend, then doubling. A held job released at
    its due time goes out with SQS's whole delay, and its claim is awaited from its start."""
    job = submit(lifecycle, delay_seconds=SQS_MAX_DELAY_S + 60)
    clock.advance(60)  # exactly its due time: its start is SQS_MAX_DELAY_S away
    assert reconciler.run_pass().counts == {"released": 1}
    (message, _, delay), = queue.sent
    assert message == JobMessage(job.id, 1) and delay == SQS_MAX_DELAY_S
    start = _parse(job.not_before)
    waits = [(_parse(store.get(job.id, mark_gone=False).due_at) - start).total_seconds()]
    for _ in range(3):
        queue.drain()  # lost
        clock.advance((_parse(store.get(job.id, mark_gone=False).due_at) - clock.now).total_seconds())
        assert reconciler.run_pass().counts == {"redispatched": 1}
        waits.append((_parse(store.get(job.id, mark_gone=False).due_at) - clock.now).total_seconds())
    assert waits == [DISPATCH_GRACE_S, DISPATCH_GRACE_S, 2 * DISPATCH_GRACE_S, 4 * DISPATCH_GRACE_S]


def test_a_held_job_can_be_canceled_and_then_never_runs(lifecycle, queue, clock, reconciler, store):
    job = submit(lifecycle, run_at=clock.now + timedelta(days=3))
    assert lifecycle.cancel("acme", job.id).status == JobStatus.CANCELED
    clock.advance(4 * 86400)
    assert reconciler.run_pass().counts == {} and queue.sent == []
    assert store.due(isoformat(clock.now), 10).jobs == []


def test_schedules_are_bounded(lifecycle, clock):
    with pytest.raises(InvalidRequestError):
        submit(lifecycle, delay_seconds=MAX_SCHEDULE_S + 1)
    with pytest.raises(InvalidRequestError):
        submit(lifecycle, delay_seconds=5, run_at=clock.now)
    past = submit(lifecycle, run_at=clock.now - timedelta(hours=1))
    assert past.not_before == isoformat(clock.now)


def test_a_pass_takes_the_earliest_first_page_after_page(lifecycle, queue, clock):
    jobs = [submit(lifecycle) for _ in range(5)]
    queue.drain()
    clock.advance(DISPATCH_GRACE_S + 1)
    result = Reconciler(lifecycle, None, due_page=2).run_pass()
    assert result.counts == {"redispatched": 5}
    # all were due at the same time: the index orders them by id after the due time
    assert [m.job_id for m in queue.drain()] == sorted(j.id for j in jobs)
    assert Reconciler(lifecycle, None, due_page=2).run_pass().counts == {}


class _UnreadableDeadLetters(InMemoryQueueOperations):
    def __init__(self, queue, error: Exception) -> None:
        super().__init__(queue)
        self._error = error

    def peek_dead_letters(self, priority, limit, hold_s=0):
        raise self._error


@pytest.mark.parametrize("error", [DeadLetterUnavailableError("could not read the normal dead-letter queue"),
                                   TimeoutError("read timed out")])
def test_dead_letters_that_cannot_be_read_do_not_stop_the_due_jobs(lifecycle, queue, clock, store, error):
    job = submit(lifecycle)
    lifecycle.claim(queue.drain()[0])  # its worker then dies
    clock.advance(3600)
    result = Reconciler(lifecycle, _UnreadableDeadLetters(queue, error)).run_pass()
    assert result.counts == {"errors": 3, "lease_expired": 1}, "each priority's DLQ is an error of its own"
    assert [e.split(":")[0] for e in result.errors] == [f"dead letters ({p})" for p in ("high", "normal", "low")]
    assert store.get(job.id, mark_gone=False).error.code == "worker_lost"


class _OneUnreadableDeadLetterQueue(InMemoryQueueOperations):
    def __init__(self, queue, unreadable: str, error: Exception) -> None:
        super().__init__(queue)
        self._unreadable = unreadable
        self._error = error

    def peek_dead_letters(self, priority, limit, hold_s=0):
        if priority == self._unreadable:
            raise self._error
        return super().peek_dead_letters(priority, limit, hold_s)


@pytest.mark.parametrize("unreadable", ["high", "normal", "low"])
@pytest.mark.parametrize("error", [DeadLetterUnavailableError("could not read the dead-letter queue"),
                                   TimeoutError("read timed out")])
def test_one_dead_letter_queue_that_cannot_be_read_does_not_hide_the_others_letters(
        lifecycle, queue, store, unreadable, error):
    jobs = {priority: submit(lifecycle, priority=priority) for priority in ("high", "normal", "low")}
    for message in queue.drain():  # each priority's message parked on its own DLQ
        queue.dead_letter(message, priority=store.get(message.job_id, mark_gone=False).priority, reason={})
    lines = []
    result = Reconciler(lifecycle, _OneUnreadableDeadLetterQueue(queue, unreadable, error),
                        observe=lambda m, extra: lines.append((m, extra))).run_pass()
    assert result.counts == {"dead_lettered": 2, "errors": 1}
    assert result.errors[0].startswith(f"dead letters ({unreadable}): ")
    assert [extra["priority"] for m, extra in lines if m == "reconciler could not read a dead-letter queue"] == [
        unreadable], "said, naming the queue's priority"
    for priority, job in jobs.items():
        expected = JobStatus.QUEUED if priority == unreadable else JobStatus.FAILED
        assert store.get(job.id, mark_gone=False).status == expected, priority


@pytest.mark.parametrize("body", [{"job_id": "a#b", "attempt": 1}, {"job_id": "", "attempt": 1},
                                  {"job_id": "x" * 200}, {"job_id": "ok", "attempt": 0}, {"job_id": "ok", "attempt": "x"},
                                  {"detail": "from another system"}])
def test_a_dead_letter_that_names_no_job_is_left_to_operators(lifecycle, queue, clock, reconciler, store, body):
    stranded = submit(lifecycle)
    queue.drain()
    queue.dead.append((_Raw(body), {}))
    clock.advance(DISPATCH_GRACE_S + 1)
    assert reconciler.run_pass().counts == {"redispatched": 1}
    assert store.get(stranded.id, mark_gone=False).dispatches == 2


class _Raw:
    """A message body as someone other than jobpipe wrote it."""

    def __init__(self, body: dict) -> None:
        self._body = body

    def to_body(self) -> dict:
        return dict(self._body)


def test_one_job_that_breaks_its_action_does_not_stop_the_others(lifecycle, queue, clock, store, monkeypatch):
    jobs = [submit(lifecycle) for _ in range(3)]
    queue.drain()
    clock.advance(DISPATCH_GRACE_S + 1)
    reconcile = lifecycle.reconcile

    def breaks_on_the_first(job, **options):
        if job.id == min(j.id for j in jobs):
            raise KeyError("a bug, not a store error")
        return reconcile(job, **options)

    monkeypatch.setattr(lifecycle, "reconcile", breaks_on_the_first)
    result = Reconciler(lifecycle, None).run_pass()
    assert result.counts == {"errors": 1, "redispatched": 2}
    assert result.errors == [f"{min(j.id for j in jobs)}: KeyError: 'a bug, not a store error'"]


@pytest.mark.parametrize("step, read", [("dead letters", "get_many"), ("due jobs", "due")])
def test_a_step_the_store_broke_is_named_with_its_error_and_the_other_step_goes_on(lifecycle, queue, clock, store,
                                                                                    monkeypatch, step, read):
    """The store refusing the read a step starts with (the letters' jobs, the due index) ends
    that step only: the pass's errors and its `reconciler step failed` line name the step and
    what failed, so an operator knows which of the reconciler's guarantees waited this pass,
    and the other step still acts."""
    lines = []
    for _ in range(2):
        submit(lifecycle)
    queue.dead.append((queue.drain()[0], {}))  # the first job's message dead-lettered, the other's lost
    clock.advance(DISPATCH_GRACE_S + 1)
    monkeypatch.setattr(store, read, unanswered)
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue), observe=lambda m, extra: lines.append((m, extra)))
    result = reconciler.run_pass()
    assert result.errors == [f"{step}: store_unavailable: the table did not answer"]
    assert ("reconciler step failed",
            {"step": step, "error": "store_unavailable: the table did not answer"}) in lines
    assert result.counts == ({"errors": 1, "redispatched": 2} if step == "dead letters"
                             else {"errors": 1, "dead_lettered": 1})


def test_what_a_pass_answers_names_its_first_ten_errors_and_counts_them_all(lifecycle, queue, clock, monkeypatch):
    """The scheduled function answers the pass as a dict: every count, and the first ten errors
    (a pass with thousands failing must not answer, and log, each)."""
    jobs = [submit(lifecycle) for _ in range(12)]
    queue.drain()
    clock.advance(DISPATCH_GRACE_S + 1)

    def breaks(job, **options):
        raise KeyError(job.id)

    monkeypatch.setattr(lifecycle, "reconcile", breaks)
    answer = Reconciler(lifecycle, None).run_pass().as_dict()
    assert answer["counts"] == {"errors": 12}
    assert answer["errors"] == [f"{i}: KeyError: '{i}'" for i in sorted(j.id for j in jobs)[:10]]


def test_a_job_no_worker_ever_claims_fails_undeliverable_whatever_the_dead_letters_hold(lifecycle, queue, clock, store):
    """Each of its messages is dead-lettered where the reconciler does not look (behind older
    parked failures): the dispatch bound alone ends the wait, in about 20 hours."""
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue), dead_letters_per_pass=0)
    job = submit(lifecycle)
    sent = 0
    for _ in range(10_000):
        for message in queue.drain():
            queue.dead.append((message, {}))
            sent += 1
        if store.get(job.id, mark_gone=False).status.is_terminal:
            break
        reconciler.run_pass()
        clock.advance(60)
    final = store.get(job.id, mark_gone=False)
    assert final.status == JobStatus.FAILED and final.error.code == "undeliverable"
    assert sent == MAX_DISPATCHES and "after 24 messages" in final.error.message
    waited_h = (clock() - _parse(job.created_at)).total_seconds() / 3600
    assert 18 < waited_h < 22


def test_resends_the_queue_refused_are_not_counted_against_the_bound(lifecycle, queue, clock, store):
    """The jobs queue refuses SendMessage for a day (longer than the 24 resends' ~20 hours): no
    message went out, so none counts towards `max_dispatches`; the job is tried again each time
    its resend's wait ends (not doubled) and, once the queue answers, sent and run, not failed
    `undeliverable` for messages that were never sent."""
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue))
    job = submit(lifecycle)
    queue.drain()  # its first message lost
    queue.fail_sends = True
    for _ in range(24 * 12):
        clock.advance(RECONCILE_RETRY_S)
        reconciler.run_pass()
    stored = store.get(job.id, mark_gone=False)
    assert stored.status == JobStatus.QUEUED and stored.dispatches <= 1
    assert _parse(stored.due_at) <= clock() + timedelta(seconds=DISPATCH_GRACE_S)
    queue.fail_sends = False
    clock.advance(RECONCILE_RETRY_S)
    assert reconciler.run_pass().counts in ({"redispatched": 1}, {"released": 1})
    assert lifecycle.claim(queue.drain()[0]).job.status == JobStatus.RUNNING


def test_a_backlogged_job_is_resent_not_failed_before_the_bound(lifecycle, queue, clock, store):
    job = submit(lifecycle)
    reconciler = Reconciler(lifecycle, None)
    for _ in range(MAX_DISPATCHES - 2):  # every message still waiting somewhere in a deep queue
        clock.advance(MAX_DISPATCH_BACKOFF_S + 1)
        assert reconciler.run_pass().counts == {"redispatched": 1}
    assert lifecycle.claim(queue.drain()[0]).job.status == JobStatus.RUNNING


def test_the_bound_is_a_setting(store, queue, clock):
    from chalicelib.job_types import build_registry
    from chalicelib.lifecycle import JobLifecycle

    lifecycle = JobLifecycle(store, queue, build_registry(demo_types=True), clock=clock, max_dispatches=3)
    job = submit(lifecycle)
    reconciler = Reconciler(lifecycle, None)
    counts = []
    for _ in range(4):
        clock.advance(MAX_DISPATCH_BACKOFF_S + 1)
        counts.append(reconciler.run_pass().counts)
    assert counts == [{"redispatched": 1}, {"redispatched": 1}, {"undeliverable": 1}, {}]
    assert store.get(job.id, mark_gone=False).error.code == "undeliverable"


def _parse(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_failure_is_described_even_when_its_text_cannot_be_had():
    """A pass's error names the exception's type, its text cut to 200 characters, and survives an
    exception whose str() raises (as the worker's outcomes do)."""
    from chalicelib.reconciler import describe_failure

    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no text")

    assert describe_failure(Unprintable()) == "Unprintable"
    assert describe_failure(ValueError("x" * 500)) == "ValueError: " + "x" * 200
    assert describe_failure(InvalidRequestError("bad")) == "invalid_request: bad"


def test_one_tenants_thousand_due_jobs_do_not_hold_back_another_tenants_stranded_job(lifecycle, queue, clock, store):
    """A tenant's batch scheduled for one moment comes due all at once; a job of another tenant
    whose worker died, due just after, is ended in the same pass: a pass goes through the due
    index page after page, not only its first page."""
    batch = [submit(lifecycle, run_at=clock.now + timedelta(hours=1)).id for _ in range(1000)]
    due_s = 3600 - SQS_MAX_DELAY_S  # when the batch is released
    other = lifecycle.submit(tenant="globex", user="bob", type="demo.steps", payload=STEPS)
    queue.drain()
    clock.advance(due_s - other.timeout_s - 30 + 1)
    lifecycle.claim(JobMessage(other.id, 1))  # its lease ends a second after the batch is due
    clock.advance(other.timeout_s + 30 + 60)
    result = Reconciler(lifecycle, None).run_pass()
    assert result.counts == {"released": 1000, "lease_expired": 1}
    assert store.get(other.id, mark_gone=False).error.code == "worker_lost"
    assert all(store.get(i, mark_gone=False).dispatches == 1 for i in batch)
    assert Reconciler(lifecycle, None).run_pass().counts == {}


def test_a_job_waiting_in_a_backlog_longer_than_the_resends_is_not_failed_undeliverable(lifecycle, queue, clock,
                                                                                        store):
    """Jobs of five minutes behind a normal worker's five slots: a line of 1,200 takes 20
    hours. A job far back in it had MAX_DISPATCHES messages sent, every one still waiting in the
    line; it is not failed `undeliverable` while its queue holds messages no worker received
    yet, and runs when its turn comes."""
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue))
    job = submit(lifecycle)
    queue.in_flight["normal"] = 5  # the worker's five slots, busy with the jobs ahead of it
    counts: Counter = Counter()
    for _ in range(30 * 60):  # 30 hours: the line never empties, nothing is lost
        clock.advance(60)
        counts.update(reconciler.run_pass().counts)
    assert store.get(job.id, mark_gone=False).status == JobStatus.QUEUED, store.get(job.id, mark_gone=False).error
    assert counts["redispatched"] == MAX_DISPATCHES - 1 and counts["backlogged"] >= 5
    claim = lifecycle.claim(queue.drain()[0])
    assert claim.job.status == JobStatus.RUNNING


def test_a_job_is_not_kept_waiting_in_a_backlog_beyond_what_the_queue_retains(lifecycle, queue, clock, store):
    """SQS deletes a message 14 days after it was sent: a job whose last message is older than
    that cannot be in the line any more, however long the line is."""
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue))
    queue.in_flight["normal"] = 5  # the worker's slots, busy with the jobs ahead in the line
    job = submit(lifecycle)
    for _ in range(16 * 24):
        clock.advance(3600)
        reconciler.run_pass()
        if store.get(job.id, mark_gone=False).status.is_terminal:
            break
    failed = store.get(job.id, mark_gone=False)
    assert failed.status == JobStatus.FAILED and failed.error.code == "undeliverable"
    waited_days = (clock() - _parse(job.created_at)).total_seconds() / 86400
    assert 14 <= waited_days < 15


class _UnreadableDepths(InMemoryQueueOperations):
    def queue_depth(self, priority):
        raise DeadLetterUnavailableError("could not read queue attributes")


class _AnsweringReadsOnly(InMemoryQueueOperations):
    """Queues whose dead letters can be read and nothing more: not shown again, not deleted,
    and their depths not read."""

    def show_dead_letters(self, priority, letters):
        raise DeadLetterUnavailableError("could not show the letters again")

    def delete_dead_letters(self, priority, letters):
        raise DeadLetterUnavailableError("could not delete from the dead-letter queue")

    def queue_depth(self, priority):
        raise DeadLetterUnavailableError("could not read queue attributes")


def test_each_queue_that_did_not_answer_a_pass_is_said_with_its_priority_and_error(lifecycle, queue, clock, store):
    """A pass's lines for the queues that did not answer (letters not shown again, letters of
    removed jobs not deleted, depths not read) each name the priority and what SQS answered:
    what an operator needs to tell which queue to look at."""
    lines = []
    kept, removed = submit(lifecycle), submit(lifecycle)
    for message in queue.drain():
        queue.dead.append((message, {}))
    removed_by_retention(store, removed)
    submit(lifecycle, priority="high")
    queue.drain()  # its message lost
    clock.advance(DISPATCH_GRACE_S + 1)
    reconciler = Reconciler(lifecycle, _AnsweringReadsOnly(queue), observe=lambda m, extra: lines.append((m, extra)))
    assert reconciler.run_pass().counts == {"dead_lettered": 1, "redispatched": 1, "errors": 3}
    said = [line for line in lines if line[0].startswith("reconciler could not")]
    assert said == [
        ("reconciler could not delete the letters of removed jobs",
         {"priority": "normal", "error": "dlq_unavailable: could not delete from the dead-letter queue"}),
        ("reconciler could not show the letters it read again",
         {"priority": "normal", "error": "dlq_unavailable: could not show the letters again"}),
        ("reconciler could not read queue depths",
         {"priority": "high", "error": "dlq_unavailable: could not read queue attributes"}),
    ]
    assert store.get(kept.id, mark_gone=False).error.code == "dead_lettered"


def test_a_put_back_that_failed_is_said_with_its_job_and_attempt(lifecycle, queue, clock, store, monkeypatch):
    """A job whose action and then put-back both failed stays where it is: the line says which
    job, which attempt and what the store answered, as the action's own failure line does."""
    lines = []
    job = submit(lifecycle)
    queue.drain()
    clock.advance(DISPATCH_GRACE_S + 1)
    monkeypatch.setattr(lifecycle, "reconcile", unanswered)
    monkeypatch.setattr(lifecycle, "put_back", unanswered)
    reconciler = Reconciler(lifecycle, None, observe=lambda m, extra: lines.append((m, extra)))
    result = reconciler.run_pass()
    assert result.counts == {"errors": 2}
    assert ("reconcile put-back failed",
            {"job_id": job.id, "attempt": 1, "error": "store_unavailable: the table did not answer"}) in lines
    assert result.errors == [f"{job.id}: store_unavailable: the table did not answer"] * 2, (
        "what the pass answers names the job too")


def test_a_job_at_its_dispatch_bound_is_not_failed_when_its_queue_cannot_be_read(lifecycle, queue, clock, store):
    reconciler = Reconciler(lifecycle, _UnreadableDepths(queue))
    job = submit(lifecycle)
    for _ in range(MAX_DISPATCHES - 1):  # unknown whether a worker receives its queue: sent again
        clock.advance(MAX_DISPATCH_BACKOFF_S + 1)
        assert reconciler.run_pass().counts == {"redispatched": 1, "errors": 1}
    clock.advance(MAX_DISPATCH_BACKOFF_S + 1)
    result = reconciler.run_pass()
    assert result.counts == {"backlogged": 1, "errors": 1}
    assert result.errors == ["queue depths: dlq_unavailable: could not read queue attributes"]
    assert store.get(job.id, mark_gone=False).status == JobStatus.QUEUED
    assert store.get(job.id, mark_gone=False).due_at == isoformat(clock.now + timedelta(seconds=MAX_DISPATCH_BACKOFF_S))


def test_a_line_is_read_each_pass_and_one_message_waiting_is_a_line(lifecycle, queue, clock, store):
    """A job at its dispatch bound waits while its queue holds a message no worker received,
    were it one; whether it does is read again each pass (a warm function runs many with one
    reconciler): once the line is gone, the job fails `undeliverable` at its next look."""
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue))
    queue.in_flight["normal"] = 5  # the worker's slots, busy with the jobs ahead in the line
    job = submit(lifecycle)
    for _ in range(MAX_DISPATCHES - 1):
        clock.advance(MAX_DISPATCH_BACKOFF_S + 1)
        assert reconciler.run_pass().counts == {"redispatched": 1}
    del queue.sent[:-1]  # every message but the last was received, and none claimed the job
    clock.advance(MAX_DISPATCH_BACKOFF_S + 1)
    assert reconciler.run_pass().counts == {"backlogged": 1}
    queue.drain()  # the last one too
    clock.advance(MAX_DISPATCH_BACKOFF_S)
    assert reconciler.run_pass().counts == {"undeliverable": 1}
    assert store.get(job.id, mark_gone=False).error.code == "undeliverable"


def test_a_scheduled_job_waits_in_a_backlog_for_the_queue_retention_counted_from_its_start(lifecycle, queue, clock,
                                                                                           store):
    """A job scheduled days ahead sends its first message near its start, not at its submission:
    it waits in a line for JOBS_QUEUE_RETENTION_S from its start, and fails `undeliverable` as
    that ends, when SQS has deleted its last message."""
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue))
    queue.in_flight["normal"] = 5  # the worker's slots, busy with the jobs ahead in the line
    job = submit(lifecycle, run_at=clock.now + timedelta(days=3))
    kept_until = _parse(job.not_before) + timedelta(seconds=JOBS_QUEUE_RETENTION_S)
    while clock.now + timedelta(seconds=MAX_DISPATCH_BACKOFF_S) < kept_until:  # the line never empties
        clock.advance(MAX_DISPATCH_BACKOFF_S)
        reconciler.run_pass()
    assert store.get(job.id, mark_gone=False).status == JobStatus.QUEUED
    clock.advance((kept_until - clock.now).total_seconds())
    assert reconciler.run_pass().counts == {"undeliverable": 1}


def test_an_owed_letter_whose_message_was_lost_is_parked_by_the_reconciler(lifecycle, queue, clock, reconciler,
                                                                            store):
    """The job failed while its dead-letter queue did not answer: it owes its letter, which the
    attempt's message parks when it comes back. That message is then lost too (a purge, a
    delete by hand): nothing would ever park the letter, and GET /api/system/dlq and a redrive
    would never show the failure. The reconciler parks it once the message had its time to come
    back, once."""
    job = submit(lifecycle)
    fail_owing_its_letter(lifecycle, queue)
    queue.drain()  # the attempt's message, delivered again, is lost meanwhile
    assert reconciler.run_pass().counts == {}, "the message may still come back to park it"
    clock.advance(OWED_LETTER_WAIT_S + 1)
    assert reconciler.run_pass().counts == {"owed_letter_parked": 1}
    assert [m for m, _ in queue.dead] == [JobMessage(job.id, 1)]
    stored = store.get(job.id, mark_gone=False)
    assert stored.status == JobStatus.FAILED and stored.dead_letter_owed is None and stored.due_at is None
    clock.advance(OWED_LETTER_WAIT_S + 1)
    assert reconciler.run_pass().counts == {} and len(queue.dead) == 1, "parked once"


def test_an_owed_letter_the_dead_letter_queue_still_refuses_is_tried_again(lifecycle, queue, clock, reconciler,
                                                                           store):
    job = submit(lifecycle)
    fail_owing_its_letter(lifecycle, queue)
    queue.drain()
    clock.advance(OWED_LETTER_WAIT_S + 1)
    queue.fail_sends = True
    assert reconciler.run_pass().counts == {"errors": 1}
    queue.fail_sends = False
    assert store.get(job.id, mark_gone=False).dead_letter_owed == 1
    clock.advance(RECONCILE_RETRY_S + 1)
    assert reconciler.run_pass().counts == {"owed_letter_parked": 1}
    assert [m for m, _ in queue.dead] == [JobMessage(job.id, 1)]


def test_an_owed_letter_its_message_parked_leaves_nothing_for_the_reconciler(lifecycle, queue, clock, reconciler,
                                                                             store):
    job = submit(lifecycle)
    fail_owing_its_letter(lifecycle, queue)
    # the attempt's message, delivered again: the claim finds the job failed and parks its letter
    assert lifecycle.claim(JobMessage(job.id, 1)).outcome == ClaimOutcome.SKIP
    clock.advance(OWED_LETTER_WAIT_S + 1)
    assert reconciler.run_pass().counts == {}
    assert [m for m, _ in queue.dead] == [JobMessage(job.id, 1)]
    assert store.get(job.id, mark_gone=False).due_at is None


def test_a_last_attempt_whose_worker_died_while_the_dead_letter_queue_was_down_still_gets_its_letter(
        lifecycle, queue, clock, reconciler, store):
    """Three failures in a row: the worker dies on the job's last attempt, the dead-letter queue
    does not answer the pass that ends the attempt `worker_lost` (the job reads failed, owing its
    letter), and the attempt's message never comes back to park it. A later pass does."""
    job = submit(lifecycle)
    for attempt in (1, 2, 3):  # demo.steps: 3 attempts, each worker dying
        running = lifecycle.claim(JobMessage(job.id, attempt)).job
        clock.advance(running.timeout_s + 31)
        queue.fail_sends = attempt == 3
        result = reconciler.run_pass()
        queue.fail_sends = False
        queue.drain()
        if attempt < 3:
            assert result.counts == {"lease_expired": 1}
            clock.advance(900)
    assert result.counts == {"lease_expired": 1, "errors": 1}, "failed, its letter owed"
    failed = store.get(job.id, mark_gone=False)
    assert failed.status == JobStatus.FAILED and failed.error.code == "worker_lost" and failed.dead_letter_owed == 3
    clock.advance(OWED_LETTER_WAIT_S + 1)
    assert reconciler.run_pass().counts == {"owed_letter_parked": 1}
    assert [m for m, _ in queue.dead] == [JobMessage(job.id, 3)]


def test_a_due_page_read_before_the_owed_letter_was_parked_parks_no_second_letter(lifecycle, queue, clock, store,
                                                                                  monkeypatch):
    """The due index and its page are read eventually consistent: the page may show the job still
    owing its letter just after the attempt's message, back, parked it and cleared the mark. A
    letter is sent before its mark is cleared, so a pass acting on that page would park it a
    second time; it reads the job's record first."""
    job = submit(lifecycle)
    fail_owing_its_letter(lifecycle, queue)
    clock.advance(OWED_LETTER_WAIT_S + 1)
    stale = store.due(isoformat(clock.now), 10)
    assert [j.dead_letter_owed for j in stale.jobs] == [1]
    assert lifecycle.claim(JobMessage(job.id, 1)).outcome == ClaimOutcome.SKIP  # the message parks it
    monkeypatch.setattr(store, "due", lambda *args, **kwargs: stale)
    assert Reconciler(lifecycle, InMemoryQueueOperations(queue)).run_pass().counts == {}
    assert [m for m, _ in queue.dead] == [JobMessage(job.id, 1)], "parked once"


def test_an_owed_letter_whose_job_payload_object_is_gone_is_still_parked(queue, clock):
    """The letter is decided on the job's record alone: a payload claim-checked to S3 whose
    object a bucket rule deleted does not stop the pass that parks it (read with the payload, the
    job would raise on every pass and its failure never reach the dead-letter queue)."""
    from chalicelib.adapters.memory import InMemoryJobStore
    from chalicelib.job_types import build_registry
    from chalicelib.lifecycle import JobLifecycle

    blobs = InMemoryBlobStore()
    store = InMemoryJobStore(blobs=blobs, inline_limit=16)
    lifecycle = JobLifecycle(store, queue, build_registry(demo_types=True), clock=clock)
    job = submit(lifecycle)
    fail_owing_its_letter(lifecycle, queue)
    assert blobs.objects, "the payload lives in the blob store"
    blobs.delete(list(blobs.objects))
    clock.advance(OWED_LETTER_WAIT_S + 1)
    assert Reconciler(lifecycle, InMemoryQueueOperations(queue)).run_pass().counts == {"owed_letter_parked": 1}
    assert [m for m, _ in queue.dead] == [JobMessage(job.id, 1)]


def test_an_owed_letter_whose_job_was_removed_since_its_page_was_read_is_not_parked(lifecycle, queue, clock,
                                                                                    store, monkeypatch):
    """Retention removed the failed job after the due page showed it owing its letter: there is
    no job left for the letter to explain, nothing is parked and the pass counts no error."""
    job = submit(lifecycle)
    fail_owing_its_letter(lifecycle, queue)
    clock.advance(OWED_LETTER_WAIT_S + 1)
    stale = store.due(isoformat(clock.now), 10)
    assert [j.id for j in stale.jobs] == [job.id]
    removed_by_retention(store, job)
    monkeypatch.setattr(store, "due", lambda *args, **kwargs: stale)
    assert Reconciler(lifecycle, InMemoryQueueOperations(queue)).run_pass().counts == {}
    assert queue.dead == []


def test_two_overlapping_passes_park_an_owed_letter_once(lifecycle, queue, clock, store, monkeypatch):
    """A pass started while the last one still runs (the schedule's next, or Lambda's retry of a
    pass cut off) reaches the same job owing its letter: only the pass that wins the job's
    conditional write parks it; the other does nothing, so an operator finds one letter."""
    job = submit(lifecycle)
    fail_owing_its_letter(lifecycle, queue)
    queue.drain()
    clock.advance(OWED_LETTER_WAIT_S + 1)
    stale = store.due(isoformat(clock.now), 10)  # both passes read the page before either acted
    monkeypatch.setattr(store, "due", lambda *args, **kwargs: stale)
    first, second = (Reconciler(lifecycle, InMemoryQueueOperations(queue)) for _ in range(2))
    park = queue.dead_letter
    overlapping = []

    def the_other_pass_runs_meanwhile(*args, **kwargs):
        if not overlapping:
            overlapping.append(None)  # the other pass's own send comes straight through
            overlapping[0] = second.run_pass().counts
        return park(*args, **kwargs)

    monkeypatch.setattr(queue, "dead_letter", the_other_pass_runs_meanwhile)
    assert first.run_pass().counts == {"owed_letter_parked": 1}
    assert overlapping == [{}]
    assert [m for m, _ in queue.dead] == [JobMessage(job.id, 1)], "parked once"
    assert store.get(job.id, mark_gone=False).dead_letter_owed is None


def test_a_pass_that_lost_the_race_for_an_owed_letter_parks_none(lifecycle, queue, clock, store, monkeypatch):
    """The other pass read the job's record before this one's write: its own write, conditioned
    on what it read, loses, and it sends nothing."""
    job = submit(lifecycle)
    fail_owing_its_letter(lifecycle, queue)
    queue.drain()
    clock.advance(OWED_LETTER_WAIT_S + 1)
    first, second = (Reconciler(lifecycle, InMemoryQueueOperations(queue)) for _ in range(2))
    read = store.get
    before = read(job.id, fetch=(), mark_gone=False)
    monkeypatch.setattr(store, "due", lambda *args, _page=store.due(isoformat(clock.now), 10), **kwargs: _page)
    park = queue.dead_letter
    overlapping = []

    def the_other_pass_runs_meanwhile(*args, **kwargs):
        if not overlapping:
            overlapping.append(None)  # the other pass's own send comes straight through
            with monkeypatch.context() as m:
                m.setattr(store, "get", lambda *a, **k: before)  # its read came before this pass's write
                overlapping[0] = second.run_pass().counts
        return park(*args, **kwargs)

    monkeypatch.setattr(queue, "dead_letter", the_other_pass_runs_meanwhile)
    assert first.run_pass().counts == {"owed_letter_parked": 1}
    assert overlapping == [{"raced": 1}]
    assert [m for m, _ in queue.dead] == [JobMessage(job.id, 1)], "parked once"


def test_a_pass_that_dies_after_taking_an_owed_letter_leaves_it_to_a_later_pass(lifecycle, queue, clock, store,
                                                                                 monkeypatch, reconciler):
    """The pass that won the job's write ends before its send (its invocation timed out, its
    process died): the letter is not lost, a later pass parks it."""
    job = submit(lifecycle)
    fail_owing_its_letter(lifecycle, queue)
    queue.drain()
    clock.advance(OWED_LETTER_WAIT_S + 1)
    park = queue.dead_letter

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # not an error the pass could count: the process ends here

    monkeypatch.setattr(queue, "dead_letter", dies)
    with pytest.raises(KeyboardInterrupt):
        reconciler.run_pass()
    monkeypatch.setattr(queue, "dead_letter", park)
    assert queue.dead == [] and store.get(job.id, mark_gone=False).dead_letter_owed == 1
    assert reconciler.run_pass().counts == {}, "the dead pass's write holds it a while"
    clock.advance(RECONCILE_RETRY_S + 1)
    assert reconciler.run_pass().counts == {"owed_letter_parked": 1}
    assert [m for m, _ in queue.dead] == [JobMessage(job.id, 1)]


def test_a_due_page_read_before_a_dead_pass_took_an_owed_letter_still_parks_it_once_due_again(
        lifecycle, queue, clock, store, monkeypatch, reconciler):
    """The due page is an eventually consistent read: it may still show the job as it was before
    a pass that since died took its letter. Once that take's wait is over, the letter is parked on
    the record read then, not lost as a race against the page's older version."""
    job = submit(lifecycle)
    fail_owing_its_letter(lifecycle, queue)
    queue.drain()
    clock.advance(OWED_LETTER_WAIT_S + 1)
    page_before_the_take = store.due(isoformat(clock.now), 10)
    park = queue.dead_letter

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # the taking pass's process ends before its send

    monkeypatch.setattr(queue, "dead_letter", dies)
    with pytest.raises(KeyboardInterrupt):
        reconciler.run_pass()
    monkeypatch.setattr(queue, "dead_letter", park)
    clock.advance(RECONCILE_RETRY_S + 1)
    monkeypatch.setattr(store, "due", lambda *args, **kwargs: page_before_the_take)
    assert reconciler.run_pass().counts == {"owed_letter_parked": 1}
    assert [m for m, _ in queue.dead] == [JobMessage(job.id, 1)]


def test_a_queue_no_worker_receives_gets_no_copies_and_its_jobs_wait_for_its_consumption_again(
        lifecycle, queue, clock, store):
    """An operator paused the normal workers (their event source mapping disabled) for a day:
    the queue holds the jobs' messages and none is in flight. Sent again each time they were
    due, every job would gain copies to run through once resumed and spend its MAX_DISPATCHES
    towards `undeliverable`; none is sent and none counted. Once workers receive it again, a
    job whose message was lost after all is sent again within UNCONSUMED_LOOK_S."""
    from chalicelib.defaults import UNCONSUMED_LOOK_S
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue))
    jobs = [submit(lifecycle) for _ in range(3)]
    sent = len(queue.sent)
    counts: Counter = Counter()
    for _ in range(24 * 60):
        clock.advance(60)
        counts.update(reconciler.run_pass().counts)
    assert len(queue.sent) == sent and set(counts) == {"unconsumed"}, counts
    assert all(store.get(job.id, mark_gone=False).status == JobStatus.QUEUED for job in jobs)
    assert all(store.get(job.id, mark_gone=False).dispatches == job.dispatches for job in jobs)
    queue.drain()  # resumed, and the messages lost after all: none claimed its job
    clock.advance(UNCONSUMED_LOOK_S)
    assert reconciler.run_pass().counts == {"redispatched": 3}
    assert sorted(m.job_id for m, _, _ in queue.sent) == sorted(job.id for job in jobs)


def test_a_paused_queue_holding_one_message_sends_no_copy_of_it(lifecycle, queue, clock, store):
    """docs/operations.md (pausing a queue's consumers): a queue that holds messages and none in
    flight is a paused one, were it one message: the job whose message it is, the only one
    there, is not sent again (no copy to run through once resumed, no dispatch spent)."""
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue))
    job = submit(lifecycle)
    assert len(queue.sent) == 1
    counts: Counter = Counter()
    for _ in range(6 * 60):
        clock.advance(60)
        counts.update(reconciler.run_pass().counts)
    assert len(queue.sent) == 1 and set(counts) == {"unconsumed"}, counts
    assert store.get(job.id, mark_gone=False).dispatches == job.dispatches


def test_a_queue_one_worker_still_receives_from_is_not_paused_and_its_stranded_jobs_are_sent_again(
        lifecycle, queue, clock, store):
    """Messages waiting with even one in flight is a queue being consumed (a slow worker, busy
    with one job), not a paused one: a job whose message was lost there is sent again."""
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue))
    lost = submit(lifecycle)
    queue.drain()  # its message is lost
    waiting = submit(lifecycle)  # its message waits in the queue
    queue.in_flight["normal"] = 1  # the one worker's slot, busy with the job ahead
    clock.advance(DISPATCH_GRACE_S + 1)
    assert reconciler.run_pass().counts == {"redispatched": 2}
    assert lost.id in [m.job_id for m in queue.drain()]


def test_a_job_of_a_paused_queue_is_looked_at_again_unconsumed_look_s_later_not_every_pass(
        lifecycle, queue, clock, store):
    """A job left unsent because its queue is paused is due again UNCONSUMED_LOOK_S on: the
    passes between leave it alone, rather than reading it first on each of them (a pause of a
    day, a pass every few minutes) ahead of the jobs due behind it."""
    from chalicelib.defaults import UNCONSUMED_LOOK_S
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue))
    job = submit(lifecycle)
    clock.advance(DISPATCH_GRACE_S + 1)
    assert reconciler.run_pass().counts == {"unconsumed": 1}
    assert store.get(job.id, mark_gone=False).due_at == isoformat(clock.now + timedelta(seconds=UNCONSUMED_LOOK_S))
    clock.advance(UNCONSUMED_LOOK_S - 1)
    assert reconciler.run_pass().counts == {}
    clock.advance(1)
    assert reconciler.run_pass().counts == {"unconsumed": 1}
    assert len(queue.sent) == 1


def test_a_held_job_due_for_release_while_its_queue_is_paused_is_released(lifecycle, queue, clock, store):
    """A paused queue gets no copy of a message it holds; a held job's first message is no
    copy: it is released into the line as it would be (dispatch not spent twice, its start kept),
    rather than held back until the queue is consumed again and then sent up to
    UNCONSUMED_LOOK_S past its start."""
    reconciler = Reconciler(lifecycle, InMemoryQueueOperations(queue))
    submit(lifecycle)  # its message waits on the paused queue
    held = submit(lifecycle, delay_seconds=3600)
    clock.advance(3600 - SQS_MAX_DELAY_S)
    assert reconciler.run_pass().counts == {"released": 1, "unconsumed": 1}
    assert [(m, delay) for m, _, delay in queue.sent if m.job_id == held.id] == [(JobMessage(held.id, 1), SQS_MAX_DELAY_S)]
    assert store.get(held.id, mark_gone=False).dispatches == 1


@pytest.mark.parametrize("spent", ["margin", "due_budget"])
def test_a_pass_whose_time_ran_out_at_a_page_end_reads_no_further_page(lifecycle, queue, clock, store, monkeypatch,
                                                                        spent):
    """A pass keeps to its invocation's time between pages too: once the due jobs of a page
    spent it (less than RECONCILE_PASS_MARGIN_S left, or the due step's RECONCILE_DUE_BUDGET_S
    spent), no request for the next page is started (one started then could outlast the
    invocation, or hold back the stream batches); the jobs on it wait for the next pass."""
    from chalicelib.defaults import RECONCILE_DUE_BUDGET_S
    for _ in range(3):
        submit(lifecycle)
    queue.drain()
    clock.advance(DISPATCH_GRACE_S + 1)
    start = RECONCILE_DUE_BUDGET_S + RECONCILE_PASS_MARGIN_S + 30
    pages, left = [], [float(start)]
    real_due = store.due

    def due(now, limit, after=None):
        pages.append(after)
        return real_due(now, limit, after)

    def observe(message, extra) -> None:  # the page's second job spends the time
        if message == "job redispatched" and len(queue.sent) == 2:
            left[0] = RECONCILE_PASS_MARGIN_S - 1 if spent == "margin" else start - RECONCILE_DUE_BUDGET_S - 1

    monkeypatch.setattr(store, "due", due)
    result = Reconciler(lifecycle, None, due_page=2, observe=observe).run_pass(time_left_s=lambda: left[0])
    assert result.counts == {"redispatched": 2, "out_of_time": 1}
    assert len(pages) == 1, pages
