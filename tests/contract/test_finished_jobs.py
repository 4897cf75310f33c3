"""FinishedJobs: finished jobs found by day without a scan, and purged whole."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from chalicelib.defaults import BATCH_WRITE_MAX
from chalicelib.domain.errors import ArtifactNotFoundError, BlobNotFoundError, StoreUnavailableError
from chalicelib.domain.job import Run
from chalicelib.domain.status import JobStatus
from chalicelib.ports import ChangeSet, JobQuery
from tests.contract.test_job_store import big, make_job, running


def ids_of(pages) -> list[list[str]]:
    return [page.ids for page in pages]


def _finished(i: int, finished_at: str, **fields):
    return make_job(i, status=JobStatus.COMPLETED, finished_at=finished_at, **fields)


def test_finished_before_lists_jobs_finished_in_the_window_only(adapters):
    old = [_finished(i, f"2026-01-0{1 + i % 3}T10:00:00.000Z", tenant=f"t{i % 2}") for i in range(6)]
    recent = _finished(10, "2026-01-09T10:00:00.000Z")
    too_old = _finished(11, "2025-12-20T10:00:00.000Z")
    for job in [*old, recent, too_old, make_job(12)]:
        adapters.store.create(job)
    # a job that finishes through a status write is found too
    live = running(adapters.store, make_job(13))
    adapters.store.apply(live, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED,
                                                             "finished_at": "2026-01-02T12:00:00.000Z"}))
    since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    cutoff = datetime(2026, 1, 5, tzinfo=timezone.utc)
    pages = ids_of(adapters.finished.finished_before(cutoff, since=since, page_size=2))
    assert all(len(page) <= 2 for page in pages)
    assert sorted(i for page in pages for i in page) == sorted([j.id for j in old] + [live.id])


def test_finished_before_yields_the_empty_pages_of_days_with_nothing_to_delete(adapters):
    """One page per read of the index, empty or not, and at least one per day of the window:
    the clean-up checks for a cancel after each page, and most of what it walks is empty."""
    since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    cutoff = datetime(2026, 1, 5, 12, tzinfo=timezone.utc)  # five days: the 1st to the 5th
    nothing = ids_of(adapters.finished.finished_before(cutoff, since=since))
    assert len(nothing) >= 5 and all(page == [] for page in nothing)

    adapters.store.create(_finished(1, "2026-01-01T10:00:00.000Z"))
    pages = ids_of(adapters.finished.finished_before(cutoff, since=since))
    assert [i for page in pages for i in page] == [make_job(1).id]
    # the job's day first (oldest first), then the four empty days after it, each read
    found = next(n for n, page in enumerate(pages) if page)
    assert len(pages) - found - 1 >= 4 and all(page == [] for page in pages[found + 1:])


def test_purge_removes_the_job_its_runs_artifacts_and_objects(adapters):
    job = running(adapters.store, make_job(1, payload=big()))
    job = adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED, "result": big(),
                                                                 "finished_at": "2026-01-01T00:02:00.000Z"}))
    adapters.artifacts.put(job.id, "note.txt", b"hi", "text/plain")
    image = adapters.artifacts.put(job.id, "image.png", b"\x89PNG", "image/png")
    blob_key = adapters.artifacts.get(job.id, image.name).blob_key
    other = make_job(2)
    adapters.store.create(other)
    # the job, its run, its two artifacts
    assert adapters.finished.purge(job.id) == 4
    assert adapters.store.get(job.id, mark_gone=False) is None and adapters.store.runs(job.id) == []
    assert adapters.artifacts.list(job.id).artifacts == []
    with pytest.raises(ArtifactNotFoundError):
        adapters.artifacts.get(job.id, "note.txt")
    for key in (blob_key, f"jobs/{job.id}/payload.json", f"jobs/{job.id}/result-0001.json"):
        with pytest.raises(BlobNotFoundError):
            adapters.blobs.get(key)
    assert adapters.store.get(other.id, mark_gone=False) == other
    assert adapters.finished.purge(job.id) == 0


class _Refusing:
    """One of the adapters' own parts whose `method` does not go through (StoreUnavailableError
    saying `why`): a purge cut off there. Every other call reaches the part itself."""

    def __init__(self, part, method: str, why: str) -> None:
        self._part, self._method, self._why = part, method, why

    def __getattr__(self, name):
        if name == self._method:
            def refused(*args, **kwargs):
                raise StoreUnavailableError(self._why)
            return refused
        return getattr(self._part, name)


def _cut_off(adapters):
    """A FinishedJobs over the same store whose purge stops at the objects' deletion."""
    failing = _Refusing(adapters.blobs, "delete", "could not delete objects")
    if adapters.kind == "memory":
        return type(adapters.finished)(adapters.store, adapters.artifacts, failing)
    return type(adapters.finished)(adapters.finished._ddb, adapters.finished._table, failing)


