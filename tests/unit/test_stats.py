import time
from datetime import datetime, timezone

import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.dynamodb_items import tenant_counter_key
from chalicelib.adapters.memory_stats import InMemoryStatsStore
from chalicelib.adapters.stats import DynamoStatsStore
from chalicelib.defaults import CONFLICT_RETRIES, STATS_HOUR_TTL_S, STATS_SEEN_TTL_S, TRANSACT_WRITE_MAX_ITEMS
from chalicelib.domain.errors import StoreUnavailableError
from chalicelib.domain.job import Job
from chalicelib.domain.stats import BUCKETS_S, StatDelta, bucket_for, combine, delta_for, hours_back, percentile, summarize
from chalicelib.domain.status import JobStatus

NOW = datetime(2026, 1, 1, 12, 30, tzinfo=timezone.utc)


def image(status, version, **extra):
    return Job(id="j1", type="demo.steps", tenant="acme", user="ann", status=status, version=version,
               created_at="2026-01-01T12:00:00.000Z", **extra)


def test_insert_counts_a_submission_in_its_creation_hour():
    delta = delta_for(None, image("queued", 1), NOW)
    assert delta.status == {"queued": 1} and delta.hour == "2026-01-01T12"
    assert delta.events == {"submitted": 1, "t:demo.steps:submitted": 1}
    assert delta.dedupe_key == "j1#1"


def test_completion_moves_the_status_count_and_records_its_duration():
    old = image("running", 2)
    new = image("completed", 3, finished_at="2026-01-01T12:00:03.000Z")
    delta = delta_for(old, new, NOW)
    assert delta.status == {"running": -1, "completed": 1}
    assert delta.events == {"completed": 1, "t:demo.steps:completed": 1, f"d:{bucket_for(3)}": 1}
    assert BUCKETS_S[bucket_for(3)] == 5


def test_a_submission_and_an_end_count_in_the_hour_the_job_names_not_the_hour_of_counting():
    """A change counted hours late (a replayed or delayed stream batch) counts a submission in
    the hour the job was created and an end in the hour it finished."""
    submitted = image("queued", 1).model_copy(update={"created_at": "2026-01-01T09:59:59.999Z"})
    assert delta_for(None, submitted, NOW).hour == "2026-01-01T09"
    ended = image("failed", 3, finished_at="2026-01-01T10:00:00.000Z")
    assert delta_for(image("running", 2), ended, NOW).hour == "2026-01-01T10"


def test_progress_writes_count_nothing():
    assert delta_for(image("running", 2), image("running", 3), NOW) is None
    assert delta_for(None, None, NOW) is None


def test_removal_takes_the_job_out_of_its_status():
    delta = delta_for(image("completed", 4), None, NOW)
    assert delta.status == {"completed": -1} and delta.events == {} and delta.dedupe_key == "j1#4#removed"


def test_a_job_removed_unfinished_leaves_its_tenants_unfinished_jobs_and_one_removed_finished_does_not():
    """A submission refused once its record was written is removed queued: it leaves its
    tenant's unfinished jobs (what the quota reads). A finished job removed by its TTL left
    them when it finished: its removal counts nothing more."""
    removed = delta_for(image("queued", 1), None, NOW)
    assert (removed.tenant, removed.unfinished) == ("acme", -1)
    assert delta_for(image("completed", 4), None, NOW).unfinished == 0


def test_retry_and_restart_are_counted_as_events():
    assert delta_for(image("running", 2), image("retrying", 3), NOW).events["retried"] == 1
    assert delta_for(image("retrying", 3), image("running", 4), NOW).events["started"] == 1


def test_recording_the_same_change_twice_counts_once():
    stats = InMemoryStatsStore()
    delta = delta_for(None, image("queued", 1), NOW)
    assert stats.record_batch([delta]) == 1 and stats.record_batch([delta]) == 0
    assert stats.status_counts() == {"queued": 1}


def test_percentiles_come_from_the_histogram_buckets():
    histogram = {bucket_for(0.05): 50, bucket_for(4): 45, bucket_for(100): 5}
    assert percentile(histogram, 50) == 0.1
    assert percentile(histogram, 95) == 5
    assert percentile(histogram, 99) == 120
    assert percentile({}, 50) is None


def test_summary_adds_hours_and_rates():
    hourly = [{"completed": 3, "failed": 1, "t:a:completed": 3, "t:a:failed": 1, "d:3": 3}, {"completed": 4, "t:b:completed": 4}]
    summary = summarize({"queued": 2, "running": -1}, hourly, 2)
    assert summary["events"]["completed"] == 7 and summary["failure_rate"] == round(1 / 8, 4)
    assert summary["by_type"]["a"]["failure_rate"] == 0.25 and summary["by_type"]["b"]["failure_rate"] == 0.0
    assert summary["jobs_by_status"]["queued"] == 2 and summary["jobs_by_status"]["running"] == 0
    assert summary["completion_time_s"] == {"p50": BUCKETS_S[3], "p95": BUCKETS_S[3], "samples": 3}


