"""BlobStore and ArtifactStore: objects by key, artifacts inline or in the blob store."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.domain.errors import ArtifactNotFoundError, BlobNotFoundError, InvalidArtifactError
from chalicelib.domain.job import Job, utcnow
from chalicelib.domain.status import JobStatus
from chalicelib.ports import ChangeSet
from tests.contract.conftest import INLINE_LIMIT

JOB = "00000000-0000-4000-8000-000000000001"


def _running_attempt_1(adapters) -> Job:
    """The job JOB, created and running its attempt 1: an attempt's artifacts are written against it."""
    job = Job(id=JOB, type="demo.steps", tenant="acme", user="ann", created_at="2026-01-01T00:00:00.000Z")
    adapters.store.create(job)
    return adapters.store.apply(job, JobStatus.QUEUED, ChangeSet({"status": JobStatus.RUNNING, "attempts": 1}))


def test_blobs_put_get_and_delete(adapters):
    adapters.blobs.put("tmp/a", b"\x00binary\xff", "application/octet-stream")
    adapters.blobs.put("tmp/a", b"replaced", "text/plain")
    assert adapters.blobs.get("tmp/a") == b"replaced"
    assert adapters.blobs.delete(["tmp/a", "tmp/never-written"]) == 2
    with pytest.raises(BlobNotFoundError):
        adapters.blobs.get("tmp/a")
    assert adapters.blobs.delete([]) == 0


def test_blobs_older_than_a_moment_under_a_prefix(adapters):
    for key in ("tmp/x/1", "tmp/x/2", "tmp/y/1", "jobs/tmp/x/1"):  # the last holds the prefix, not under it
        adapters.blobs.put(key, b"1", "text/plain")
    later = utcnow() + timedelta(minutes=5)
    assert sorted(k for page in adapters.blobs.keys_older_than("tmp/x/", later) for k in page) == ["tmp/x/1", "tmp/x/2"]
    earlier = utcnow() - timedelta(minutes=5)
    assert [k for page in adapters.blobs.keys_older_than("tmp/", earlier) for k in page] == []


def _listed_at(adapters, key: str):
    """When the blob store lists `key` as last modified (S3's listing, the twin's clock)."""
    if adapters.kind == "memory":
        return adapters.blobs.objects[key][2]
    import boto3

    from tests.contract.conftest import BUCKET

    return boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=key)["Contents"][0]["LastModified"]


def test_blobs_older_than_a_moment_are_strictly_older(adapters):
    """An object last modified at the very moment asked about is not older than it: the
    temporary files' clean-up deletes what is past its age, not what has just reached it."""
    adapters.blobs.put("tmp/edge", b"1", "text/plain")
    modified = _listed_at(adapters, "tmp/edge")
    assert [k for page in adapters.blobs.keys_older_than("tmp/", modified) for k in page] == []
    later = modified + timedelta(milliseconds=1)
    assert [k for page in adapters.blobs.keys_older_than("tmp/", later) for k in page] == ["tmp/edge"]


def test_blobs_older_than_yield_a_page_for_each_listing_page_empty_or_not(adapters):
    """The temporary files' clean-up checks for a cancel after each page: a listing of recent
    objects only, or of nothing, still yields its (empty) page."""
    for key in ("tmp/x/1", "tmp/x/2"):
        adapters.blobs.put(key, b"1", "text/plain")
    earlier = utcnow() - timedelta(minutes=5)
    assert list(adapters.blobs.keys_older_than("tmp/x/", earlier)) == [[]]
    assert list(adapters.blobs.keys_older_than("tmp/none/", earlier)) == [[]]


def test_a_thousand_and_one_blobs_are_listed_in_two_pages_and_deleted_in_one_call(adapters):
    """Past one listing page (1000 keys) and one DeleteObjects request (1000 keys): every key
    is listed, a page for each page listed (each read when it is reached, as S3 lists what is
    there then), and every one deleted."""
    keys = [f"tmp/many/{n:04d}" for n in range(1001)]
    for key in keys:
        adapters.blobs.put(key, b"", "text/plain")
    later = utcnow() + timedelta(minutes=5)
    pages = list(adapters.blobs.keys_older_than("tmp/many/", later))
    assert [len(page) for page in pages] == [1000, 1]
    assert sorted(k for page in pages for k in page) == keys
    listing = adapters.blobs.keys_older_than("tmp/many/", later)
    assert len(next(listing)) == 1000
    adapters.blobs.delete([keys[-1]])  # gone before the second page is read: not listed
    assert list(listing) == [[]]
    assert adapters.blobs.delete(keys) == 1001
    assert [k for page in adapters.blobs.keys_older_than("tmp/", later) for k in page] == []


