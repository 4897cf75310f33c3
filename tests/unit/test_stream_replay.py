"""Failed stream batches, replayed by the reconciler from the stream itself (in-memory adapters):
a batch the change-stream function gave up on still reaches subscribers and the counters, once."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional

import pytest

from chalicelib.adapters.dynamodb_items import job_key, job_to_item, run_key
from chalicelib.adapters.dynamodb_stream import job_change
from chalicelib.adapters.memory_events import InMemoryEventPublisher
from chalicelib.adapters.memory_stats import InMemoryStatsStore
from chalicelib.adapters.memory_stream import InMemoryChangeStream, InMemoryFailedStreamBatches, InMemoryParkedRecordDrops
from chalicelib.defaults import (
    DEAD_LETTER_REASON_CHARS,
    REPLAY_BATCHES_PER_PASS,
    REPLAY_RETRY_BASE_S,
    REPLAY_RETRY_MAX_S,
    UNREADABLE_HOLD_S,
)
from chalicelib.domain.errors import (
    DeadLetterUnavailableError,
    EventPublishError,
    QueueUnavailableError,
    StoreUnavailableError,
    StreamRecordUnreadableError,
)
from chalicelib.domain.events import event_id_for
from chalicelib.domain.job import Job, parse_time
from chalicelib.events.replay import StreamReplay
from chalicelib.events.stream import StreamConsumer
from chalicelib.reconciler import Reconciler

STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/jobs/stream/2026-01-01T00:00:00.000"
SHARD = "shard-0"


class Pipeline:
    """The jobs table's stream, the change-stream function's consumer and StreamFailureQueue,
    on one clock."""

    def __init__(self, clock) -> None:
        self.stream = InMemoryChangeStream(STREAM, SHARD)
        self.publisher = InMemoryEventPublisher()
        self.stats = InMemoryStatsStore()
        self.failures = InMemoryFailedStreamBatches(clock=lambda: clock().timestamp())
        self.consumer = StreamConsumer(job_change, self.publisher, self.stats, park=self.failures.park)
        self.drops = InMemoryParkedRecordDrops(clock=lambda: clock().timestamp())
        self._sequence = 100

    def write(self, old: Optional[Job], new: Job) -> dict:
        """The stream record of one job write."""
        self._sequence += 1
        data = {"Keys": job_key(new.id), "SequenceNumber": str(self._sequence),
                "ApproximateCreationDateTime": 1_767_225_600.0, "NewImage": job_to_item(new)}
        if old is not None:
            data["OldImage"] = job_to_item(old)
        record = {"eventName": "MODIFY" if old else "INSERT", "dynamodb": data}
        self.stream.append(record)
        return record

    def deliver(self, records: list[dict]) -> Optional[str]:
        """The mapping delivering a batch to the change-stream function; when its events do not
        go out for good, the batch's description goes to StreamFailureQueue."""
        failed_at = self.consumer.consume(records)
        if failed_at is not None:
            self.failures.put(STREAM, SHARD, records[0]["dynamodb"]["SequenceNumber"],
                              records[-1]["dynamodb"]["SequenceNumber"], len(records))
        return failed_at

    def reconciler(self, lifecycle, observe=None) -> Reconciler:
        return Reconciler(lifecycle, None, replay=StreamReplay(self.failures, self.stream, self.consumer,
                                                               drops=self.drops), observe=observe)


@pytest.fixture
def pipeline(clock) -> Pipeline:
    return Pipeline(clock)


def submit_and_claim(lifecycle, queue) -> tuple[Job, Job]:
    queued = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload={"steps": 2, "step_ms": 0})
    running = lifecycle.claim(queue.drain()[0]).job
    return queued, running


def test_a_batch_the_stream_gave_up_on_reaches_subscribers_and_counters_once(lifecycle, queue, pipeline):
    queued, running = submit_and_claim(lifecycle, queue)
    batch = [pipeline.write(None, queued), pipeline.write(queued, running)]
    pipeline.publisher.fail_next = 1  # the bus refuses through every retry of the stream
    assert pipeline.deliver(batch) is not None
    assert pipeline.publisher.published == []

    lines = []
    assert pipeline.reconciler(lifecycle, observe=lambda m, extra: lines.append((m, extra))).run_pass(
    ).counts == {"stream_batch_replayed": 1}
    assert lines == [("stream batch replayed",
                      {"batch": "stream batch 101-102", "condition": "RetryAttemptsExhausted"})], (
        "said, naming the batch and why the stream gave it up")
    published = [(e.event_id, e.status) for e in pipeline.publisher.published]
    assert published == [(event_id_for(queued.id, queued.version), "queued"),
                         (event_id_for(running.id, running.version), "running")]
    # The counters had counted the batch before publishing failed: the replay counts nothing twice.
    assert pipeline.stats.unfinished("acme") == 1
    assert pipeline.stats.status_counts() == {"running": 1}
    assert pipeline.failures.waiting() == []
    assert pipeline.reconciler(lifecycle).run_pass().counts == {}