def _walk(job_id, *statuses):
    """The deltas of job `job_id` going through `statuses` one write at a time, from its
    submission (the first) on; a finished one finished 3 s after it was created."""
    jobs = [image(status, version, finished_at="2026-01-01T12:00:03.000Z" if JobStatus(status).is_terminal else None)
            .model_copy(update={"id": job_id}) for version, status in enumerate(statuses, 1)]
    return [delta_for(old, new, NOW) for old, new in zip([None, *jobs], jobs)]


def test_the_summary_counts_each_change_under_the_event_operations_reads():
    """operations.md: the window's `events` (and each type's) are submitted, started, retried,
    completed, failed and canceled: every status change a job goes through counts once under
    its own, and the jobs by status are those the changes left in each."""
    deltas = [*_walk("a", "queued", "running", "retrying", "running", "completed"),
              *_walk("b", "queued", "running", "failed"), *_walk("c", "queued", "canceled")]
    totals = combine(deltas)
    summary = summarize(totals.status, totals.hours.values(), 1)
    counted = {"submitted": 3, "started": 3, "retried": 1, "completed": 1, "failed": 1, "canceled": 1}
    assert summary["events"] == counted and summary["failure_rate"] == 0.5
    assert summary["by_type"] == {"demo.steps": {**counted, "failure_rate": 0.5}}
    assert summary["jobs_by_status"] == {"queued": 0, "running": 0, "retrying": 0, "completed": 1, "failed": 1,
                                         "canceled": 1}
    assert summary["completion_time_s"] == {"p50": 5, "p95": 5, "samples": 1}  # 3 s: "within 5 s"


def test_the_completion_buckets_rise_from_a_tenth_of_a_second_to_a_day():
    """operations.md: percentiles are read off buckets from 0.1 s to 1 day. Each bound is above
    the one before (a completion falls into the first bucket whose bound it does not pass), and
    a completion past a day is reported as the last bound."""
    assert BUCKETS_S[0] == 0.1 and BUCKETS_S[-1] == 24 * 3600
    assert all(lower < upper for lower, upper in zip(BUCKETS_S, BUCKETS_S[1:]))
    assert percentile({bucket_for(2 * 24 * 3600): 1}, 50) == BUCKETS_S[-1]


def test_hours_back_ends_with_the_current_hour():
    assert hours_back(NOW, 3) == ["2026-01-01T12", "2026-01-01T11", "2026-01-01T10"]


class TransactingClient:
    """Answers TransactWriteItems like DynamoDB: cancelled, with reasons in item order, when a
    marker exists; otherwise every item is written. Its first `conflicts` transactions are
    cancelled as one that met another shard's write to the same counters is (TransactionConflict,
    nothing written); with `says_which` False a cancellation names its reasons in its message
    only, as DynamoDB's may."""

    def __init__(self, conflicts=0, says_which=True):
        self.items = {}
        self.calls = []
        self.conflicts = conflicts
        self.says_which = says_which

    def transact_write_items(self, TransactItems):
        self.calls.append(TransactItems)
        if self.conflicts:
            self.conflicts -= 1
            self._cancel([{"Code": "None"}] * (len(TransactItems) - 1) + [{"Code": "TransactionConflict"}])
        reasons = []
        for item in TransactItems:
            put = item.get("Put")
            exists = put is not None and put["Item"]["pk"]["S"] in self.items
            reasons.append({"Code": "ConditionalCheckFailed"} if exists else {"Code": "None"})
        if any(r["Code"] == "ConditionalCheckFailed" for r in reasons):
            self._cancel(reasons)
        for item in TransactItems:
            if "Put" in item:
                self.items[item["Put"]["Item"]["pk"]["S"]] = {"marker": 1}
            else:
                update = item["Update"]
                counters = self.items.setdefault(update["Key"]["pk"]["S"], {})
                names, values = update["ExpressionAttributeNames"], update["ExpressionAttributeValues"]
                for alias, name in names.items():
                    if alias.startswith("#c"):
                        counters[name] = counters.get(name, 0) + int(values[":" + alias[1:]]["N"])

    def _cancel(self, reasons):
        said = ", ".join(r["Code"] for r in reasons)
        error = {"Error": {"Code": "TransactionCanceledException",
                           "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{said}]"}}
        if self.says_which:
            error["CancellationReasons"] = reasons
        raise ClientError(error, "TransactWriteItems")


