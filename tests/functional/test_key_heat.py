"""Key heat: no item of the pipeline's own bookkeeping runs hot. 10,000 jobs of 100 tenants go
through the lifecycle on the in-memory adapters; every job write becomes a stream record,
cut into batches as the stream mapping delivers them, and the stats recorder consumes them.
Writes are counted per item key of the stats table, where the shared items live (`STATUS`,
`HOUR#…`, a tenant's count, the markers). The jobs table holds none: its items are a job's own
(`JOB#<id>`) or a tenant's scope's, and its indexes' partitions (`DUE#<shard>`,
`FIN#<day>#<shard>`, a tenant's status) are sized in docs/capacity.md, whose index entries a
job and stats writes a job alone are counted here too, from the bench job's own writes.
In-memory only (no moto); it sits in this tier for its ~25 s, to keep `make unit` quick."""

import re
from collections import Counter
from pathlib import Path

import pytest
from chalicelib.adapters.dynamodb_items import job_key, job_to_item
from chalicelib.adapters.dynamodb_stream import job_change
from chalicelib.adapters.memory import InMemoryJobQueue, InMemoryJobStore
from chalicelib.adapters.memory_stats import InMemoryStatsStore
from chalicelib.job_types import build_registry
from chalicelib.lifecycle import ClaimOutcome, JobLifecycle
from chalicelib.ports import JobMessage
from chalicelib.events.stream import record_changes
from tests.unit.conftest import FakeClock

JOBS, TENANTS, WAVE, STREAM_BATCH = 10_000, 100, 200, 100
CAPACITY = Path(__file__).resolve().parents[2] / "docs" / "capacity.md"
# The jobs table's indexes by their key attributes (infra/resources.json).
INDEXES = {"by_tenant": "gsi1", "by_status": "gsi2", "by_type": "gsi3", "by_finished_day": "gsi4", "by_due": "gsi5"}


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def lifecycle(clock):
    return JobLifecycle(InMemoryJobStore(), InMemoryJobQueue(), build_registry(demo_types=True), clock=clock)


def changes(records):
    """The job writes the stream adapter decodes from `records`."""
    return [job_change(record) for record in records]


class Stream:
    """The jobs table's stream as the lifecycle's writes fill it (NEW_AND_OLD_IMAGES): a write's
    old image is the item the job's last write left, encoded once, as the table holds it."""

    def __init__(self):
        self._last = {}
        self.records = []

    def write(self, job):
        item = job_to_item(job)
        self.records.append({"dynamodb": {
            "Keys": job_key(job.id),
            "OldImage": self._last.pop(job.id, None),
            "NewImage": item,
            "SequenceNumber": str(len(self.records)),
        }})
        if not job.status.is_terminal:
            self._last[job.id] = item
        return job


def run_jobs(lifecycle, clock, jobs=JOBS):
    stream = Stream()
    for start in range(0, jobs, WAVE):  # waves of concurrent jobs, so their writes interleave
        queued = [stream.write(lifecycle.submit(tenant=f"t{(start + i) % TENANTS}", user="u", type="demo.steps",
                                                payload={"steps": 4, "step_ms": 0})) for i in range(WAVE)]
        running = []
        for job in queued:
            claim = lifecycle.claim(JobMessage(job.id, 1))
            assert claim.outcome == ClaimOutcome.RUN
            running.append(stream.write(claim.job))
        running = [stream.write(lifecycle.report_progress(job, 50)) for job in running]
        for job in running:
            stream.write(lifecycle.complete(job, {"ok": True}))
        clock.advance(1)
    return stream.records


def test_no_shared_item_takes_more_than_one_write_per_50_status_changes(lifecycle, clock):
    records = run_jobs(lifecycle, clock)
    stats = InMemoryStatsStore()
    status_changes = 0
    for start in range(0, len(records), STREAM_BATCH):
        status_changes += record_changes(changes(records[start:start + STREAM_BATCH]), stats)
    assert status_changes == 3 * JOBS  # submitted, started, completed: each counted once

    hottest, count = stats.writes.most_common(1)[0]
    assert count * 50 <= status_changes, f"{hottest} written {count} times for {status_changes} status changes"
    # and the counters still add up
    assert {k: v for k, v in stats.status_counts().items() if v} == {"completed": JOBS}
    assert sum(h.get("completed", 0) for h in stats.hours.values()) == JOBS
    assert all(stats.unfinished(f"t{i}") == 0 for i in range(TENANTS))  # every admitted job finished