def test_the_counts_of_a_batch_whose_counting_failed_are_made_good(lifecycle, queue, pipeline):
    """A tenant's unfinished counter left high by a lost batch would hold back its submits."""
    queued, running = submit_and_claim(lifecycle, queue)
    assert pipeline.deliver([pipeline.write(None, queued), pipeline.write(queued, running)]) is None
    completed = lifecycle.complete(running, {"ok": True})
    record = pipeline.write(running, completed)
    # The stats table refused this batch through every retry: nothing of it was counted or published.
    sequence = record["dynamodb"]["SequenceNumber"]
    pipeline.failures.put(STREAM, SHARD, sequence, sequence)
    assert pipeline.stats.unfinished("acme") == 1
    assert pipeline.reconciler(lifecycle).run_pass().counts == {"stream_batch_replayed": 1}
    assert pipeline.stats.unfinished("acme") == 0
    assert pipeline.stats.status_counts() == {"running": 0, "completed": 1}
    assert [e.status for e in pipeline.publisher.published] == ["queued", "running", "completed"]


def fails_again_then_waits_twice_as_long(reconciler, clock) -> None:
    """A replay that failed is tried again once its first wait (REPLAY_RETRY_BASE_S) is over;
    failing again, it waits twice that: a pass one first wait later still finds it held."""
    clock.advance(REPLAY_RETRY_BASE_S + 1)
    assert reconciler.run_pass().counts == {"errors": 1}
    clock.advance(REPLAY_RETRY_BASE_S + 1)
    assert reconciler.run_pass().counts == {}, "the second wait is twice the first"


def test_a_replay_that_fails_again_is_tried_again_later_each_time_later(lifecycle, queue, pipeline, clock):
    queued, _ = submit_and_claim(lifecycle, queue)
    pipeline.publisher.fail_next = 10
    pipeline.deliver([pipeline.write(None, queued)])
    reconciler = pipeline.reconciler(lifecycle)
    pass_ = reconciler.run_pass()
    assert pass_.counts == {"errors": 1}
    assert pass_.errors == ["stream batch 101-101: event_publish_failed: events from stream record 101 on were not published"]
    assert reconciler.run_pass().counts == {}, "held for the first wait"
    fails_again_then_waits_twice_as_long(reconciler, clock)
    clock.advance(REPLAY_RETRY_BASE_S)
    pipeline.publisher.fail_next = 0
    assert reconciler.run_pass().counts == {"stream_batch_replayed": 1}
    assert [e.status for e in pipeline.publisher.published] == ["queued"]
    assert pipeline.failures.waiting() == []


def test_a_stream_that_cannot_be_read_for_now_is_tried_again_later_each_time_later(lifecycle, queue, pipeline, clock,
                                                                                    monkeypatch):
    queued, _ = submit_and_claim(lifecycle, queue)
    pipeline.publisher.fail_next = 10
    pipeline.deliver([pipeline.write(None, queued)])
    pipeline.publisher.fail_next = 0
    records = pipeline.stream.records

    def throttled(batch):
        raise StoreUnavailableError("the stream is throttling its readers")

    monkeypatch.setattr(pipeline.stream, "records", throttled)
    reconciler = pipeline.reconciler(lifecycle)
    assert reconciler.run_pass().counts == {"errors": 1}
    fails_again_then_waits_twice_as_long(reconciler, clock)
    clock.advance(REPLAY_RETRY_BASE_S)
    monkeypatch.setattr(pipeline.stream, "records", records)
    assert reconciler.run_pass().counts == {"stream_batch_replayed": 1}


def test_a_batch_the_stream_no_longer_holds_stays_for_an_operator(lifecycle, queue, pipeline, clock):
    queued, running = submit_and_claim(lifecycle, queue)
    lifecycle.complete(running, {"ok": True})  # nothing else for the passes to do
    pipeline.publisher.fail_next = 1
    pipeline.deliver([pipeline.write(None, queued)])
    pipeline.stream.trim(1)  # past the stream's 24 hours
    lines = []
    reconciler = pipeline.reconciler(lifecycle, observe=lambda m, extra: lines.append((m, extra)))
    pass_ = reconciler.run_pass()
    assert pass_.counts == {"stream_batch_unreadable": 1}
    assert pass_.errors == ["stream batch 101-101: stream_batch_unreadable: the stream no longer holds record 101"]
    assert lines == [("stream batch unreadable", {
        "batch": "stream batch 101-101", "error": "stream_batch_unreadable: the stream no longer holds record 101"})]
    assert len(pipeline.failures.waiting()) == 1, "its description stays, and so does its alarm"
    clock.advance(UNREADABLE_HOLD_S - 60)
    assert reconciler.run_pass().counts == {}
    clock.advance(120)
    assert reconciler.run_pass().counts == {"stream_batch_unreadable": 1}
    assert pipeline.publisher.published == []