def _written(call):
    """A transaction's operations by the key of the item each writes."""
    return {op["Key" if "Key" in op else "Item"]["pk"]["S"]: op for op in (next(iter(i.values())) for i in call)}


def _deltas(first, count):
    return [delta_for(None, image("queued", 1).model_copy(update={"id": f"j{i}"}), NOW) for i in range(first, first + count)]


def test_a_batch_writes_each_shared_counter_item_once():
    client = TransactingClient()
    assert DynamoStatsStore(client, "stats").record_batch(_deltas(0, 60)) == 60
    (call,) = client.calls
    keys = list(_written(call))
    assert len(call) == len(keys) == 63  # 60 markers + 3 counters, each item once
    assert "STATUS" in keys and "HOUR#2026-01-01T12" in keys and len([k for k in keys if k.startswith("TENANT#")]) == 1
    assert client.items["STATUS"] == {"queued": 60}
    assert client.items["HOUR#2026-01-01T12"]["submitted"] == 60


def test_a_redelivered_batch_counts_only_its_new_changes():
    client = TransactingClient()
    store = DynamoStatsStore(client, "stats")
    store.record_batch(_deltas(0, 10))
    assert store.record_batch(_deltas(5, 10)) == 5  # j5..j9 were counted already
    assert client.items["STATUS"] == {"queued": 15}
    assert store.record_batch(_deltas(0, 15)) == 0
    assert client.items["STATUS"] == {"queued": 15}


def test_a_change_twice_in_one_batch_is_counted_once_by_one_marker():
    """A stream batch can hold one change twice (a record delivered again within it). DynamoDB
    refuses a transaction naming one item twice, so the change takes one marker and counts once."""
    client = TransactingClient()
    delta = _deltas(0, 1)[0]
    assert DynamoStatsStore(client, "stats").record_batch([delta, delta]) == 1
    (call,) = client.calls
    assert len(_written(call)) == len(call) == 4  # one marker, STATUS, the hour, the tenant
    assert client.items["STATUS"] == {"queued": 1}


def test_a_batch_meeting_another_shards_counts_is_tried_again_up_to_its_bound():
    """Another shard's batch adding to the same counters at that moment cancels the transaction
    (TransactionConflict, nothing written): tried again up to CONFLICT_RETRIES times, it lands.
    One conflict more is a store outage that counted nothing: the stream delivers the batch again."""
    landed = TransactingClient(conflicts=CONFLICT_RETRIES)
    assert DynamoStatsStore(landed, "stats").record_batch(_deltas(0, 3)) == 3
    assert len(landed.calls) == CONFLICT_RETRIES + 1 and landed.items["STATUS"] == {"queued": 3}
    refused = TransactingClient(conflicts=CONFLICT_RETRIES + 1)
    with pytest.raises(StoreUnavailableError):
        DynamoStatsStore(refused, "stats").record_batch(_deltas(0, 3))
    assert len(refused.calls) == CONFLICT_RETRIES + 1 and refused.items == {}


def test_a_cancellation_that_does_not_say_which_change_was_counted_counts_one_change_at_a_time():
    """A cancellation that names its ConditionalCheckFailed in its message only does not say
    which changes were counted before: each is then tried alone, so the new ones count once and
    the others not again."""
    client = TransactingClient(says_which=False)
    store = DynamoStatsStore(client, "stats")
    assert store.record_batch(_deltas(0, 2)) == 2
    assert store.record_batch(_deltas(1, 3)) == 2  # j1 was counted; j2 and j3 are new
    assert store.record_batch(_deltas(3, 1)) == 0
    assert client.items["STATUS"] == {"queued": 4}


def test_an_hours_counters_expire_counted_from_its_first_count_and_the_totals_never():
    """A change's marker expires STATS_SEEN_TTL_S after it was written and an hour's counters
    STATS_HOUR_TTL_S after the hour was first counted: a later count leaves the expiry where it is
    (if_not_exists). STATUS and a tenant's unfinished jobs are totals: they never expire."""
    client = TransactingClient()
    before = int(time.time())
    DynamoStatsStore(client, "stats").record_batch(_deltas(0, 1))
    after = int(time.time())
    (call,) = client.calls
    written = _written(call)
    marker = int(written["SEEN#j0#1"]["Item"]["expires_at"]["N"])
    assert before + STATS_SEEN_TTL_S <= marker <= after + STATS_SEEN_TTL_S
    hour = written["HOUR#2026-01-01T12"]
    assert hour["UpdateExpression"].startswith("SET #exp = if_not_exists(#exp, :exp) ADD ")
    assert hour["ExpressionAttributeNames"]["#exp"] == "expires_at"
    assert before + STATS_HOUR_TTL_S <= int(hour["ExpressionAttributeValues"][":exp"]["N"]) <= after + STATS_HOUR_TTL_S
    for total in ("STATUS", tenant_counter_key("acme")):
        assert "expires_at" not in written[total]["ExpressionAttributeNames"].values()
        assert written[total]["UpdateExpression"].startswith("ADD ")


