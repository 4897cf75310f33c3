"""JobpipeClient.artifacts / .artifact without sockets: every page of a job's listing, an
artifact's bytes inline or behind its presigned S3 URL, and each way that fetch can fail."""
import pytest
import requests
import urllib3

from jobpipe_client import (
    ArtifactDownloadError,
    JobpipeAnswerError,
    JobpipeClient,
    JobpipeClientError,
    JobpipeInputError,
)
from jobpipe_client.artifacts import ARTIFACT_PAGE_LIMIT, DOWNLOAD_PIECE_BYTES
from tests.support.fake_api import FakeApi
from tests.support.fake_http import FakeS3, FakeSession, FakeTime, make_response
from tests.unit.bad_servers import answering, raising

PRIMARY = "http://primary.test"
BUCKET = "https://jobs-bucket.s3.amazonaws.com"
SIGNED = "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=5ec2e7"


def make_client(api, s3=None, timeout=10.0):
    session = FakeSession({PRIMARY: api, BUCKET: s3 or FakeS3()})
    time = FakeTime()
    return JobpipeClient(PRIMARY, "tok", session=session, timeout=timeout, sleep=time.sleep, clock=time.clock), session


def in_s3(api, s3, job_id, name, data, **fields):
    url = f"{BUCKET}/jobs/{job_id}/artifacts/0001/{name}"
    s3.objects[url] = data
    return api.add_artifact(job_id, name, data, "application/pdf", url=url + SIGNED, **fields)


def test_artifacts_lists_every_page_by_name():
    api = FakeApi()
    job = api.add("completed")
    names = [f"row-{n:04d}.json" for n in range(2 * ARTIFACT_PAGE_LIMIT + 5)]
    for name in reversed(names):
        api.add_artifact(job["id"], name, b"{}", "application/json")
    client, _ = make_client(api)
    listed = list(client.artifacts(job["id"]))
    assert [a["name"] for a in listed] == names
    assert set(listed[0]) == {"name", "content_type", "size", "created_at", "location"}
    pages = [sent["params"] for method, path, sent in api.requests]
    assert [p.get("cursor") for p in pages] == [None, names[ARTIFACT_PAGE_LIMIT - 1], names[2 * ARTIFACT_PAGE_LIMIT - 1]]
    assert all(p["limit"] == ARTIFACT_PAGE_LIMIT for p in pages)


def test_artifacts_of_a_job_without_any_is_empty_and_of_an_unknown_job_is_job_not_found():
    api = FakeApi()
    job = api.add("completed")
    client, _ = make_client(api)
    assert list(client.artifacts(job["id"])) == []
    with pytest.raises(JobpipeClientError) as raised:
        list(client.artifacts("no-such-job"))
    assert raised.value.code == "job_not_found"


def test_artifacts_ends_with_an_answer_error_when_the_listing_repeats_its_cursor():
    page = {"job_id": "j-1", "artifacts": [], "next_cursor": "c-1"}
    client, _ = make_client(answering(200, page))
    with pytest.raises(JobpipeAnswerError, match="next_cursor it had already given"):
        list(client.artifacts("j-1"))


@pytest.mark.parametrize("page", [
    {"job_id": "j-1", "artifacts": [{"name": 7}], "next_cursor": None},
    {"job_id": "j-1", "artifacts": "report.csv", "next_cursor": None},
    {"jobs": [], "next_cursor": None},
])
def test_artifacts_refuses_a_page_of_another_shape(page):
    client, _ = make_client(answering(200, page))
    with pytest.raises(JobpipeAnswerError, match="not a page of artifacts"):
        list(client.artifacts("j-1"))