def test_what_the_stream_still_holds_of_a_partly_trimmed_batch_is_published(lifecycle, queue, pipeline):
    """A batch whose first record passed the stream's 24 hours while its later ones have not (a
    replay that kept failing through a long outage, the batch's writes spread over time): the
    records still held are counted and published, and the description stays for an operator,
    naming what is lost. Taken as a batch the stream no longer holds, the held records' events
    were never published, though the stream could still serve them."""
    queued, running = submit_and_claim(lifecycle, queue)
    pipeline.publisher.fail_next = 1
    pipeline.deliver([pipeline.write(None, queued), pipeline.write(queued, running)])
    pipeline.stream.trim(1)  # the first record passed the stream's 24 hours, the second not yet
    pass_ = pipeline.reconciler(lifecycle).run_pass()
    assert pass_.counts == {"stream_batch_unreadable": 1}
    assert pass_.errors == ["stream batch 101-102: stream_batch_unreadable: the stream no longer holds record "
                            "101, nor the batch's others before record 102: the 1 from there on were counted "
                            "and published"]
    assert [(e.event_id, e.status) for e in pipeline.publisher.published] == [
        (event_id_for(running.id, running.version), "running")]
    assert len(pipeline.failures.waiting()) == 1, "its description stays, and so does its alarm"


def test_a_partly_trimmed_batch_is_looked_at_again_only_after_the_unreadable_hold(lifecycle, queue, pipeline,
                                                                                  clock):
    """What the stream lost stays lost: the description waits for an operator, not for the
    next pass, which would publish the held records' events again every few minutes."""
    queued, running = submit_and_claim(lifecycle, queue)
    lifecycle.complete(running, {"ok": True})  # nothing else for the passes to do
    pipeline.publisher.fail_next = 1
    pipeline.deliver([pipeline.write(None, queued), pipeline.write(queued, running)])
    pipeline.stream.trim(1)
    reconciler = pipeline.reconciler(lifecycle)
    assert reconciler.run_pass().counts == {"stream_batch_unreadable": 1}
    clock.advance(REPLAY_RETRY_BASE_S + 1)
    assert reconciler.run_pass().counts == {}
    clock.advance(UNREADABLE_HOLD_S - REPLAY_RETRY_BASE_S)
    assert reconciler.run_pass().counts == {"stream_batch_unreadable": 1}
    assert [e.status for e in pipeline.publisher.published] == ["running", "running"]


def test_a_partly_trimmed_batch_is_said_to_be_lost_before_its_first_held_record(lifecycle, queue, pipeline):
    """The operator reads what was lost from the error: every record before the first one the
    stream still holds, and how many from there on went out."""
    queued, running = submit_and_claim(lifecycle, queue)
    other, _ = submit_and_claim(lifecycle, queue)
    pipeline.publisher.fail_next = 1
    pipeline.deliver([pipeline.write(None, queued), pipeline.write(queued, running), pipeline.write(None, other)])
    pipeline.stream.trim(1)
    pass_ = pipeline.reconciler(lifecycle).run_pass()
    assert pass_.errors == ["stream batch 101-103: stream_batch_unreadable: the stream no longer holds record "
                            "101, nor the batch's others before record 102: the 2 from there on were counted "
                            "and published"]


def test_a_take_hides_its_batches_at_least_a_first_retry_s_wait_and_takes_no_more_than_asked(pipeline, clock):
    """A taker asking for less than REPLAY_RETRY_BASE_S still hides what it took that long, so
    that another pass does not take the same batch and publish it a second time meanwhile; and
    it takes only as many as it asked for, the rest left to later passes."""
    replay = StreamReplay(pipeline.failures, pipeline.stream, pipeline.consumer)
    for first in ("101", "102", "103"):
        pipeline.failures.put(STREAM, SHARD, first, first, 1)
    assert len(replay.take(2, hold_s=1)) == 2
    clock.advance(2)
    assert len(replay.take(10, hold_s=1)) == 1, "the two taken are still hidden"
    clock.advance(REPLAY_RETRY_BASE_S)
    assert len(replay.take(10)) == 3


def test_a_record_the_stream_still_holds_of_a_partly_trimmed_batch_but_cannot_read_is_parked(lifecycle, queue,
                                                                                              pipeline):
    """As in a whole batch: the unreadable record is parked for an operator and the other held
    records go out, rather than the held records waiting on it."""
    queued, running = submit_and_claim(lifecycle, queue)
    other, _ = submit_and_claim(lifecycle, queue)
    batch = [pipeline.write(None, queued), _edited_by_hand(pipeline.write(queued, running)), pipeline.write(None, other)]
    pipeline.failures.put(STREAM, SHARD, batch[0]["dynamodb"]["SequenceNumber"],
                          batch[-1]["dynamodb"]["SequenceNumber"], 3)
    pipeline.stream.trim(1)

    assert pipeline.reconciler(lifecycle).run_pass().counts == {"stream_batch_unreadable": 1}
    assert [e.job_id for e in pipeline.publisher.published] == [other.id]
    parked = [b for b in pipeline.failures.take(10, 60) if b.records is not None]
    assert [b.records for b in parked] == [(batch[1],)]