def test_a_large_batch_is_split_within_the_transaction_limit():
    client = TransactingClient()
    assert DynamoStatsStore(client, "stats").record_batch(_deltas(0, 250)) == 250
    assert all(len(call) <= 100 for call in client.calls) and len(client.calls) == 3
    assert client.items["STATUS"] == {"queued": 250}


def test_a_transaction_is_split_off_only_when_the_next_changes_items_would_not_fit():
    """Each TransactWriteItems is a request the change-stream consumer pays for: a batch fills
    one up to TRANSACT_WRITE_MAX_ITEMS, counting only the items it writes (a change that counts
    no event in its hour, or leaves its tenant's unfinished jobs as they were, writes neither's
    item), and the next one starts empty."""
    exactly = TransactingClient()  # its markers, STATUS, the hour and the tenant: full
    assert DynamoStatsStore(exactly, "stats").record_batch(_deltas(0, TRANSACT_WRITE_MAX_ITEMS - 3)) == 97
    assert [len(call) for call in exactly.calls] == [TRANSACT_WRITE_MAX_ITEMS]
    quiet = TransactingClient()
    moved = [StatDelta(f"j{i}#2", status={"queued": -1, "running": 1}, hour=f"2026-01-0{1 + i // 24}T{i % 24:02d}",
                       tenant=f"t{i}") for i in range(60)]
    assert DynamoStatsStore(quiet, "stats").record_batch(moved) == 60
    assert [len(call) for call in quiet.calls] == [61]  # the markers and STATUS
    tenants = TransactingClient()
    created = [StatDelta(f"t{i}-job#1", status={"queued": 1}, tenant=f"t{i}", unfinished=1) for i in range(150)]
    assert DynamoStatsStore(tenants, "stats").record_batch(created) == 150
    assert all(len(call) >= TRANSACT_WRITE_MAX_ITEMS - 1 for call in tenants.calls[:-1]) and len(tenants.calls) == 4


def test_a_tenants_count_read_below_zero_is_none_unfinished():
    """A lost stream batch can leave a tenant's count below its jobs (a finish counted, its
    creation not): read as a negative number it would admit that many jobs past the quota."""

    class Counted:
        def get_item(self, **_kwargs):
            return {"Item": {"unfinished": {"N": "-2"}}}

    assert DynamoStatsStore(Counted(), "stats").unfinished("acme") == 0


def test_a_change_whose_stream_time_cannot_be_read_is_counted_in_the_hour_of_counting():
    """A record's time unreadable (none given, a malformed one) is no reason to fail its
    batch, which would hold back every event behind it: its start counts now."""
    from chalicelib.events.stream import record_changes
    from chalicelib.ports import JobChange

    stats = InMemoryStatsStore()
    before = hours_back(datetime.now(timezone.utc), 1)[0]
    changes = [JobChange("1", image("queued", 1), image("running", 2), ""),
               JobChange("2", image("running", 2), image("retrying", 3), "not a time")]
    assert record_changes(changes, stats) == 2
    after = hours_back(datetime.now(timezone.utc), 1)[0]
    counted = {hour: counts for hour, counts in zip((before, after), stats.hourly([before, after])) if counts}
    assert list(counted.values()) == [{"started": 1, "t:demo.steps:started": 1, "retried": 1,
                                       "t:demo.steps:retried": 1}]


def test_a_batch_of_progress_writes_counts_no_change():
    from chalicelib.events.stream import record_changes
    from chalicelib.ports import JobChange

    stats = InMemoryStatsStore()
    progress = [JobChange(str(v), image("running", v), image("running", v + 1), "2026-01-01T09:15:00.000Z")
                for v in (2, 3)]
    assert record_changes(progress, stats) == 0
    assert stats.status_counts() == {}


def test_a_change_counted_late_is_counted_in_the_hour_it_happened():
    """A stream batch replayed by the reconciler hours after its changes (or delivered late)
    counts each start and retry in the hour the stream recorded it, not the hour of counting."""
    from chalicelib.events.stream import record_changes
    from chalicelib.ports import JobChange

    stats = InMemoryStatsStore()
    changes = [
        JobChange("1", image("queued", 1), image("running", 2), "2026-01-01T09:15:00.000Z"),
        JobChange("2", image("running", 2), image("retrying", 3), "2026-01-01T09:20:00.000Z"),
    ]
    assert record_changes(changes, stats) == 2
    assert stats.hourly(["2026-01-01T09"]) == [{"started": 1, "t:demo.steps:started": 1,
                                                "retried": 1, "t:demo.steps:retried": 1}]
