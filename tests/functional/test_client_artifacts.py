"""The client and the CLI fetch a completed job's artifacts from the API on moto: every page of
the listing, an inline one from the API's answer, one in S3 from the presigned URL the API
signs (fetched from moto's S3 as requests sends it, without the token); and a large one streamed
from a link on a local HTTP server, as a real connection delivers it."""
from __future__ import annotations

import io
import json
import socket
import tracemalloc
from typing import Optional

import pytest

from rich.console import Console

from chalicelib.composition import container
from jobpipe_client import ArtifactDownloadError, JobpipeClient
from jobpipe_client.cli import main
from tests.functional.conftest import submit_job, token
from tests.functional.test_doc_examples import URL, _bridge, _s3_over_moto
from tests.support.fake_http import FakeSession
from tests.support.local_server import LocalServer, QuietHandler

STEPS = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 8


def make_client(client, seen):
    session = FakeSession({})
    session.servers = {URL: _bridge(client, session), "https:/": _s3_over_moto(seen)}
    return JobpipeClient(URL, token(), session=session)


def test_a_completed_jobs_artifacts_are_listed_and_fetched_inline_and_from_s3(client, aws, tmp_path):
    job_id = submit_job(client, STEPS)["id"]
    artifacts = container().artifacts
    artifacts.put(job_id, "report.csv", "name;city\nRené;Zürich\n".encode(), "text/csv; charset=utf-8")
    artifacts.put(job_id, "scan.pdf", PDF, "application/pdf")
    for n in range(3):
        artifacts.put(job_id, f"row-{n}.json", b"{}", "application/json")
    seen: list = []
    jobpipe = make_client(client, seen)

    listed = {a["name"]: a for a in jobpipe.artifacts(job_id)}
    assert list(listed) == ["report.csv", "row-0.json", "row-1.json", "row-2.json", "scan.pdf"]
    assert listed["scan.pdf"]["location"] == "s3" and listed["report.csv"]["location"] == "inline"
    assert jobpipe.artifact(job_id, "report.csv") == "name;city\nRené;Zürich\n".encode()
    assert jobpipe.artifact(job_id, "row-0.json") == b"{}"  # a JSON artifact is the artifact, not a link
    assert jobpipe.artifact(job_id, "scan.pdf") == PDF
    assert len(seen) == 1 and "Authorization" not in {k for k, v in seen[0].items() if v is not None}

    out, err = io.StringIO(), io.StringIO()
    target = tmp_path / "scan.pdf"
    code = main(["artifact", job_id, "scan.pdf", "-o", str(target)], environ={}, out=Console(file=out), err=err,
                make_client=lambda args, env: jobpipe)
    assert code == 0, err.getvalue()
    assert target.read_bytes() == PDF
    out = io.StringIO()
    code = main(["artifacts", job_id, "--json"], environ={}, out=Console(file=out), err=err,
                make_client=lambda args, env: jobpipe)
    assert code == 0 and [a["name"] for a in json.loads(out.getvalue())] == list(listed)


class _Loopback(LocalServer):
    """The API and S3 on one HTTP server on 127.0.0.1 (a free port): GET /jobs/J/artifacts/NAME
    answers a link to /s3/NAME, which sends `size` bytes in 64 KiB writes, or breaks the
    connection after `cut_after` of them."""

    def __init__(self, size: int, cut_after: Optional[int] = None) -> None:
        loopback = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/jobs/"):
                    name = self.path.rsplit("/", 1)[1]
                    body = json.dumps({"name": name, "location": "s3", "size": size, "expires_in": 300,
                                       "url": f"{loopback.url}/s3/{name}?X-Amz-Signature=5ec2e7"}).encode()
                    self._send(body, "application/json")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                sent = 0
                while sent < size:
                    if cut_after is not None and sent >= cut_after:
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    piece = min(65536, size - sent)
                    self.wfile.write(b"\x5a" * piece)
                    sent += piece

            def _send(self, body: bytes, content_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)


def test_a_large_artifact_streams_from_its_link_to_a_file_never_whole_in_memory(tmp_path):
    size = 48 * 1024 * 1024
    with _Loopback(size) as loopback:
        jobpipe = JobpipeClient(loopback.url, "tok", timeout=5)
        target = tmp_path / "data.bin"
        tracemalloc.start()
        try:
            written = jobpipe.download_artifact("j-1", "data.bin", target)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert written == size and target.stat().st_size == size
    assert peak < 8 * 1024 * 1024  # a few pieces, never the 48 MiB
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_an_artifact_whose_link_breaks_off_midway_leaves_no_file_and_exits_3(tmp_path):
    size = 8 * 1024 * 1024
    with _Loopback(size, cut_after=2 * 1024 * 1024) as loopback:
        jobpipe = JobpipeClient(loopback.url, "tok", timeout=5)
        with pytest.raises(ArtifactDownloadError, match="cut off"):
            jobpipe.download_artifact("j-1", "data.bin", tmp_path / "a.bin")
        err = io.StringIO()
        code = main(["artifact", "j-1", "data.bin", "-o", str(tmp_path / "b.bin")], environ={},
                    out=Console(file=io.StringIO()), err=err, make_client=lambda args, env: jobpipe)
    assert code == 3 and "could not be downloaded" in err.getvalue() and len(err.getvalue().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_an_artifact_whose_s3_object_is_gone_fails_its_download_in_one_line_naming_it(client, aws, tmp_path):
    """The API signs the artifact's link without asking S3 whether the object is there (a HEAD
    on every read for a rare case); S3 refuses the link (404 NoSuchKey, or 403 when the signer
    may not list the bucket; moto says SignatureDoesNotMatch), and the client and the CLI say what S3 said,
    naming the artifact, with nothing written."""
    job_id = submit_job(client, STEPS)["id"]
    container().artifacts.put(job_id, "scan.pdf", PDF, "application/pdf")
    listed = aws["s3"].list_objects_v2(Bucket="jobs-bucket", Prefix=f"jobs/{job_id}/artifacts/")
    aws["s3"].delete_object(Bucket="jobs-bucket", Key=listed["Contents"][0]["Key"])
    jobpipe = make_client(client, [])

    with pytest.raises(ArtifactDownloadError) as raised:
        jobpipe.artifact(job_id, "scan.pdf")
    assert raised.value.status in (403, 404) and raised.value.name == "scan.pdf", str(raised.value)
    assert str(raised.value).startswith(f"artifact 'scan.pdf' of job {job_id} could not be downloaded from ")

    out, err = io.StringIO(), io.StringIO()
    target = tmp_path / "scan.pdf"
    code = main(["artifact", job_id, "scan.pdf", "-o", str(target)], environ={}, out=Console(file=out), err=err,
                make_client=lambda args, env: jobpipe)
    assert code == 3 and out.getvalue() == ""
    [line] = err.getvalue().splitlines()
    assert line.startswith(f"jobpipe: artifact 'scan.pdf' of job {job_id} could not be downloaded"), line
    assert str(raised.value.status) in line, line
    assert list(tmp_path.iterdir()) == []