def test_a_take_asked_for_nothing_takes_a_pass_s_worth_hidden_for_a_first_retry_s_wait(pipeline, clock):
    """The reconciler's pass names no number: it takes REPLAY_BATCHES_PER_PASS, the rest left to
    later passes, each hidden a first retry's wait and no longer."""
    replay = StreamReplay(pipeline.failures, pipeline.stream, pipeline.consumer)
    for first in range(101, 102 + REPLAY_BATCHES_PER_PASS):
        pipeline.failures.put(STREAM, SHARD, str(first), str(first), 1)
    assert len(replay.take()) == REPLAY_BATCHES_PER_PASS
    clock.advance(REPLAY_RETRY_BASE_S)
    assert len(replay.take(100)) == REPLAY_BATCHES_PER_PASS + 1


def test_a_parked_record_is_published_where_no_drops_are_kept(lifecycle, queue, pipeline):
    """Without ParkedRecordDrops no operator's give-up can be recorded, so none is looked for:
    the record goes out and leaves the queue, as where no drop was asked."""
    queued, running = submit_and_claim(lifecycle, queue)
    assert pipeline.deliver([pipeline.write(None, queued)]) is None
    pipeline.failures.park(pipeline.write(queued, running), "the new image is no job this version reads")
    replay = StreamReplay(pipeline.failures, pipeline.stream, pipeline.consumer)
    (batch,) = replay.take()
    assert replay.replay(batch) == "stream_batch_replayed"
    assert [e.status for e in pipeline.publisher.published] == ["queued", "running"]
    assert pipeline.failures.waiting() == []


def test_a_parked_record_whose_drops_keep_not_answering_waits_longer_each_time(lifecycle, queue, pipeline, clock):
    """As after a failed publish, the waits double: a drops table that is down is not asked
    again at every pass."""
    queued, running = submit_and_claim(lifecycle, queue)
    lifecycle.complete(running, {"ok": True})  # nothing else for the passes to do
    pipeline.failures.park(pipeline.write(queued, running), "the new image is no job this version reads")

    def down(message_id: str) -> bool:
        raise StoreUnavailableError("the drops table does not answer")

    pipeline.drops.taken = down
    reconciler = pipeline.reconciler(lifecycle)
    assert reconciler.run_pass().counts == {"errors": 1}
    fails_again_then_waits_twice_as_long(reconciler, clock)


class RecordingHolds(InMemoryFailedStreamBatches):
    """StreamFailureQueue, remembering every hold asked of it."""

    def __init__(self, clock, refuse: bool = False) -> None:
        super().__init__(clock=lambda: clock().timestamp())
        self.holds: list[int] = []
        self.refuse = refuse

    def hold(self, batch, seconds):
        self.holds.append(seconds)
        if self.refuse:
            raise QueueUnavailableError("StreamFailureQueue does not answer")
        super().hold(batch, seconds)


def test_a_replay_that_keeps_failing_waits_at_most_the_longest_retry_wait(lifecycle, queue, pipeline, clock):
    """The waits double up to REPLAY_RETRY_MAX_S and stay there: a batch whose events a long
    outage holds back is tried again within the hour once the bus answers."""
    failures = RecordingHolds(clock)
    replay = StreamReplay(failures, pipeline.stream, pipeline.consumer)
    queued, _ = submit_and_claim(lifecycle, queue)
    pipeline.write(None, queued)
    failures.put(STREAM, SHARD, "101", "101", 1)
    pipeline.publisher.fail_next = 100
    for _ in range(10):
        (batch,) = replay.take()
        with pytest.raises(EventPublishError):
            replay.replay(batch)
        clock.advance(REPLAY_RETRY_MAX_S + 1)
    assert max(failures.holds) == REPLAY_RETRY_MAX_S == failures.holds[-1]


def test_a_hold_that_fails_leaves_the_replay_s_own_error_to_report(lifecycle, queue, pipeline, clock):
    """StreamFailureQueue not answering the hold: the batch comes back once its take's hold
    ends instead, and the error the pass reports is why the replay failed, not the hold's."""
    failures = RecordingHolds(clock, refuse=True)
    replay = StreamReplay(failures, pipeline.stream, pipeline.consumer)
    queued, _ = submit_and_claim(lifecycle, queue)
    pipeline.write(None, queued)
    failures.put(STREAM, SHARD, "101", "101", 1)
    pipeline.publisher.fail_next = 1
    (batch,) = replay.take()
    with pytest.raises(EventPublishError):
        replay.replay(batch)
    assert failures.holds, "a hold was asked"