def test_a_purge_cut_off_leaves_no_job_to_read_and_a_repeat_finishes_it(adapters):
    job = running(adapters.store, make_job(1, payload=big()))
    job = adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED, "result": big(),
                                                                 "finished_at": "2026-01-01T00:02:00.000Z"}))
    adapters.artifacts.put(job.id, "image.png", b"\x89PNG", "image/png")
    with pytest.raises(StoreUnavailableError):
        _cut_off(adapters).purge(job.id)
    # Half purged: read as removed by every read, never a record without its objects ...
    assert adapters.store.get(job.id, mark_gone=False) is None
    assert adapters.store.get(job.id, fetch=(), mark_gone=False) is None
    assert adapters.store.get_many([job.id]) == {}
    assert adapters.store.list_jobs(JobQuery(tenant=job.tenant)).jobs == []
    # ... and still found by the clean-up, whose next purge removes what is left.
    since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    cutoff = datetime(2026, 1, 2, tzinfo=timezone.utc)
    assert [i for page in ids_of(adapters.finished.finished_before(cutoff, since=since)) for i in page] == [job.id]
    assert adapters.finished.purge(job.id) == 3  # the job, its run, its artifact
    assert all(page == [] for page in ids_of(adapters.finished.finished_before(cutoff, since=since)))
    assert adapters.store.runs(job.id) == [] and adapters.artifacts.list(job.id).artifacts == []
    assert list(adapters.blobs.keys_older_than(f"jobs/{job.id}/", cutoff.replace(year=2100))) == [[]]
    assert adapters.finished.purge(job.id) == 0


def test_finished_before_takes_the_cutoff_day_up_to_the_cutoff_and_not_the_cutoff_itself(adapters):
    """The window's last day is read too, up to the cutoff: a job finished that morning is past
    its retention; one finished at the very cutoff or after it is not yet."""
    morning = _finished(1, "2026-01-05T09:59:59.999Z")
    at_cutoff = _finished(2, "2026-01-05T10:00:00.000Z")
    later = _finished(3, "2026-01-05T10:00:00.001Z")
    first_day = _finished(4, "2026-01-01T00:00:00.000Z")
    for job in (morning, at_cutoff, later, first_day):
        adapters.store.create(job)
    since = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)  # the whole first day, not from noon
    cutoff = datetime(2026, 1, 5, 10, tzinfo=timezone.utc)
    found = [i for page in ids_of(adapters.finished.finished_before(cutoff, since=since)) for i in page]
    assert sorted(found) == sorted([morning.id, first_day.id])


class _SecondBatchFails:
    """The table's client, whose second BatchWriteItem is refused: a purge cut off between its
    batches of item deletes."""

    def __init__(self, client) -> None:
        self._client = client
        self.batches = 0

    def batch_write_item(self, **request):
        self.batches += 1
        if self.batches == 2:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "try again"}}, "BatchWriteItem")
        return self._client.batch_write_item(**request)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_purge_cut_off_among_its_item_deletes_keeps_the_job_to_find_it_again(adapters):
    """More items than one batch deletes: the job's own item goes last, so a purge cut off
    before it leaves the job in the index and the next run removes the rest (not orphaned).
    Artifacts sort before the job's item and runs after it: enough of both to put it in the
    first batch unless it is moved last."""
    job = running(adapters.store, make_job(1))
    for attempt in range(2, 8):  # tried again six times: seven runs
        job = adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"status": JobStatus.QUEUED}))
        job = adapters.store.apply(job, JobStatus.QUEUED, ChangeSet(
            {"status": JobStatus.RUNNING, "attempts": attempt},
            run=Run(job_id=job.id, attempt=attempt, status=JobStatus.RUNNING, started_at="2026-01-01T00:01:00.000Z")))
    job = adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED,
                                                                 "finished_at": "2026-01-01T00:02:00.000Z"}))
    for n in range(BATCH_WRITE_MAX - 5):
        adapters.artifacts.put(job.id, f"part-{n:02d}.txt", b"x", "text/plain")
    assert len(adapters.store.runs(job.id)) + BATCH_WRITE_MAX - 5 + 1 > BATCH_WRITE_MAX
    if adapters.kind == "memory":
        refusing = _Refusing(adapters.artifacts, "delete_all", "could not delete job items")
        cut = type(adapters.finished)(adapters.store, refusing, adapters.blobs)
    else:
        cut = type(adapters.finished)(_SecondBatchFails(adapters.finished._ddb), adapters.finished._table,
                                      adapters.blobs)
    with pytest.raises(StoreUnavailableError):
        cut.purge(job.id)
    since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    cutoff = datetime(2026, 1, 2, tzinfo=timezone.utc)
    assert [i for page in ids_of(adapters.finished.finished_before(cutoff, since=since)) for i in page] == [job.id]
    assert adapters.finished.purge(job.id) >= 1
    assert adapters.store.runs(job.id) == [] and adapters.artifacts.list(job.id).artifacts == []
    assert all(page == [] for page in ids_of(adapters.finished.finished_before(cutoff, since=since)))