def test_presigned_url_names_the_key(adapters):
    adapters.blobs.put("jobs/j/artifacts/a.bin", b"1", "application/octet-stream")
    assert "jobs/j/artifacts/a.bin" in adapters.blobs.presigned_url("jobs/j/artifacts/a.bin", 60)


def test_a_presigned_url_carries_the_disposition_it_was_given(adapters):
    adapters.blobs.put("jobs/j/artifacts/a.html", b"<p>", "text/html")
    url = adapters.blobs.presigned_url("jobs/j/artifacts/a.html", 60, content_disposition='attachment; filename="a.html"')
    assert parse_qs(urlsplit(url).query)["response-content-disposition"] == ['attachment; filename="a.html"']
    assert "response-content-disposition" not in adapters.blobs.presigned_url("jobs/j/artifacts/a.html", 60)


def test_small_text_artifacts_stay_inline_the_rest_go_to_the_blob_store(adapters):
    note = adapters.artifacts.put(JOB, "note.txt", b"hello", "text/plain")
    assert (note.name, note.size, note.location, note.content_type) == ("note.txt", 5, "inline", "text/plain")
    binary = adapters.artifacts.put(JOB, "image.png", b"\x89PNG", "image/png")
    large = adapters.artifacts.put(JOB, "report.json", b"[" + b"1," * INLINE_LIMIT + b"1]", "application/json")
    assert binary.location == "s3" and large.location == "s3"
    assert adapters.artifacts.get(JOB, "note.txt").content == b"hello"
    stored = adapters.artifacts.get(JOB, "image.png")
    assert stored.content is None and adapters.blobs.get(stored.blob_key) == b"\x89PNG"
    assert [a.name for a in adapters.artifacts.list(JOB).artifacts] == ["image.png", "note.txt", "report.json"]
    assert adapters.artifacts.list("00000000-0000-4000-8000-000000000002").artifacts == []
    assert adapters.artifacts.get(JOB, "note.txt").info == note
    assert adapters.artifacts.list(JOB).artifacts == [binary, note, large]  # each listed where it is kept


def test_a_content_type_is_kept_as_written_and_its_case_does_not_decide_what_is_text(adapters):
    """Media types are case-insensitive (RFC 9110): `Text/CSV` is text, kept inline, and served
    back under the content type its handler gave, spelled as given."""
    info = adapters.artifacts.put(JOB, "report.csv", b"a,b\n", "Text/CSV; Charset=UTF-8")
    assert (info.location, info.content_type) == ("inline", "Text/CSV; Charset=UTF-8")
    assert adapters.artifacts.get(JOB, "report.csv").info == info
    assert adapters.artifacts.list(JOB).artifacts == [info]


def test_text_of_exactly_the_inline_limit_stays_inline_a_byte_more_goes_to_the_blob_store(adapters):
    """The limit is the most an inline artifact holds (what is above it goes to S3)."""
    at = adapters.artifacts.put(JOB, "at.txt", b"x" * INLINE_LIMIT, "text/plain")
    above = adapters.artifacts.put(JOB, "above.txt", b"x" * (INLINE_LIMIT + 1), "text/plain")
    assert (at.location, above.location) == ("inline", "s3")
    assert adapters.artifacts.get(JOB, "at.txt").content == b"x" * INLINE_LIMIT


def test_an_artifact_is_replaced_by_name_and_a_missing_or_bad_name_or_type_is_refused(adapters):
    adapters.artifacts.put(JOB, "out.txt", b"one", "text/plain")
    adapters.artifacts.put(JOB, "out.txt", b"two!", "text/plain")
    assert adapters.artifacts.get(JOB, "out.txt").content == b"two!"
    assert [(a.name, a.size) for a in adapters.artifacts.list(JOB).artifacts] == [("out.txt", 4)]
    for missing in ("missing.txt", "../etc/passwd", "out.txt#x", "a#b", "x" * 2000):  # no name, no key of one
        with pytest.raises(ArtifactNotFoundError):
            adapters.artifacts.get(JOB, missing)
    longest = "x" * 128  # the longest name taken
    adapters.artifacts.put(JOB, longest, b"1", "text/plain")
    assert adapters.artifacts.get(JOB, longest).content == b"1"
    for bad in ("", ".hidden", "a/b", "x" * 129):
        with pytest.raises(InvalidArtifactError):
            adapters.artifacts.put(JOB, bad, b"1", "text/plain")
    for bad_type in ("", "text", "text/plain\r\nX-Injected: 1", "text/plain; charset=\u00fc"):
        with pytest.raises(InvalidArtifactError, match="media type"):
            adapters.artifacts.put(JOB, "typed.txt", b"1", bad_type)
    assert [a.name for a in adapters.artifacts.list(JOB).artifacts] == ["out.txt", longest]


