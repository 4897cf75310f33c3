import bisect
import functools
import threading

import pytest
from pydantic import BaseModel

from chalicelib.adapters.clocks import SystemClock
from chalicelib.adapters.memory_blobs import InMemoryArtifactStore, InMemoryBlobStore
from chalicelib.defaults import MAX_CONTENT_TYPE_CHARS
from chalicelib.domain.errors import InvalidArtifactError
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle import JobLifecycle
from chalicelib.worker.runner import JobRunner
from tests.support.waiting import WatchedLock


class Empty(BaseModel):
    pass


@pytest.fixture
def setup(store, queue, clock):
    registry = JobTypeRegistry()
    blobs = InMemoryBlobStore(clock)
    artifacts = InMemoryArtifactStore(blobs, inline_limit=1024, clock=clock, jobs=store)

    @registry.register("t.outputs", Empty)
    def outputs(ctx, payload):
        ctx.artifact("note.txt", "héllo")
        ctx.artifact("table.json", {"rows": [1, 2]})
        ctx.artifact("blob.bin", b"\x00" * 10)
        ctx.artifact("buffer.bin", bytearray(b"\x01" * 12))  # a bytearray is bytes too
        ctx.artifact("big.txt", "x" * 2000)
        return "ok"

    @registry.register("t.bad", Empty, max_attempts=1)
    def bad(ctx, payload):
        ctx.artifact("set.txt", {1, 2})

    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    return lifecycle, JobRunner(lifecycle, registry, clock=SystemClock(), artifacts=artifacts), artifacts, blobs


def run(lifecycle, runner, queue, type_):
    job = lifecycle.submit(tenant="acme", user="ann", type=type_, payload={})
    (message,) = queue.drain()
    return job, runner.run(message)


def test_handler_artifacts_are_stored_by_kind_and_size(setup, queue):
    lifecycle, runner, artifacts, blobs = setup
    job, final = run(lifecycle, runner, queue, "t.outputs")
    assert final.status == JobStatus.COMPLETED
    stored = {a.name: (a.location, a.content_type, a.size) for a in artifacts.list(job.id).artifacts}
    assert stored == {
        "note.txt": ("inline", "text/plain; charset=utf-8", len("héllo".encode())),
        "table.json": ("inline", "application/json", len('{"rows":[1,2]}')),
        "blob.bin": ("s3", "application/octet-stream", 10),
        "buffer.bin": ("s3", "application/octet-stream", 12),
        "big.txt": ("s3", "text/plain; charset=utf-8", 2000),
    }
    assert artifacts.get(job.id, "note.txt").content == "héllo".encode()
    assert blobs.get(f"jobs/{job.id}/artifacts/0001/big.txt") == b"x" * 2000


def test_unsupported_artifact_data_fails_the_attempt(setup, queue):
    lifecycle, runner, _, _ = setup
    _, final = run(lifecycle, runner, queue, "t.bad")
    assert final.status == JobStatus.FAILED and final.error.code == "invalid_artifact"


def test_a_context_without_a_store_refuses_artifacts(store, queue, clock):
    from chalicelib.worker.context import JobContext
    from chalicelib.worker.progress import ProgressReporter

    lifecycle = JobLifecycle(store, queue, JobTypeRegistry(), clock=clock)
    reporter = ProgressReporter(store.get("x", mark_gone=False) or _job(), lifecycle.record_progress,
                                clock=SystemClock())
    ctx = JobContext(reporter, reload=functools.partial(store.get, mark_gone=False), clock=SystemClock(),
                     deadline=1e12)
    with pytest.raises(InvalidArtifactError):
        ctx.artifact("a.txt", "x")


def _job():
    from chalicelib.domain.job import Job

    return Job(id="x", type="t", tenant="acme", user="ann", created_at="2026-01-01T00:00:00.000Z")


def test_names_and_content_types_fullmatch():
    from chalicelib.adapters.artifacts import check_name, keeps_inline
    from chalicelib.domain.errors import InvalidArtifactError

    check_name("report.txt")
    for name in ("report.txt\n", "a#b", "-x", ""):
        with pytest.raises(InvalidArtifactError):
            check_name(name)
    assert keeps_inline(b"x", "text/plain", 1024)
    assert not keeps_inline(b"x", "text/plain\n", 1024)