def test_a_description_of_another_stream_is_not_replayed(lifecycle, queue, pipeline):
    queued, _ = submit_and_claim(lifecycle, queue)
    pipeline.write(None, queued)
    pipeline.failures.put(STREAM.replace("table/jobs", "table/other"), SHARD, "101", "101")
    assert pipeline.reconciler(lifecycle).run_pass().counts == {"stream_batch_unreadable": 1}
    assert pipeline.publisher.published == []


class _BrokenStream(InMemoryChangeStream):
    def records(self, batch):
        if batch.first_sequence == "101":
            raise RuntimeError("a record that breaks the replay")
        return super().records(batch)


def test_one_batch_that_breaks_its_replay_does_not_stop_the_others(lifecycle, queue, pipeline):
    queued, running = submit_and_claim(lifecycle, queue)
    pipeline.stream = _BrokenStream(STREAM, SHARD)
    pipeline.publisher.fail_next = 2
    pipeline.deliver([pipeline.write(None, queued)])
    pipeline.deliver([pipeline.write(queued, running)])
    pass_ = pipeline.reconciler(lifecycle).run_pass()
    assert pass_.counts == {"errors": 1, "stream_batch_replayed": 1}
    assert pass_.errors == ["stream batch 101-101: RuntimeError: a record that breaks the replay"]
    assert [e.status for e in pipeline.publisher.published] == ["running"]


def test_a_batch_the_stream_no_longer_holds_does_not_stop_the_others(lifecycle, queue, pipeline):
    """A batch past the stream's 24 hours is said lost, and the batches taken after it are still
    replayed in the same pass: one lost batch does not hold back the others' events."""
    queued, running = submit_and_claim(lifecycle, queue)
    pipeline.publisher.fail_next = 2
    pipeline.deliver([pipeline.write(None, queued)])
    pipeline.deliver([pipeline.write(queued, running)])
    pipeline.stream.trim(1)  # the first batch's only record passed the stream's 24 hours
    pass_ = pipeline.reconciler(lifecycle).run_pass()
    assert pass_.counts == {"stream_batch_unreadable": 1, "stream_batch_replayed": 1}
    assert [e.status for e in pipeline.publisher.published] == ["running"]


def test_the_batches_a_pass_takes_stay_hidden_for_the_rest_of_its_invocation_rounded_up(lifecycle, queue, pipeline,
                                                                                        monkeypatch):
    """A pass with more than a first retry's wait left hides what it takes for all of it, its
    last fraction of a second included: a batch shown again before the invocation ends could be
    taken by the schedule's next pass while this one still replays it."""
    queued, _ = submit_and_claim(lifecycle, queue)
    pipeline.publisher.fail_next = 1
    pipeline.deliver([pipeline.write(None, queued)])
    holds = []
    take = pipeline.failures.take
    monkeypatch.setattr(pipeline.failures, "take", lambda limit, hold_s: holds.append(hold_s) or take(limit, hold_s))
    pipeline.reconciler(lifecycle).run_pass(time_left_s=lambda: REPLAY_RETRY_BASE_S + 40.3)
    assert holds == [REPLAY_RETRY_BASE_S + 41]


class _Unreachable(InMemoryFailedStreamBatches):
    def take(self, limit, hold_s):
        raise DeadLetterUnavailableError("could not read StreamFailureQueue")


def test_a_failure_queue_that_cannot_be_read_is_an_error_of_its_step_only(lifecycle, queue, pipeline, clock):
    job = lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload={"steps": 2, "step_ms": 0})
    queue.drain()  # its message is lost
    pipeline.failures = _Unreachable()
    clock.advance(3600)
    pass_ = pipeline.reconciler(lifecycle).run_pass()
    assert pass_.counts == {"redispatched": 1, "errors": 1}
    assert pass_.errors == ["failed stream batches: dlq_unavailable: could not read StreamFailureQueue"]
    assert queue.drain()[0].job_id == job.id


def _edited_by_hand(record: dict) -> dict:
    """`record` with its new image's status one this version does not know."""
    record["dynamodb"]["NewImage"]["status"] = {"S": "paused"}
    return record


def test_a_record_a_replayed_batch_cannot_read_is_parked_and_the_rest_goes_out(lifecycle, queue, pipeline):
    queued, running = submit_and_claim(lifecycle, queue)
    other, _ = submit_and_claim(lifecycle, queue)
    batch = [pipeline.write(None, queued), _edited_by_hand(pipeline.write(queued, running)), pipeline.write(None, other)]
    pipeline.failures.put(STREAM, SHARD, batch[0]["dynamodb"]["SequenceNumber"],
                          batch[-1]["dynamodb"]["SequenceNumber"], 3)

    assert pipeline.reconciler(lifecycle).run_pass().counts == {"stream_batch_replayed": 1}
    assert [e.job_id for e in pipeline.publisher.published] == [queued.id, other.id]
    (parked_id,) = pipeline.failures.waiting()
    (parked,) = pipeline.failures.take(10, 60)
    assert parked.records == (batch[1],) and parked.condition == "RecordUnreadable"
    assert "the new image is no job this version reads" in pipeline.failures.reasons[parked_id]