@pytest.mark.parametrize("data", [b"small text", b"x" * (INLINE_LIMIT + 1)], ids=["inline", "blob"])
def test_an_attempts_artifact_lands_only_while_that_attempt_runs(adapters, data):
    """An attempt's artifact is checked against the job's record in the same write: once the
    attempt is no longer the job's running one (taken over, ended) nothing is stored or
    replaced, and its object is not kept (nor can it have overwritten the live one's)."""
    from chalicelib.domain.errors import AttemptEndedError

    job = _running_attempt_1(adapters)
    with pytest.raises(AttemptEndedError):  # not its attempt
        adapters.artifacts.put(JOB, "out.txt", data, "text/plain", attempt=2)
    assert adapters.artifacts.list(JOB).artifacts == []
    first = adapters.artifacts.put(JOB, "out.txt", data, "text/plain", attempt=1)
    job = adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"status": JobStatus.RETRYING}))
    job = adapters.store.apply(job, JobStatus.RETRYING, ChangeSet({"status": JobStatus.RUNNING, "attempts": 2}))
    with pytest.raises(AttemptEndedError):  # attempt 1 woke while attempt 2 runs
        adapters.artifacts.put(JOB, "out.txt", b"late", "text/plain", attempt=1)
    second = adapters.artifacts.put(JOB, "out.txt", data.upper(), "text/plain", attempt=2)
    adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"status": JobStatus.COMPLETED}))
    for attempt in (1, 2):  # attempt 1 woke after attempt 2 took over; attempt 2 after the job ended
        refusal = f"attempt {attempt} of job {JOB} is no longer running: artifact out.txt is not stored"
        with pytest.raises(AttemptEndedError, match=refusal):
            adapters.artifacts.put(JOB, "out.txt", b"late", "text/plain", attempt=attempt)
        with pytest.raises(AttemptEndedError):
            adapters.artifacts.put(JOB, "other.bin", b"late", "application/octet-stream", attempt=attempt)
    assert [a.name for a in adapters.artifacts.list(JOB).artifacts] == ["out.txt"]
    stored = adapters.artifacts.get(JOB, "out.txt")
    assert (stored.content or adapters.blobs.get(stored.blob_key)) == data.upper()
    assert stored.info.location == second.location == first.location
    kept = [k for page in adapters.blobs.keys_older_than(f"jobs/{JOB}/", utcnow() + timedelta(minutes=5))
            for k in page]
    assert kept == ([] if first.location == "inline" else
                    [f"jobs/{JOB}/artifacts/0001/out.txt", f"jobs/{JOB}/artifacts/0002/out.txt"])


def test_an_attempts_artifact_lands_when_the_jobs_payload_object_is_gone(adapters):
    """The check reads the job's record, never its objects: a payload deleted from the bucket
    (by hand, by a bucket rule) does not stop the running attempt from storing an artifact."""
    from tests.contract.test_job_store import big, make_job, running

    job = running(adapters.store, make_job(1, payload=big()))
    adapters.blobs.delete([f"jobs/{job.id}/payload.json"])
    info = adapters.artifacts.put(job.id, "out.txt", b"done", "text/plain", attempt=1)
    assert info.name == "out.txt" and _names(adapters.artifacts.list(job.id)) == ["out.txt"]
    assert adapters.store.get(job.id, fetch=(), mark_gone=False).status == JobStatus.RUNNING


def _names(page) -> list[str]:
    return [a.name for a in page.artifacts]