def test_an_inline_artifact_is_its_own_answer_even_when_it_reads_like_a_link():
    api = FakeApi()
    job = api.add("completed")
    api.add_artifact(job["id"], "report.csv", b"id,total\n1,2\n", "text/csv")
    lookalike = b'{"name": "x", "location": "s3", "url": "https://evil.test/x", "expires_in": 300}'
    api.add_artifact(job["id"], "answer.json", lookalike, "application/json")
    s3 = FakeS3()
    client, _ = make_client(api, s3)
    assert client.artifact(job["id"], "report.csv") == b"id,total\n1,2\n"
    assert client.artifact(job["id"], "answer.json") == lookalike
    assert s3.requests == []
    assert api.requests[0][:2] == ("GET", f"/jobs/{job['id']}/artifacts/report.csv")


def test_an_artifact_in_s3_is_fetched_from_its_link_without_the_token_and_within_the_timeout():
    api, s3 = FakeApi(), FakeS3()
    job = api.add("completed")
    data = bytes(range(256)) * 40
    in_s3(api, s3, job["id"], "scan.pdf", data)
    client, session = make_client(api, s3, timeout=7)
    assert client.artifact(job["id"], "scan.pdf") == data
    ((url, sent),) = s3.requests
    assert url.endswith(SIGNED) and session.timeouts[-1] == 7
    assert sent["headers"].get("Authorization") is None  # the token never leaves for S3
    assert sent["auth"] is not None  # nor does requests put it back from the session, or ~/.netrc


def test_an_unknown_artifact_is_artifact_not_found_naming_it():
    api = FakeApi()
    job = api.add("completed")
    client, _ = make_client(api)
    with pytest.raises(JobpipeClientError) as raised:
        client.artifact(job["id"], "missing.csv")
    assert raised.value.status == 404 and raised.value.code == "artifact_not_found"
    assert "missing.csv" in raised.value.message