def test_a_parked_record_is_told_by_its_sequence_number_and_why(lifecycle, queue, pipeline):
    """The alarm that a record was parked is an operator's only pointer to it before the
    reconciler's pass: the log names the record's sequence number and why this version could not
    read it, the reason the queue's message holds too."""
    queued, running = submit_and_claim(lifecycle, queue)
    told = []
    consumer = StreamConsumer(job_change, pipeline.publisher, pipeline.stats, park=pipeline.failures.park,
                              on_parked=lambda sequence, reason: told.append((sequence, reason)))
    unreadable = _edited_by_hand(pipeline.write(queued, running))
    assert consumer.consume([pipeline.write(None, queued), unreadable]) is None
    ((sequence, reason),) = told
    assert sequence == unreadable["dynamodb"]["SequenceNumber"]
    assert "the new image is no job this version reads" in reason
    (parked_id,) = pipeline.failures.waiting()
    assert pipeline.failures.reasons[parked_id] == reason


def test_a_parked_record_still_unreadable_waits_for_its_retry_and_is_not_parked_twice(lifecycle, queue, pipeline,
                                                                                      clock):
    queued, running = submit_and_claim(lifecycle, queue)
    assert pipeline.deliver([pipeline.write(None, queued), _edited_by_hand(pipeline.write(queued, running))]) is None
    assert [e.status for e in pipeline.publisher.published] == ["queued"]
    assert len(pipeline.failures.waiting()) == 1

    result = pipeline.reconciler(lifecycle).run_pass()
    assert result.counts == {"errors": 1} and "stream_record_unreadable" in result.errors[0]
    assert len(pipeline.failures.waiting()) == 1, "held on the queue, not parked a second time"
    assert pipeline.reconciler(lifecycle).run_pass().counts == {}, "hidden until its retry"
    clock.advance(REPLAY_RETRY_BASE_S + 1)
    assert pipeline.reconciler(lifecycle).run_pass().counts == {"errors": 1}


def test_a_parked_record_a_version_reads_is_published_and_leaves_the_queue(lifecycle, queue, pipeline):
    """The version that parked the record could not read it; the one running now can: the
    record's event goes out and its message is removed (its alarm then clears)."""
    queued, running = submit_and_claim(lifecycle, queue)
    assert pipeline.deliver([pipeline.write(None, queued)]) is None
    pipeline.failures.park(pipeline.write(queued, running), "the new image is no job this version reads")
    reconciler = pipeline.reconciler(lifecycle)
    assert reconciler.run_pass().counts == {"stream_batch_replayed": 1}
    assert [e.status for e in pipeline.publisher.published] == ["queued", "running"]
    assert pipeline.failures.waiting() == []
    assert reconciler.run_pass().counts == {}


def test_a_parked_record_an_operator_gave_up_while_it_was_hidden_is_deleted_unpublished(lifecycle, queue, pipeline,
                                                                                        clock):
    """SQS hands out no hidden message, so an operator's delete of a parked record the reconciler
    holds between its tries is kept; the take that finds it deletes it, and nothing is published,
    even by a version that would read it now."""
    queued, running = submit_and_claim(lifecycle, queue)
    assert pipeline.deliver([pipeline.write(None, queued), _edited_by_hand(pipeline.write(queued, running))]) is None
    (message_id,) = pipeline.failures.waiting()
    assert pipeline.drops.request(message_id) is False, "shown on its queue until taken: deleted there"
    held = []
    assert pipeline.reconciler(lifecycle, observe=lambda m, extra: held.append((m, extra))).run_pass().counts == {
        "errors": 1}, "taken, still unreadable: held"
    assert [(m, extra["batch"], extra["error"].split(":")[0]) for m, extra in held] == [
        ("stream batch replay failed", "stream batch 102-102", "stream_record_unreadable")], "said, naming the batch"

    assert pipeline.drops.request(message_id) is True
    pipeline.consumer = StreamConsumer(lambda record: job_change({**record, "dynamodb": {
        **record["dynamodb"], "NewImage": {**record["dynamodb"]["NewImage"], "status": {"S": "running"}}}}),
        pipeline.publisher, pipeline.stats)  # a version that reads it
    lines = []
    reconciler = pipeline.reconciler(lifecycle, observe=lambda m, extra: lines.append((m, extra)))
    assert reconciler.run_pass().counts == {}, "still hidden"
    clock.advance(REPLAY_RETRY_BASE_S + 1)
    assert reconciler.run_pass().counts == {"stream_record_dropped": 1}
    assert lines == [("parked stream record dropped: deleted unpublished",
                      {"batch": "stream batch 102-102", "message_id": message_id})]
    assert [e.status for e in pipeline.publisher.published] == ["queued"], "its event given up"
    assert pipeline.failures.waiting() == []
    assert pipeline.drops.request(message_id) is False, "gone: a later delete is told so"