@pytest.mark.parametrize("name", ["a", "7", "2026-report.csv", "rows_0001.JSON", "Q3.summary-v2_final.txt"])
def test_a_name_of_letters_digits_dots_underscores_and_dashes_is_taken(name):
    from chalicelib.adapters.artifacts import check_name

    assert check_name(name) == name


@pytest.mark.parametrize("name", [None, 42, b"report.txt"])
def test_a_name_that_is_no_text_is_an_invalid_artifact(name):
    from chalicelib.adapters.artifacts import check_name

    with pytest.raises(InvalidArtifactError):
        check_name(name)


def test_a_refused_name_or_content_type_is_told_the_rule_and_shown_escaped_and_cut():
    """The refusal reaches the handler (and the job's error): it says what is taken and shows
    what was given as a quoted literal, cut short, never the kilobytes a handler passed."""
    from chalicelib.adapters.artifacts import check_content_type, check_name

    name = "a/b\n" + "x" * 1000
    with pytest.raises(InvalidArtifactError) as refused:
        check_name(name)
    assert "1-128 characters" in refused.value.message
    assert refused.value.message.endswith(f"not {repr(name)[:150]}")
    content_type = "text/plain\r\n" + "x" * 1000
    with pytest.raises(InvalidArtifactError) as refused:
        check_content_type(content_type)
    assert refused.value.message.endswith(f"not {repr(content_type)[:300]}")


@pytest.mark.parametrize("content_type", [
    "text/plain", "text/csv; charset=iso-8859-1", "application/vnd.api+json", 'text/plain;format="a b"',
])
def test_a_media_type_is_a_content_type(content_type):
    from chalicelib.adapters.artifacts import check_content_type

    assert check_content_type(content_type) == content_type


@pytest.mark.parametrize("content_type", [
    "text/plain\r\nSet-Cookie: a=b", "text/plain\n", "text", "text/plain; charset", "téxt/plain", "", None, 42,
    "text/" + "x" * 300, "text/csv charset=utf-8",
])
def test_anything_else_is_no_content_type(content_type):
    from chalicelib.adapters.artifacts import check_content_type

    with pytest.raises(InvalidArtifactError):
        check_content_type(content_type)


def test_a_content_type_is_taken_up_to_its_bound_and_refused_one_past_it():
    from chalicelib.adapters.artifacts import check_content_type

    at_bound = "text/" + "x" * (MAX_CONTENT_TYPE_CHARS - len("text/"))
    assert check_content_type(at_bound) == at_bound
    with pytest.raises(InvalidArtifactError):
        check_content_type(at_bound + "x")


@pytest.mark.parametrize("content_type", [
    "application/xml", "application/ld+json", "application/vnd.api+json", "application/atom+xml",
    "text/x-markdown", "text/vnd.a+b", "Text/CSV; charset=UTF-8", "APPLICATION/JSON",
])
def test_small_utf8_data_of_any_text_type_whatever_its_case_is_kept_inline(content_type):
    from chalicelib.adapters.artifacts import keeps_inline

    assert keeps_inline(b"<a>1</a>", content_type, 1024)


def test_an_artifacts_object_key_names_its_attempt_and_which_of_its_writes_it_is():
    """docs/data-model.md: `jobs/<id>/artifacts/<attempt>/<name>`, an attempt's later writes
    of a name under `<attempt>-<write>`; one written outside an attempt under its name alone."""
    from chalicelib.adapters.artifacts import blob_key

    job_id = "00000000-0000-4000-8000-000000000001"
    assert blob_key(job_id, "out.bin") == f"jobs/{job_id}/artifacts/out.bin"
    assert blob_key(job_id, "out.bin", 2) == f"jobs/{job_id}/artifacts/0002/out.bin"
    assert blob_key(job_id, "out.bin", 1, 1) == f"jobs/{job_id}/artifacts/0001/out.bin"
    assert blob_key(job_id, "out.bin", 12, 3) == f"jobs/{job_id}/artifacts/0012-3/out.bin"