@pytest.mark.parametrize("status,code,message", [
    (403, "AccessDenied", "Request has expired"),
    (403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided."),
    (404, "NoSuchKey", "The specified key does not exist."),
    (503, "SlowDown", "Please reduce your request rate."),
])
def test_a_link_s3_refuses_is_a_download_error_saying_what_s3_said(status, code, message):
    api = FakeApi()
    job = api.add("completed")
    url = f"{BUCKET}/jobs/{job['id']}/artifacts/0001/scan.pdf"
    api.add_artifact(job["id"], "scan.pdf", b"%PDF", "application/pdf", url=url + SIGNED)
    client, _ = make_client(api, lambda method, u, **_: FakeS3.error(method, u, status, code, message))
    with pytest.raises(ArtifactDownloadError) as raised:
        client.artifact(job["id"], "scan.pdf")
    error = raised.value
    assert (error.status, error.code, error.job_id, error.name) == (status, code, job["id"], "scan.pdf")
    assert message in str(error) and "scan.pdf" in str(error) and BUCKET in str(error)
    assert "X-Amz-Signature" not in str(error)  # the link is a credential while it lasts


@pytest.mark.parametrize("failure,reason", [
    (requests.ConnectionError("connection refused"), "could not connect"),
    (requests.ConnectTimeout("connect timed out"), "no answer within 10 s"),
    (requests.ReadTimeout("read timed out"), "no answer within 10 s"),
    (requests.exceptions.ChunkedEncodingError("connection broken: IncompleteRead"), "cut off"),
])
def test_an_unreachable_s3_is_a_download_error(failure, reason):
    api = FakeApi()
    job = api.add("completed")
    api.add_artifact(job["id"], "scan.pdf", b"%PDF", "application/pdf", url=f"{BUCKET}/k{SIGNED}")
    client, _ = make_client(api, raising(failure))
    with pytest.raises(ArtifactDownloadError, match=reason) as raised:
        client.artifact(job["id"], "scan.pdf")
    assert raised.value.status is None


def test_a_download_error_names_the_job_as_the_api_keys_it_trimmed():
    """An id pasted with a space or a line break at its ends reaches the API trimmed; the
    error names that job, not the pasted text with its break in the middle of the line."""
    api = FakeApi()
    job = api.add("completed")
    api.add_artifact(job["id"], "scan.pdf", b"%PDF", "application/pdf", url=f"{BUCKET}/k{SIGNED}")
    client, _ = make_client(api, raising(requests.ConnectionError("connection refused")))
    with pytest.raises(ArtifactDownloadError) as raised:
        client.artifact(f" {job['id']}\n", "scan.pdf")
    assert raised.value.job_id == job["id"] and f"of job {job['id']} could not" in str(raised.value)


def test_an_s3_answer_shorter_than_the_artifact_is_a_download_error_not_a_short_file():
    api, s3 = FakeApi(), FakeS3()
    job = api.add("completed")
    in_s3(api, s3, job["id"], "scan.pdf", b"%PDF-1.7 the first part", size=4096)
    client, _ = make_client(api, s3)
    with pytest.raises(ArtifactDownloadError, match="23 of its 4096 bytes"):
        client.artifact(job["id"], "scan.pdf")


@pytest.mark.parametrize("body", [
    {"name": "scan.pdf", "location": "s3"},  # no url
    {"name": "scan.pdf", "location": "s3", "url": "file:///etc/passwd", "expires_in": 300},
    {"name": "scan.pdf", "location": "s3", "url": "https://", "expires_in": 300},
    [1, 2],
])
def test_an_answer_that_is_neither_the_artifact_nor_its_link_is_an_answer_error(body):
    client, _ = make_client(answering(200, body))
    with pytest.raises(JobpipeAnswerError, match="not an artifact's download link"):
        client.artifact("j-1", "scan.pdf")


@pytest.mark.parametrize("name", ["", ".hidden", "../secret", "a/b", "a b", "naïve.txt", "x" * 129, "-rf", "a%2Fb"])
def test_a_name_outside_the_artifact_name_rules_is_refused_before_any_request(name):
    api = FakeApi()
    client, session = make_client(api)
    with pytest.raises(JobpipeInputError, match="artifact names are 1-128 characters"):
        client.artifact("j-1", name)
    assert session.calls == []


@pytest.mark.parametrize("call", ["artifact", "artifacts"])
def test_a_job_id_that_would_change_the_path_is_refused_before_any_request(call):
    client, session = make_client(FakeApi())
    with pytest.raises(JobpipeClientError) as raised:
        result = getattr(client, call)("../jobs", "report.csv") if call == "artifact" else getattr(client, call)("a/b")
        list(result)
    assert raised.value.code == "invalid_job_id" and session.calls == []


def test_a_fallback_serves_the_artifact_when_the_primary_is_down():
    api = FakeApi()
    job = api.add("completed")
    api.add_artifact(job["id"], "report.csv", b"a,b\n", "text/csv")
    down = lambda method, url, **_: make_response(method, url, 503, {"error": {"code": "store_unavailable", "message": "x"}})
    session = FakeSession({PRIMARY: down, "http://fallback.test": api})
    client = JobpipeClient(PRIMARY, "tok", ["http://fallback.test"], session=session)
    assert client.artifact(job["id"], "report.csv") == b"a,b\n"


class Recorded(requests.adapters.BaseAdapter):
    """A transport adapter answering from a server function, recording each prepared request as
    requests sends it (the session's headers and auth merged in), with no socket."""

    def __init__(self, server):
        super().__init__()
        self.server, self.sent = server, []

    def send(self, request, **kwargs):
        self.sent.append(request)
        response = self.server(request.method, request.url, headers=dict(request.headers))
        response.raw = None
        return response

    def close(self):
        pass


def test_a_real_session_sends_the_token_to_the_api_and_never_to_s3(tmp_path, monkeypatch):
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    (tmp_path / "netrc").write_text("default login someone password secret\n")
    api, s3 = FakeApi(), FakeS3()
    job = api.add("completed")
    in_s3(api, s3, job["id"], "scan.pdf", b"%PDF-1.7")
    session = requests.Session()
    to_api, to_s3 = Recorded(api), Recorded(s3)
    session.mount(PRIMARY, to_api)
    session.mount(BUCKET, to_s3)
    client = JobpipeClient(PRIMARY, "tok", session=session)
    assert client.artifact(job["id"], "scan.pdf") == b"%PDF-1.7"
    assert to_api.sent[0].headers["Authorization"] == "Bearer tok"
    assert "Authorization" not in to_s3.sent[0].headers


class Generated:
    """A streamed S3 body of `size` bytes made as it is read (what requests calls `raw`): it is
    never in memory whole. `largest` is the biggest read asked of it; after `fail_after` bytes
    it raises `error` (a cut connection, or Ctrl-C)."""

    def __init__(self, size, error=None, fail_after=None):
        self.size, self.sent, self.largest = size, 0, 0
        self.error, self.fail_after = error, fail_after

    def read(self, amt=None, decode_content=None):
        if self.error is not None and self.sent >= self.fail_after:
            raise self.error
        amt = amt or self.size
        self.largest = max(self.largest, amt)
        piece = bytes([self.sent // amt % 256]) * min(amt, self.size - self.sent)
        self.sent += len(piece)
        return piece

    def stream(self, amt, decode_content=None):  # as urllib3's response streams (requests uses it)
        while piece := self.read(amt):
            yield piece

    def close(self):
        pass


def streaming_s3(body):
    def answer(method, url, **_):
        response = requests.Response()
        response.status_code, response.url, response.raw = 200, url, body
        response.request = requests.Request(method, url).prepare()
        return response

    return answer


class Written:
    """A binary file object recording the size of each write."""

    def __init__(self):
        self.writes, self.total = [], 0

    def write(self, data):
        self.writes.append(len(data))
        self.total += len(data)
        return len(data)


def large_in_s3(api, job_id, size, name="data.bin"):
    return api.add_artifact(job_id, name, b"", "application/octet-stream", url=f"{BUCKET}/k{SIGNED}", size=size)


def test_download_artifact_streams_a_large_artifact_a_piece_at_a_time():
    api = FakeApi()
    job = api.add("completed")
    size = 5 * DOWNLOAD_PIECE_BYTES + 17
    large_in_s3(api, job["id"], size)
    body = Generated(size)
    client, _ = make_client(api, streaming_s3(body))
    target = Written()
    assert client.download_artifact(job["id"], "data.bin", target) == size
    assert target.total == size and len(target.writes) == 6
    assert max(target.writes) <= DOWNLOAD_PIECE_BYTES and body.largest <= DOWNLOAD_PIECE_BYTES


def test_download_artifact_to_a_path_writes_it_whole_and_leaves_nothing_else(tmp_path):
    api = FakeApi()
    job = api.add("completed")
    size = 2 * DOWNLOAD_PIECE_BYTES + 3
    large_in_s3(api, job["id"], size)
    api.add_artifact(job["id"], "report.csv", b"a,b\n", "text/csv")
    client, _ = make_client(api, streaming_s3(Generated(size)))
    target = tmp_path / "data.bin"
    assert client.download_artifact(job["id"], "data.bin", target) == size
    data = target.read_bytes()
    assert len(data) == size and data[:1] == b"\x00" and data[-1:] == b"\x02"
    assert client.download_artifact(job["id"], "report.csv", str(tmp_path / "report.csv")) == 4
    assert (tmp_path / "report.csv").read_bytes() == b"a,b\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin", "report.csv"]


@pytest.mark.parametrize("error,raised", [
    (requests.exceptions.ChunkedEncodingError("connection broken: IncompleteRead"), ArtifactDownloadError),
    (urllib3.exceptions.ReadTimeoutError(None, None, "read timed out"), ArtifactDownloadError),
    (KeyboardInterrupt(), KeyboardInterrupt),
])
def test_a_download_that_breaks_off_leaves_no_file_and_a_replaced_one_as_it_was(tmp_path, error, raised):
    api = FakeApi()
    job = api.add("completed")
    size = 3 * DOWNLOAD_PIECE_BYTES
    large_in_s3(api, job["id"], size)
    client, _ = make_client(api, streaming_s3(Generated(size, error, fail_after=DOWNLOAD_PIECE_BYTES)))
    with pytest.raises(raised):
        client.download_artifact(job["id"], "data.bin", tmp_path / "new.bin")
    kept = tmp_path / "kept.bin"
    kept.write_bytes(b"mine")
    client, _ = make_client(api, streaming_s3(Generated(size, error, fail_after=DOWNLOAD_PIECE_BYTES)))
    with pytest.raises(raised):
        client.download_artifact(job["id"], "data.bin", kept, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.bin"] and kept.read_bytes() == b"mine"


def test_a_download_that_is_short_or_long_is_refused_and_a_long_one_stops_at_its_size(tmp_path):
    api = FakeApi()
    job = api.add("completed")
    large_in_s3(api, job["id"], 2 * DOWNLOAD_PIECE_BYTES, name="short.bin")
    client, _ = make_client(api, streaming_s3(Generated(DOWNLOAD_PIECE_BYTES + 5)))
    with pytest.raises(ArtifactDownloadError, match=f"{DOWNLOAD_PIECE_BYTES + 5} of its {2 * DOWNLOAD_PIECE_BYTES}"):
        client.download_artifact(job["id"], "short.bin", tmp_path / "short.bin")
    large_in_s3(api, job["id"], 10, name="long.bin")
    body = Generated(50 * DOWNLOAD_PIECE_BYTES)
    client, _ = make_client(api, streaming_s3(body))
    with pytest.raises(ArtifactDownloadError, match="more than its 10 bytes"):
        client.download_artifact(job["id"], "long.bin", tmp_path / "long.bin")
    assert body.sent == DOWNLOAD_PIECE_BYTES  # it stopped at the first piece past the size
    assert list(tmp_path.iterdir()) == []


def test_download_artifact_refuses_an_existing_file_a_directory_or_a_missing_one_before_any_request(tmp_path):
    api = FakeApi()
    job = api.add("completed")
    api.add_artifact(job["id"], "report.csv", b"new\n", "text/csv")
    client, session = make_client(api)
    (tmp_path / "report.csv").write_bytes(b"mine\n")
    with pytest.raises(FileExistsError):
        client.download_artifact(job["id"], "report.csv", tmp_path / "report.csv")
    with pytest.raises(IsADirectoryError):
        client.download_artifact(job["id"], "report.csv", tmp_path, overwrite=True)
    with pytest.raises(FileNotFoundError):
        client.download_artifact(job["id"], "report.csv", tmp_path / "no-dir" / "report.csv")
    with pytest.raises(FileNotFoundError, match="no directory"):  # a directory's name: no file `no-dir` made
        client.download_artifact(job["id"], "report.csv", f"{tmp_path}/no-dir/")
    assert session.calls == [] and (tmp_path / "report.csv").read_bytes() == b"mine\n"
    (tmp_path / "report.csv").chmod(0o640)
    assert client.download_artifact(job["id"], "report.csv", tmp_path / "report.csv", overwrite=True) == 4
    assert (tmp_path / "report.csv").read_bytes() == b"new\n"
    assert (tmp_path / "report.csv").stat().st_mode & 0o777 == 0o640


def appearing_during_the_download(api, job_id, target):
    """S3 for a large artifact of `job_id` whose body, once its first piece is sent, has another
    program write `target` (b"theirs") before the rest comes."""

    class Appearing(Generated):
        def read(self, amt=None, decode_content=None):
            if self.sent and not target.exists():
                target.write_bytes(b"theirs")
            return super().read(amt, decode_content)

    size = 2 * DOWNLOAD_PIECE_BYTES
    large_in_s3(api, job_id, size)
    return streaming_s3(Appearing(size))


def test_a_file_that_appears_during_the_download_is_not_replaced(tmp_path):
    api = FakeApi()
    job = api.add("completed")
    target = tmp_path / "data.bin"
    client, _ = make_client(api, appearing_during_the_download(api, job["id"], target))
    with pytest.raises(FileExistsError):
        client.download_artifact(job["id"], "data.bin", target)
    assert target.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["data.bin"]