def test_a_parked_record_whose_drops_do_not_answer_is_not_published_on_a_guess(lifecycle, queue, pipeline, clock):
    """It may have been given up: held for its retry, an error of the pass."""
    queued, running = submit_and_claim(lifecycle, queue)
    assert pipeline.deliver([pipeline.write(None, queued)]) is None
    pipeline.failures.park(pipeline.write(queued, running), "the new image is no job this version reads")

    def down(message_id: str) -> bool:
        raise StoreUnavailableError("the stats table does not answer")

    pipeline.drops.taken = down
    result = pipeline.reconciler(lifecycle).run_pass()
    assert result.counts == {"errors": 1} and "store_unavailable" in result.errors[0]
    assert [e.status for e in pipeline.publisher.published] == ["queued"]
    assert len(pipeline.failures.waiting()) == 1
    assert pipeline.reconciler(lifecycle).run_pass().counts == {}, "held for its retry's wait"
    del pipeline.drops.taken
    clock.advance(REPLAY_RETRY_BASE_S * 2 + 1)
    assert pipeline.reconciler(lifecycle).run_pass().counts == {"stream_batch_replayed": 1}
    assert pipeline.drops.request(pipeline.failures.reasons.popitem()[0]) is False, "replayed: gone"


def test_a_record_of_another_item_of_a_job_is_no_job_write(lifecycle, queue, pipeline):
    """Runs, caches and counters share the table: their writes are no status change, and never
    an unreadable job to park (the mapping's filter does not hold on every emulator)."""
    queued, _ = submit_and_claim(lifecycle, queue)
    record = pipeline.write(None, queued)
    record["dynamodb"]["Keys"] = run_key(queued.id, 1)
    record["dynamodb"]["NewImage"] = {"pk": record["dynamodb"]["NewImage"]["pk"], "sk": {"S": "RUN#0001"}}
    assert job_change(record) is None
    assert pipeline.deliver([record]) is None and pipeline.publisher.published == []
    assert pipeline.failures.waiting() == []


def test_a_record_without_a_creation_time_is_timed_by_its_job_s_latest_recorded_time(lifecycle, queue, pipeline):
    """An emulator's records carry no ApproximateCreationDateTime: the event's timestamp is the
    write's own time, the same on every delivery and replay, not when the batch was read."""
    queued, running = submit_and_claim(lifecycle, queue)
    record = pipeline.write(queued, running)
    del record["dynamodb"]["ApproximateCreationDateTime"]
    assert running.last_recorded_time() is not None
    assert job_change(record).timestamp == running.last_recorded_time()


@pytest.mark.parametrize("record", [{"eventName": "REMOVE"}, {"eventName": "REMOVE", "dynamodb": {"SequenceNumber": "1"}}],
                         ids=["no stream data", "no keys"])
def test_a_record_that_names_no_item_is_no_job_write(record):
    assert job_change(record) is None


def test_a_deletion_without_a_creation_time_is_timed_when_it_is_read(lifecycle, queue, pipeline):
    """A removal (TTL, a purge) names no time of its own: an emulator's record of one is timed
    by now, so its event still carries a timestamp."""
    queued, _ = submit_and_claim(lifecycle, queue)
    record = pipeline.write(None, queued)
    data = record["dynamodb"]
    data["OldImage"] = data.pop("NewImage")
    del data["ApproximateCreationDateTime"]
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    change = job_change(record)
    assert change.new is None and change.old == queued
    assert before <= parse_time(change.timestamp) <= datetime.now(timezone.utc)


def test_an_image_without_attributes_is_no_job_rather_than_one_to_park(lifecycle, queue, pipeline):
    """An old image holding no attributes names no job: the write reads as the job's creation,
    not as a record to park."""
    queued, _ = submit_and_claim(lifecycle, queue)
    record = pipeline.write(None, queued)
    record["dynamodb"]["OldImage"] = {}
    change = job_change(record)
    assert change.old is None and change.new == queued


@pytest.mark.parametrize("broken", [
    {"payload_json": {"N": "1"}},  # stored JSON that is no text
    {"payload_ref": {"M": {"key": {"S": "jobs/job-1/payload.json"}}}},  # a claim check without its size
    {"progress": {"M": None}},  # a map that holds nothing
    {"attempts": {"N": "Infinity"}},  # a number no count can be
    {"status": {"X" * 2000: "paused"}},  # a type this version does not know, named at length
], ids=["json not text", "claim check without size", "empty map", "infinite count", "unknown type"])
def test_an_image_this_version_trips_on_in_any_way_is_parked_and_the_rest_goes_out(lifecycle, queue, pipeline,
                                                                                    broken):
    """However reading the image breaks, the record is parked with why (its sequence number, in
    a line or two) and the batch's other writes are published: an error of another kind would
    fail the whole batch, for the stream to retry it for nothing."""
    queued, running = submit_and_claim(lifecycle, queue)
    unreadable = pipeline.write(queued, running)
    unreadable["dynamodb"]["NewImage"].update(broken)
    assert pipeline.deliver([pipeline.write(None, queued), unreadable]) is None
    assert [e.status for e in pipeline.publisher.published] == ["queued"]
    (parked_id,) = pipeline.failures.waiting()
    reason = pipeline.failures.reasons[parked_id]
    sequence = unreadable["dynamodb"]["SequenceNumber"]
    assert reason.startswith(f"stream record {sequence}: the new image is no job this version reads: ")
    assert len(reason) <= DEAD_LETTER_REASON_CHARS