def test_only_text_that_reads_back_as_utf8_is_kept_inline():
    from chalicelib.adapters.artifacts import keeps_inline

    assert keeps_inline("René".encode(), "text/plain; charset=utf-8", 1024)
    assert keeps_inline(b"plain ascii", "text/csv; charset=iso-8859-1", 1024)  # the same bytes either way
    assert not keeps_inline("René".encode("iso-8859-1"), "text/csv; charset=iso-8859-1", 1024)


@pytest.mark.parametrize("kept", ["inline", "s3"])
def test_an_attempt_that_lost_its_lease_replaces_no_artifact(store, queue, clock, kept):
    """A worker paused past its lease wakes after the next attempt took over and completed: its
    artifact of the same name must not replace the one the job ended with (its S3 object
    neither), nor add one; the late write raises AttemptEndedError."""
    from chalicelib.domain.errors import AttemptEndedError
    from chalicelib.ports import JobMessage

    registry = JobTypeRegistry()
    blobs = InMemoryBlobStore(clock)
    artifacts = InMemoryArtifactStore(blobs, inline_limit=1024, clock=clock, jobs=store)
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    runner = JobRunner(lifecycle, registry, clock=SystemClock(), artifacts=artifacts)
    size = 10 if kept == "inline" else 2000
    raised = []

    @registry.register("t.slow", Empty, timeout_s=60)
    def slow(ctx, payload):
        if ctx.attempt == 2:
            ctx.artifact("out.txt", "2" * size)
            return "attempt 2"
        clock.advance(60 + 31)  # paused past its lease: another worker takes the job over
        assert lifecycle.claim(JobMessage(ctx.job_id, 1)).reason == "took over an abandoned attempt"
        clock.advance(900)
        assert runner.run(JobMessage(ctx.job_id, 2)).status == JobStatus.COMPLETED
        for name in ("out.txt", "late.txt"):
            try:
                ctx.artifact(name, "1" * size)
            except AttemptEndedError as exc:
                raised.append(exc)
        return "attempt 1"

    job = lifecycle.submit(tenant="acme", user="ann", type="t.slow", payload={})
    queue.drain()
    runner.run(JobMessage(job.id, 1))
    assert len(raised) == 2
    assert [a.name for a in artifacts.list(job.id).artifacts] == ["out.txt"]
    out = artifacts.get(job.id, "out.txt")
    assert (out.content or blobs.get(out.blob_key)) == b"2" * size
    final = store.get(job.id, mark_gone=False)
    assert final.status == JobStatus.COMPLETED and final.result == "attempt 2"


class ArtifactPartition:
    """A DynamoDB client holding one job's `count` artifact items, answering a Query as DynamoDB
    does: up to its Limit, at most `per_call` items a call (its 1 MB, of large inline items),
    a LastEvaluatedKey whenever it stopped short of the partition's end."""

    def __init__(self, job_id: str, count: int, per_call: int) -> None:
        self.items = [{"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": f"ART#row-{n:05d}.txt"},
                       "name": {"S": f"row-{n:05d}.txt"}, "content_type": {"S": "text/plain"},
                       "size": {"N": "1"}, "created_at": {"S": "2026-01-01T00:00:00.000Z"}} for n in range(count)]
        self.keys = [i["sk"]["S"] for i in self.items]  # sorted, as the table's sort key is
        self.per_call = per_call
        self.read = 0

    def query(self, **request):
        assert request.get("Limit", 1) >= 1, "DynamoDB refuses a Limit below 1 (ValidationException)"
        start = request.get("ExclusiveStartKey", {}).get("sk", {}).get("S", "")
        first = bisect.bisect_right(self.keys, start)  # a seek, as DynamoDB's: not a scan of the partition
        left = len(self.items) - first
        taken = self.items[first: first + min(request.get("Limit", left), self.per_call)]
        self.read += len(taken)
        answer = {"Items": taken}
        if taken and len(taken) < left + (1 if len(taken) == request.get("Limit") else 0):
            answer["LastEvaluatedKey"] = {"pk": taken[-1]["pk"], "sk": taken[-1]["sk"]}
        return answer