def test_a_jobs_artifacts_are_listed_a_page_at_a_time_by_name(adapters):
    """A job may write any number of artifacts: a listing answers at most `limit` of them, in
    name order, with a cursor to the next page only while more follow (also when the last page
    is exactly full), and never one of another job."""
    names = [f"row-{n:02d}.csv" for n in range(7)] + ["Summary.txt", "data.bin"]
    for name in reversed(names):  # written out of order
        data, kind = (b"\x00", "application/octet-stream") if name.endswith(".bin") else (b"1", "text/csv")
        adapters.artifacts.put(JOB, name, data, kind)
    adapters.artifacts.put("00000000-0000-4000-8000-000000000002", "row-00.csv", b"other", "text/csv")
    pages, cursor = [], None
    while True:
        page = adapters.artifacts.list(JOB, limit=3, cursor=cursor)
        pages.append(_names(page))
        if page.cursor is None:
            break
        cursor = page.cursor
    ordered = sorted(names)
    assert pages == [ordered[0:3], ordered[3:6], ordered[6:9]]
    assert _names(adapters.artifacts.list(JOB, limit=4, cursor=adapters.artifacts.list(JOB, limit=5).cursor)) == ordered[5:9]
    whole = adapters.artifacts.list(JOB, limit=9)
    assert (_names(whole), whole.cursor) == (ordered, None)
    assert whole.artifacts[ordered.index("data.bin")].location == "s3"
    # a page's cursor goes on after its last name, even once that artifact is gone
    assert _names(adapters.artifacts.list(JOB, limit=2, cursor=adapters.artifacts.list(JOB, limit=8).cursor)) == ordered[8:]
    empty = adapters.artifacts.list("00000000-0000-4000-8000-000000000003", limit=3)
    assert (empty.artifacts, empty.cursor) == ([], None)


def test_a_cursor_that_is_not_one_of_the_jobs_listing_is_refused(adapters):
    from chalicelib.adapters.cursors import write_cursor
    from chalicelib.domain.errors import InvalidRequestError

    other = "00000000-0000-4000-8000-000000000002"
    for job_id in (JOB, other):
        for n in range(3):
            adapters.artifacts.put(job_id, f"out-{n}.txt", b"1", "text/plain")
    others = adapters.artifacts.list(other, limit=1).cursor
    assert others is not None
    for bad in (others, "not a cursor", "e30", write_cursor(["art", JOB]), write_cursor(["art", JOB, "../x"]),
                write_cursor(["art", JOB, "a" * 129]), write_cursor(["job", JOB, "out-0.txt"]), write_cursor({"pk": f"JOB#{JOB}", "sk": "JOB"}),
                write_cursor([[[[["deep"]]]]]), "A" * 3000, write_cursor({"art": JOB, "a": 1, "b": 2}),
                write_cursor(["art", JOB, "out-0.txt", "out-1.txt"])):
        with pytest.raises(InvalidRequestError, match="cursor is not valid"):
            adapters.artifacts.list(JOB, limit=2, cursor=bad)


def test_a_page_ending_at_a_name_goes_on_with_the_names_that_begin_with_it(adapters):
    """`out` sorts before `out-2` and `out.txt`: the page after one that ended at `out` starts
    with the next name, whatever characters follow `out` in it."""
    names = ["out", "out-2", "out.txt", "out_3"]
    for name in reversed(names):
        adapters.artifacts.put(JOB, name, b"1", "text/plain")
    listed, cursor = [], None
    while True:
        page = adapters.artifacts.list(JOB, limit=1, cursor=cursor)
        listed += _names(page)
        if page.cursor is None:
            break
        cursor = page.cursor
    assert listed == names


def test_a_listing_asked_for_no_limit_answers_a_page_of_the_default_size(adapters):
    from chalicelib.defaults import ARTIFACT_PAGE

    names = [f"row-{n:04d}.txt" for n in range(ARTIFACT_PAGE + 1)]
    for name in names:
        adapters.artifacts.put(JOB, name, b"1", "text/plain")
    page = adapters.artifacts.list(JOB)
    assert _names(page) == names[:ARTIFACT_PAGE] and page.cursor is not None


def test_a_cursor_longer_than_the_bound_is_refused_unread_one_at_the_bound_is_read(adapters):
    """Base64 decoding skips characters outside its alphabet, so a page's own cursor padded
    with them still decodes to it: past MAX_CURSOR_CHARS it is refused before it is read."""
    from chalicelib.defaults import MAX_CURSOR_CHARS
    from chalicelib.domain.errors import InvalidRequestError

    for n in range(3):
        adapters.artifacts.put(JOB, f"out-{n}.txt", b"1", "text/plain")
    cursor = adapters.artifacts.list(JOB, limit=1).cursor
    at_bound = cursor + "." * (MAX_CURSOR_CHARS - len(cursor))
    assert _names(adapters.artifacts.list(JOB, limit=1, cursor=at_bound)) == ["out-1.txt"]
    with pytest.raises(InvalidRequestError, match="cursor is not valid") as refused:
        adapters.artifacts.list(JOB, limit=1, cursor=at_bound + ".")
    # the refusal shows the cursor's start, not the kilobytes a client sent
    assert refused.value.details == {"cursor": (at_bound + ".")[:200]}