def test_an_unreadable_record_with_nowhere_to_park_it_fails_its_batch(pipeline, lifecycle, queue):
    queued, running = submit_and_claim(lifecycle, queue)
    consumer = StreamConsumer(job_change, pipeline.publisher, pipeline.stats)
    with pytest.raises(StreamRecordUnreadableError):
        consumer.consume([pipeline.write(None, queued), _edited_by_hand(pipeline.write(queued, running))])
    assert pipeline.publisher.published == [] and pipeline.stats.status_counts() == {}, "nothing half done"


def test_a_batch_whose_events_did_not_go_out_is_counted_all_the_same(lifecycle, queue, pipeline):
    """The counters do not wait on the bus: with EventBridge refusing, the batch's status
    changes are counted at once (operators see the jobs that moved while the stream retries
    the batch for hours, or gives it up to the replay), and a redelivery counts them no
    second time."""
    queued, running = submit_and_claim(lifecycle, queue)
    batch = [pipeline.write(None, queued), pipeline.write(queued, running)]
    pipeline.publisher.fail_next = 2
    assert pipeline.consumer.consume(batch) == batch[0]["dynamodb"]["SequenceNumber"]
    assert pipeline.publisher.published == []
    assert pipeline.stats.status_counts() == {"running": 1}
    assert pipeline.consumer.consume(batch) is not None
    assert pipeline.stats.status_counts() == {"running": 1}


class RefusingStats(InMemoryStatsStore):
    """A stats table that refuses every write (an outage, a grant taken away)."""

    def record_batch(self, deltas):
        raise StoreUnavailableError("the stats table refused the write")


def test_a_stats_table_that_refuses_holds_back_no_event(lifecycle, queue, pipeline):
    """The counters are the operators' bookkeeping: their table down, the batch fails (delivered
    again, counted once it answers) but its events have gone out, and go out again under the
    same ids, which subscribers drop."""
    queued, running = submit_and_claim(lifecycle, queue)
    batch = [pipeline.write(None, queued), pipeline.write(queued, running)]
    consumer = StreamConsumer(job_change, pipeline.publisher, RefusingStats())
    with pytest.raises(StoreUnavailableError):
        consumer.consume(batch)
    expected = [event_id_for(queued.id, queued.version), event_id_for(running.id, running.version)]
    assert [e.event_id for e in pipeline.publisher.published] == expected
    with pytest.raises(StoreUnavailableError):
        consumer.consume(batch)  # the stream's next delivery: the same events, the same ids
    assert [e.event_id for e in pipeline.publisher.published] == expected * 2
    assert pipeline.consumer.consume(batch) is None, "the table back: counted once"
    assert pipeline.stats.status_counts() == {"running": 1}


def test_a_pass_started_while_the_last_still_replays_takes_none_of_the_batches_that_one_holds(
        lifecycle, queue, pipeline, clock, monkeypatch):
    """A pass takes its failed batches at once and replays them one after another; when AWS
    answers slowly the later ones are reached more than the take's first wait after it, while the
    schedule's next pass already runs. That pass must not take them too: each batch's events go
    out once, not once a pass."""
    jobs = [submit_and_claim(lifecycle, queue)[0] for _ in range(2)]
    pipeline.publisher.fail_next = 2
    for job in jobs:
        pipeline.deliver([pipeline.write(None, job)])
    started = clock()

    def time_left() -> float:
        return 120 - (clock() - started).total_seconds()

    first, second = pipeline.reconciler(lifecycle), pipeline.reconciler(lifecycle)
    consume = pipeline.consumer.consume
    overlapping = []

    def slowly(records, **options):
        if not overlapping:  # the first batch's replay takes its requests' time; the next pass starts
            clock.advance(REPLAY_RETRY_BASE_S + 1)
            overlapping.append(None)
            overlapping[0] = second.run_pass(time_left_s=lambda: 119.0).counts
        return consume(records, **options)

    monkeypatch.setattr(pipeline.consumer, "consume", slowly)
    assert first.run_pass(time_left_s=time_left).counts == {"stream_batch_replayed": 2}
    assert overlapping == [{}]
    assert sorted(e.job_id for e in pipeline.publisher.published) == sorted(job.id for job in jobs), "each once"