@pytest.mark.parametrize("per_call", [7, 100])  # a page read in several calls, or in one
def test_a_page_of_a_job_with_tens_of_thousands_of_artifacts_reads_that_page_only(per_call):
    from chalicelib.adapters.artifacts import DynamoArtifactStore

    job_id = "00000000-0000-4000-8000-000000000001"
    ddb = ArtifactPartition(job_id, 20_000, per_call=per_call)
    store = DynamoArtifactStore(ddb, "jobs", InMemoryBlobStore(), inline_limit=1024)
    first = store.list(job_id, limit=25)
    assert [a.name for a in first.artifacts] == [f"row-{n:05d}.txt" for n in range(25)]
    assert ddb.read == 26  # the page and the one item that says more follow
    ddb.read = 0
    second = store.list(job_id, limit=25, cursor=first.cursor)
    assert [a.name for a in second.artifacts] == [f"row-{n:05d}.txt" for n in range(25, 50)] and ddb.read == 26
    last = store.list(job_id, limit=25, cursor=store.list(job_id, limit=19_990).cursor)
    assert [a.name for a in last.artifacts] == [f"row-{n:05d}.txt" for n in range(19_990, 20_000)]
    assert last.cursor is None


def test_a_page_whose_reads_stop_at_its_size_on_a_call_limit_still_reads_the_item_past_it():
    """DynamoDB's 1 MB can end a call exactly when the page is full: the page reads on for the
    one item that tells whether more follow, and keeps its cursor to them."""
    from chalicelib.adapters.artifacts import DynamoArtifactStore

    job_id = "00000000-0000-4000-8000-000000000001"
    store = DynamoArtifactStore(ArtifactPartition(job_id, 60, per_call=5), "jobs", InMemoryBlobStore(),
                                inline_limit=1024)
    names, cursor = [], None
    while True:
        page = store.list(job_id, limit=25, cursor=cursor)
        names += [a.name for a in page.artifacts]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert names == [f"row-{n:05d}.txt" for n in range(60)]


class ArtifactItems:
    """A DynamoDB client holding artifact items by key: put_item and get_item."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict] = {}

    def put_item(self, TableName: str, Item: dict) -> None:
        self.items[(Item["pk"]["S"], Item["sk"]["S"])] = Item

    def get_item(self, TableName: str, Key: dict) -> dict:
        item = self.items.get((Key["pk"]["S"], Key["sk"]["S"]))
        return {} if item is None else {"Item": item}


@pytest.mark.parametrize("kind", ["memory", "dynamodb"])
def test_an_artifact_reads_back_with_the_time_its_write_answered(kind):
    """What `put` answers is what a read shows: one moment of the clock, not one read each."""
    from datetime import datetime, timedelta, timezone
    from itertools import count

    from chalicelib.adapters.artifacts import DynamoArtifactStore

    seconds = count()

    def ticking():
        return datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=next(seconds))

    blobs = InMemoryBlobStore()
    artifacts = (InMemoryArtifactStore(blobs, inline_limit=1024, clock=ticking) if kind == "memory" else
                 DynamoArtifactStore(ArtifactItems(), "jobs", blobs, inline_limit=1024, clock=ticking))
    info = artifacts.put("00000000-0000-4000-8000-000000000001", "note.txt", b"hi", "text/plain")
    assert artifacts.get("00000000-0000-4000-8000-000000000001", "note.txt").info == info


@pytest.mark.parametrize("learns", ["poll", "report"])
def test_an_artifact_made_once_the_handler_knows_of_the_cancel_is_refused_and_those_before_kept(
        store, queue, clock, learns):
    """A canceled job keeps no result (docs/jobs.md): once the handler knows of the cancel
    request, even having swallowed it, `ctx.artifact` raises JobCancelledError and stores
    nothing, as `ctx.progress` and `ctx.spawn` do. Outputs stored before it are the job's."""
    from chalicelib.domain.errors import JobCancelledError

    registry, refused = JobTypeRegistry(), []
    artifacts = InMemoryArtifactStore(InMemoryBlobStore(clock), inline_limit=1024, clock=clock, jobs=store)

    @registry.register("t.outputs_past_a_cancel", Empty)
    def outputs_past_a_cancel(ctx, payload):
        ctx.artifact("before.txt", "written before the request")
        lifecycle.cancel("acme", ctx.job_id)
        try:
            if learns == "poll":
                ctx.check_cancelled(fresh=True)
            else:
                ctx.progress(50, force=True)
        except JobCancelledError:
            pass  # swallowed: the handler goes on
        try:
            ctx.artifact("after.txt", "written after it")
        except JobCancelledError as exc:
            refused.append(exc.message)
        return "ok"

    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    runner = JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0, artifacts=artifacts)
    job, final = run(lifecycle, runner, queue, "t.outputs_past_a_cancel")
    assert final.status == JobStatus.CANCELED
    assert [a.name for a in artifacts.list(job.id).artifacts] == ["before.txt"]
    assert refused == [f"job {job.id} was canceled: artifact 'after.txt' is not stored"]