def test_an_attempts_later_write_of_an_artifact_has_an_object_of_its_own(adapters):
    """An attempt writing one name again stores each write under a key of its own: once the
    later write lands, the object of the one before it (which no item names now) is deleted;
    one refused because the attempt lost its lease meanwhile deletes only what it uploaded,
    and the artifact the job lists still reads as the attempt last stored it."""
    from chalicelib.domain.errors import AttemptEndedError

    job = _running_attempt_1(adapters)
    data = b"x" * (INLINE_LIMIT + 1)
    adapters.artifacts.put(JOB, "out.bin", data, "application/octet-stream", attempt=1)
    adapters.artifacts.put(JOB, "out.bin", data.upper(), "application/octet-stream", attempt=1, write=2,
                           replaces=(1,))

    def kept():
        return [k for page in adapters.blobs.keys_older_than(f"jobs/{JOB}/", utcnow() + timedelta(minutes=5))
                for k in page]

    assert kept() == [f"jobs/{JOB}/artifacts/0001-2/out.bin"]
    adapters.store.apply(job, JobStatus.RUNNING, ChangeSet({"status": JobStatus.FAILED}))  # its lease ended
    with pytest.raises(AttemptEndedError):
        adapters.artifacts.put(JOB, "out.bin", b"late", "application/octet-stream", attempt=1, write=3,
                               replaces=(2,))
    stored = adapters.artifacts.get(JOB, "out.bin")
    assert (stored.blob_key, adapters.blobs.get(stored.blob_key)) == (f"jobs/{JOB}/artifacts/0001-2/out.bin",
                                                                      data.upper())
    assert kept() == [f"jobs/{JOB}/artifacts/0001-2/out.bin"]


def test_a_write_that_lands_deletes_the_objects_of_each_write_it_replaces(adapters):
    """An attempt's write that lands deletes the objects of the writes it names: the last that
    landed and one after it the store did not answer (its object uploaded, its item maybe
    written), not only the write before it, so no object is left that no item names."""
    from chalicelib.adapters.artifacts import blob_key

    _running_attempt_1(adapters)
    data = b"x" * (INLINE_LIMIT + 1)
    adapters.artifacts.put(JOB, "out.bin", data, "application/octet-stream", attempt=1)
    adapters.blobs.put(blob_key(JOB, "out.bin", 1, 3), b"unanswered", "application/octet-stream")
    adapters.artifacts.put(JOB, "out.bin", b"inline", "text/plain", attempt=1, write=4, replaces=(1, 2, 3))
    kept = [k for page in adapters.blobs.keys_older_than(f"jobs/{JOB}/", utcnow() + timedelta(minutes=5))
            for k in page]
    assert kept == [] and adapters.artifacts.get(JOB, "out.bin").content == b"inline"


def test_a_write_that_lands_is_stored_even_when_the_object_it_replaces_is_not_deleted(adapters, monkeypatch):
    """Deleting the object of the write before is tidying up: the bucket not answering it
    leaves bytes no item names (the job's purge removes them), and the write is still stored."""
    from chalicelib.domain.errors import StoreUnavailableError

    _running_attempt_1(adapters)
    data = b"x" * (INLINE_LIMIT + 1)
    adapters.artifacts.put(JOB, "out.bin", data, "application/octet-stream", attempt=1)

    def not_answering(keys):
        raise StoreUnavailableError("could not delete objects")

    monkeypatch.setattr(adapters.blobs, "delete", not_answering)
    info = adapters.artifacts.put(JOB, "out.bin", data.upper(), "application/octet-stream", attempt=1, write=2,
                                  replaces=(1,))
    stored = adapters.artifacts.get(JOB, "out.bin")
    assert stored.info == info and adapters.blobs.get(stored.blob_key) == data.upper()


def test_an_artifact_written_outside_an_attempt_keeps_the_one_object_its_name_holds(adapters):
    """Without an attempt every write of a name goes to the same key: a rewrite replaces that
    object and deletes nothing, whatever writes it is told it replaces."""
    data = b"x" * (INLINE_LIMIT + 1)
    adapters.artifacts.put(JOB, "out.bin", data, "application/octet-stream")
    adapters.artifacts.put(JOB, "out.bin", data.upper(), "application/octet-stream", write=2, replaces=(1,))
    stored = adapters.artifacts.get(JOB, "out.bin")
    assert adapters.blobs.get(stored.blob_key) == data.upper()