def test_redelivered_and_bisected_batches_count_nothing_twice(lifecycle, clock):
    records = run_jobs(lifecycle, clock, jobs=WAVE)
    once, again = InMemoryStatsStore(), InMemoryStatsStore()
    for start in range(0, len(records), STREAM_BATCH):
        record_changes(changes(records[start:start + STREAM_BATCH]), once)
    for start in range(0, len(records), STREAM_BATCH):
        batch = changes(records[start:start + STREAM_BATCH])
        record_changes(batch[: len(batch) // 2], again)  # bisected after a failure ...
        record_changes(batch, again)  # ... then the whole batch again
        assert record_changes(batch, again) == 0
    assert again.status_counts() == once.status_counts()
    assert {k: v for k, v in once.status_counts().items() if v} == {"completed": WAVE}
    assert again.hours == once.hours
    assert again.tenants == once.tenants


def the_bench_job_alone(lifecycle):
    """docs/capacity.md's job: `demo.steps` submitted, claimed, 5 progress writes, completed;
    each of its writes a stream record."""
    stream = Stream()
    job = stream.write(lifecycle.submit(tenant="acme", user="u", type="demo.steps",
                                        payload={"steps": 100, "step_ms": 100}))
    claim = lifecycle.claim(JobMessage(job.id, 1))
    assert claim.outcome == ClaimOutcome.RUN
    job = stream.write(claim.job)
    for percent in (20, 40, 60, 80, 99):
        job = stream.write(lifecycle.report_progress(job, percent))
    stream.write(lifecycle.complete(job, {"ok": True}))
    return stream.records


def shape(partition):
    """An index partition key as docs/capacity.md names it: the tenant, the shard, the day as
    placeholders."""
    partition = re.sub(r"^T#acme(?=#|$)", "T#<tenant>", partition)
    partition = re.sub(r"^DUE#\d+$", "DUE#<shard>", partition)
    return re.sub(r"^FIN#\d{4}-\d{2}-\d{2}#\d+$", "FIN#<day>#<shard>", partition)


def index_writes(records):
    """(index partition, index) -> the index entries written there: KEYS_ONLY indexes are written
    only where a write changes the entry's key, a key that changes a delete and a put."""
    writes = Counter()
    for record in records:
        old, new = record["dynamodb"]["OldImage"] or {}, record["dynamodb"]["NewImage"] or {}
        for index, prefix in INDEXES.items():
            before, after = ((image.get(f"{prefix}pk"), image.get(f"{prefix}sk")) for image in (old, new))
            if before != after:
                for partition, _ in (before, after):
                    if partition is not None:
                        writes[shape(partition["S"]), index] += 1
    return writes


def capacity_rows():
    """The first two cells of each row of docs/capacity.md's tables."""
    for line in CAPACITY.read_text().splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            yield cells[0], cells[1] if len(cells) > 1 else ""


def test_each_index_partitions_writes_a_job_are_the_ones_docs_capacity_gives(lifecycle):
    """The per-partition write rates, and which limit binds first, are worked from the index
    entries one job writes per partition key; here they are counted from the job's own writes."""
    documented = {}
    for first, second in capacity_rows():
        named = re.fullmatch(r"`([^`]+)` \((by_\w+)[,)].*", first)
        if named:
            documented[named.group(1), named.group(2)] = int(re.match(r"\d+", second).group())
    assert len(documented) == 7, documented
    assert dict(index_writes(the_bench_job_alone(lifecycle))) == documented


def test_the_stats_writes_of_a_job_alone_are_the_ones_docs_capacity_gives(lifecycle):
    """Alone, each of the job's writes is its own stream batch: each status change its own
    transaction, every item of which costs 2 WRU."""
    stats = InMemoryStatsStore()
    for record in the_bench_job_alone(lifecycle):
        record_changes(changes([record]), stats)
    (written,) = [second for first, second in capacity_rows() if first.startswith("stats: ")]
    assert 2 * sum(stats.writes.values()) == int(written.rsplit("=", 1)[-1]), (written, stats.writes)