def test_a_late_write_of_an_attempt_that_lost_its_lease_keeps_the_artifact_it_stored_before(store, queue, clock):
    """An attempt stores an artifact in S3, then loses its lease while its handler still runs
    (the reconciler fails the job `worker_lost`) and writes the same name again: that write is
    refused (AttemptEndedError), and the artifact the job lists still reads as first stored. The
    late upload neither replaces its object nor, refused, deletes it."""
    from chalicelib.defaults import LEASE_GRACE_S
    from chalicelib.domain.errors import AttemptEndedError
    from chalicelib.reconciler import Reconciler

    registry = JobTypeRegistry()
    blobs = InMemoryBlobStore(clock)
    artifacts = InMemoryArtifactStore(blobs, inline_limit=1024, clock=clock, jobs=store)
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    refused = []

    @registry.register("t.snapshots", Empty, max_attempts=1)
    def snapshots(ctx, payload):
        ctx.artifact("report.bin", b"first")
        clock.advance(ctx.job.timeout_s + LEASE_GRACE_S + 1)  # its worker stalls past its lease
        Reconciler(lifecycle, None).run_pass()
        try:
            ctx.artifact("report.bin", b"late")
        except AttemptEndedError as exc:
            refused.append(exc)

    job, _ = run(lifecycle, JobRunner(lifecycle, registry, clock=SystemClock(), artifacts=artifacts), queue,
                 "t.snapshots")
    after = store.get(job.id, mark_gone=False)
    assert (after.status, after.error.code, len(refused)) == (JobStatus.FAILED, "worker_lost", 1)
    kept = artifacts.get(job.id, "report.bin")
    assert (kept.info.size, blobs.get(kept.blob_key)) == (5, b"first")


def artifacts_with_put(store, clock, monkeypatch, hook):
    """An in-memory artifact store (text past 1,024 bytes to S3) whose every `put` first calls
    `hook(name, kwargs)`."""
    artifacts = InMemoryArtifactStore(InMemoryBlobStore(clock), inline_limit=1024, clock=clock, jobs=store)
    put = artifacts.put

    def hooked(job_id, name, data, content_type, **kwargs):
        hook(name, kwargs)
        return put(job_id, name, data, content_type, **kwargs)

    monkeypatch.setattr(artifacts, "put", hooked)
    return artifacts


def test_a_rewrite_deletes_only_an_object_the_artifact_named(store, queue, clock, monkeypatch):
    """Each write of a name deletes, once it lands, the object of the write before it: only when
    that write went to S3. An artifact kept in the job's record (small text) left no object, so
    rewriting it asks the bucket to delete nothing (a request per rewrite, for a key that never
    existed); the write after one that went to S3 deletes that object, and no more."""
    registry, replaced = JobTypeRegistry(), []
    artifacts = artifacts_with_put(store, clock, monkeypatch, lambda name, kwargs: replaced.append(kwargs["replaces"]))
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)

    @registry.register("t.rewrites_small", Empty, max_attempts=1)
    def rewrites_small(ctx, payload):
        for text in ("first", "second", "x" * 2000, "fourth"):  # inline, inline, S3, inline
            ctx.artifact("note.txt", text)

    _, final = run(lifecycle, JobRunner(lifecycle, registry, clock=SystemClock(), artifacts=artifacts), queue,
                   "t.rewrites_small")
    assert final.status == JobStatus.COMPLETED
    assert [tuple(r) for r in replaced] == [(), (), (), (3,)]


