"""The client and the CLI fetch a completed job's artifacts from the API on moto: every page of
the listing, an inline one from the API's answer, one in S3 from the presigned URL the API
signs (fetched from moto's S3 as requests sends it, without the token)."""
from __future__ import annotations

import io
import json

from rich.console import Console

from chalicelib.composition import container
from jobpipe_client import JobpipeClient
from jobpipe_client.cli import main
from tests.functional.conftest import submit_job, token
from tests.functional.test_doc_examples import URL, _bridge, _s3_over_moto
from tests.support.fake_api import FakeSession

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