def test_finished_before_reads_the_window_by_utc_days_whatever_the_offset_of_its_bounds(adapters):
    """The index is keyed by the UTC day a job finished: a window given in another offset is
    read from the UTC day of `since` to the UTC day of `cutoff`, not from their local dates."""
    from datetime import timedelta

    east, west = timezone(timedelta(hours=5)), timezone(timedelta(hours=-5))
    first = _finished(1, "2026-01-01T21:00:00.000Z")  # 2 January, 02:00 at +05:00
    last = _finished(2, "2026-01-05T00:30:00.000Z")  # 4 January, 19:30 at -05:00
    for job in (first, last):
        adapters.store.create(job)
    since = datetime(2026, 1, 2, 1, tzinfo=east)  # 1 January, 20:00 UTC
    cutoff = datetime(2026, 1, 4, 20, tzinfo=west)  # 5 January, 01:00 UTC
    found = [i for page in ids_of(adapters.finished.finished_before(cutoff, since=since)) for i in page]
    assert sorted(found) == sorted([first.id, last.id])


def test_finished_before_pages_hold_no_more_ids_than_asked(adapters):
    """More jobs finished on one day than a page holds (more than the index has shards, so
    some shard holds two): every page keeps to `page_size`, and every job is on one."""
    jobs = [_finished(i, f"2026-01-01T10:00:{i:02d}.000Z") for i in range(9)]
    for job in jobs:
        adapters.store.create(job)
    since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    cutoff = datetime(2026, 1, 2, tzinfo=timezone.utc)
    pages = ids_of(adapters.finished.finished_before(cutoff, since=since, page_size=1))
    assert all(len(page) <= 1 for page in pages), pages
    assert sorted(i for page in pages for i in page) == sorted(job.id for job in jobs)


def test_purge_removes_every_object_under_the_job_even_one_no_item_names(adapters):
    """The result of an attempt that lost the race to complete is stored per attempt and named
    by no item: the purge finds it under the job's prefix, and leaves other jobs' objects."""
    job = _finished(1, "2026-01-01T00:02:00.000Z")
    adapters.store.create(job)
    stray = f"jobs/{job.id}/result-0002.json"
    neighbour = f"jobs/{make_job(2).id}/result-0001.json"
    for key in (stray, neighbour):
        adapters.blobs.put(key, b"{}", "application/json")
    assert adapters.finished.purge(job.id) == 1
    with pytest.raises(BlobNotFoundError):
        adapters.blobs.get(stray)
    assert adapters.blobs.get(neighbour) == b"{}"


class _SmallQueryPages:
    """The table's client, whose Queries end a page every three items: as DynamoDB ends one at
    1 MB, which a job of many large runs and artifacts passes."""

    def __init__(self, client) -> None:
        self._client = client

    def query(self, **request):
        return self._client.query(**{**request, "Limit": min(3, request.get("Limit", 3))})

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_purge_removes_a_job_of_more_items_than_one_read_or_one_batch_takes(adapters):
    """A job whose items take several reads of its partition and more than one batch of
    deletes is removed whole by one purge: none is left for a later run to find."""
    job = running(adapters.store, make_job(1))
    job = adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED,
                                                                 "finished_at": "2026-01-01T00:02:00.000Z"}))
    parts = BATCH_WRITE_MAX + 5
    for n in range(parts):
        adapters.artifacts.put(job.id, f"part-{n:02d}.txt", b"x", "text/plain")
    finished = adapters.finished
    if adapters.kind == "aws":
        finished = type(finished)(_SmallQueryPages(finished._ddb), finished._table, adapters.blobs)
    assert finished.purge(job.id) == parts + 2  # the artifacts, the run, the job
    assert adapters.artifacts.list(job.id).artifacts == [] and adapters.store.runs(job.id) == []
    assert adapters.store.get(job.id, mark_gone=False) is None
    assert adapters.finished.purge(job.id) == 0


def test_each_page_names_the_utc_day_it_was_read_from_walked_in_order(adapters):
    """How far a walk has come is the day of its page (a clean-up's progress): every day of the
    window from `since`'s to `cutoff`'s, in order, and each job on the page of its own day."""
    for n, day in enumerate(("2026-01-02", "2026-01-04")):
        adapters.store.create(_finished(n, f"{day}T23:59:59.999Z"))
    since = datetime(2026, 1, 1, 22, tzinfo=timezone.utc)
    cutoff = datetime(2026, 1, 5, 1, tzinfo=timezone.utc)
    pages = list(adapters.finished.finished_before(cutoff, since=since))
    days = list(dict.fromkeys(page.day for page in pages))
    assert days == [date(2026, 1, 1) + timedelta(days=n) for n in range(5)]
    assert sorted(page.day for page in pages) == [page.day for page in pages]
    assert {page.day: page.ids for page in pages if page.ids} == {
        date(2026, 1, 2): [make_job(0).id], date(2026, 1, 4): [make_job(1).id]}