def test_two_threads_writing_one_name_write_it_one_at_a_time(store, queue, clock, monkeypatch):
    """A handler writing the same artifact from two threads: its writes of one name are made one
    at a time, so the second starts once the first landed and deletes that one's object, not
    beside it (both deleting only what was named before them: the first's object left in the
    bucket, named by no item)."""
    registry, started = JobTypeRegistry(), []
    inside, release, waiting = threading.Event(), threading.Event(), threading.Event()

    def hold_the_first(name, kwargs):
        started.append((kwargs["write"], tuple(kwargs["replaces"]), release.is_set()))
        if len(started) == 1:
            inside.set()
            assert release.wait(5)
        else:
            waiting.set()  # started: beside the first when it is still held

    artifacts = artifacts_with_put(store, clock, monkeypatch, hold_the_first)
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)

    @registry.register("t.two_writers", Empty, max_attempts=1)
    def two_writers(ctx, payload):
        locks = ctx._artifact_locks
        watched = type("WatchedLocks", (dict,), {
            "setdefault": lambda self, key, default: WatchedLock(locks.setdefault(key, default), waiting)})
        ctx._artifact_locks = watched()
        first = threading.Thread(target=ctx.artifact, args=("rows.csv", "a" * 2000))
        first.start()
        assert inside.wait(5)
        second = threading.Thread(target=ctx.artifact, args=("rows.csv", "b" * 2000))
        second.start()
        assert waiting.wait(5)  # waiting for the first's lock, or started beside it
        release.set()
        first.join(5)
        second.join(5)

    _, final = run(lifecycle, JobRunner(lifecycle, registry, clock=SystemClock(), artifacts=artifacts), queue,
                   "t.two_writers")
    assert final.status == JobStatus.COMPLETED
    assert started == [(1, (), False), (2, (1,), True)], started


@pytest.mark.parametrize("refusal", ["content_type", "store_unavailable", "lost_answer"])
def test_a_write_after_a_refused_one_deletes_the_object_the_artifact_named(store, queue, clock, monkeypatch, refusal):
    """An attempt writes `report.bin` (to S3), has its second write refused (a content type that
    is none; the store not answering: the item not written, or written with its answer lost)
    and writes the name a third time. The refused write had taken a number: the third deleted
    that one's key, not the object of the write the artifact named, which stayed in the bucket,
    named by no item, until the job's purge. Only the object the artifact names is left."""
    from chalicelib.domain.errors import StoreUnavailableError
    from chalicelib.ports import Artifact, ArtifactInfo

    registry = JobTypeRegistry()
    blobs = InMemoryBlobStore(clock)
    artifacts = InMemoryArtifactStore(blobs, inline_limit=1024, clock=clock, jobs=store)
    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    put, writes = artifacts.put, []

    def second_unanswered(job_id, name, data, content_type, **kwargs):
        writes.append(name)
        if len(writes) != 2 or refusal == "content_type":
            return put(job_id, name, data, content_type, **kwargs)
        key = f"jobs/{job_id}/artifacts/0001-{kwargs['write']}/{name}"
        blobs.put(key, data, content_type)  # uploaded; the item not written, or (its answer lost) written:
        if refusal == "lost_answer":
            info = ArtifactInfo(job_id, name, content_type, len(data), "2026-01-01T00:00:00.000Z", "s3")
            artifacts.items[(job_id, name)] = Artifact(info, blob_key=key)
        raise StoreUnavailableError(f"could not record artifact {name} of job {job_id}")

    monkeypatch.setattr(artifacts, "put", second_unanswered)

    @registry.register("t.rewrites", Empty, max_attempts=1)
    def rewrites(ctx, payload):
        ctx.artifact("report.bin", b"1" * 2000)
        try:
            ctx.artifact("report.bin", b"2" * 2000, content_type="not a type" if refusal == "content_type" else None)
        except (InvalidArtifactError, StoreUnavailableError):
            pass
        ctx.artifact("report.bin", b"3" * 2000)

    job, final = run(lifecycle, JobRunner(lifecycle, registry, clock=SystemClock(), artifacts=artifacts), queue,
                     "t.rewrites")
    assert final.status == JobStatus.COMPLETED
    named = artifacts.get(job.id, "report.bin")
    assert blobs.get(named.blob_key) == b"3" * 2000
    assert sorted(blobs.objects) == [named.blob_key]
