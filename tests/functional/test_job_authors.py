"""A job author's handler through the API and the worker function, on moto: a handler's
SystemExit does not take its batch-mates down, a text artifact in another charset reads back as
written, a payload validator's own error is a 422 `invalid_payload`, and a handler spawning in
a loop stays within its tenant's unfinished bound."""
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import BaseModel, field_validator

from chalicelib import composition
from chalicelib.domain.errors import RetryableJobError
from chalicelib.job_types import registry
from tests.functional.conftest import auth, drain, invoke_worker, receive_all, sqs_event
from tests.functional.conftest import get_job as get
from tests.functional.conftest import submit_job as submit
from tests.functional.test_operations import _feed_stream


class Empty(BaseModel):
    pass


class Fanout(BaseModel):
    children: int


class Named(BaseModel):
    name: str

    @field_validator("name", mode="before")
    @classmethod
    def lower(cls, value):
        return value.strip().lower()  # an author's normaliser: assumes a string arrives


@pytest.fixture
def author_types():
    names = []

    def add(name, model, handler, **policy):
        registry.register(name, model, **policy)(handler)
        names.append(name)

    def exits(ctx, payload):
        raise SystemExit(1)  # e.g. a CLI's main() reused as the handler

    def latin1_csv(ctx, payload):
        ctx.artifact("report.csv", "name;city\nRené;Zürich\n".encode("iso-8859-1"), "text/csv; charset=iso-8859-1")
        return "ok"

    def web_page(ctx, payload):
        page = "<html><body><script>fetch('/jobs').then(r => r.text()).then(alert)</script></body></html>"
        ctx.artifact("page.html", page, "text/html; charset=utf-8")  # small UTF-8 text: inline
        ctx.artifact("big.html", page + " " * 70_000, "text/html")  # past the inline limit: S3
        return "ok"

    def fan_out(ctx, payload):
        return [ctx.spawn("author.latin1_csv", {}) for _ in range(payload.children)]

    def fan_out_once_lost(ctx, payload):
        spawned = [ctx.spawn("author.latin1_csv", {}) for _ in range(payload.children)]
        if ctx.attempt == 1:
            raise RetryableJobError("the connection went away after the spawns")
        return spawned

    add("author.exits", Empty, exits, max_attempts=3, timeout_s=30)
    add("author.latin1_csv", Empty, latin1_csv, max_attempts=1, timeout_s=30)
    add("author.fan_out", Fanout, fan_out, max_attempts=1, timeout_s=30)
    add("author.fan_out_once_lost", Fanout, fan_out_once_lost, max_attempts=2, timeout_s=30)
    add("author.web_page", Empty, web_page, max_attempts=1, timeout_s=30)
    add("author.named", Named, lambda ctx, payload: payload.name, timeout_s=30)
    yield
    for name in names:
        registry._types.pop(name)


def test_a_handler_calling_sys_exit_does_not_strand_its_batch_mate(client, app, aws, author_types):
    """The SystemExit ends its own attempt (`handler_error`, retried); the invocation goes on
and its batch-mate completes."""
    exiting = submit(client, {"type": "author.exits", "payload": {}})
    mate = submit(client, {"type": "author.latin1_csv", "payload": {}})
    messages = receive_all(aws)
    assert len(messages) == 2
    try:
        invoke_worker(app, sqs_event(messages))
    except BaseException as exc:  # noqa: B036
        pytest.fail(f"the worker invocation died of {type(exc).__name__}; "
                    f"job {get(client, exiting['id'])['status']}, its batch-mate {get(client, mate['id'])['status']}")
    assert get(client, mate["id"])["status"] == "completed"
    after = get(client, exiting["id"])
    assert after["status"] == "retrying" and after["error"]["code"] == "handler_error", after


def test_a_text_artifact_in_another_charset_reads_back_as_written(client, app, aws, author_types):
    """docs/jobs.md: `ctx.artifact` stores "bytes as given". Text that is not UTF-8 is not kept
inline (served as UTF-8 text, é and ü would come back as U+FFFD): it goes to S3 as written,
under its content type."""
    job = submit(client, {"type": "author.latin1_csv", "payload": {}})
    drain(app, aws)
    assert get(client, job["id"])["status"] == "completed"
    response = client.http.get(f"/jobs/{job['id']}/artifacts/report.csv", headers=auth())
    assert response.status_code == 200
    served = response.json_body  # not inline (served as UTF-8 text): in S3, behind a presigned URL
    assert served["location"] == "s3" and served["url"].startswith("https://"), served
    stored = aws["s3"].get_object(Bucket="jobs-bucket", Key=f"jobs/{job['id']}/artifacts/0001/report.csv")
    assert stored["Body"].read() == "name;city\nRené;Zürich\n".encode("iso-8859-1")
    assert stored["ContentType"] == "text/csv; charset=iso-8859-1"


def test_an_html_artifact_never_renders_as_a_page_of_the_apis_origin(client, app, aws, author_types):
    """An inline artifact is served with the content type its handler gave: text/html written
from a tenant's input would be a page of the API's origin, where the dashboard keeps its token.
It comes as a download (attachment), unsniffed, sandboxed with nothing allowed; one in S3 gets
a presigned URL that downloads it too."""
    job = submit(client, {"type": "author.web_page", "payload": {}})
    drain(app, aws)
    assert get(client, job["id"])["status"] == "completed"
    inline = client.http.get(f"/jobs/{job['id']}/artifacts/page.html", headers=auth())
    assert inline.status_code == 200 and inline.body.decode().startswith("<html>")
    assert inline.headers["Content-Type"] == "text/html; charset=utf-8"  # as written, for API clients
    assert inline.headers.get("Content-Disposition") == 'attachment; filename="page.html"', inline.headers
    assert inline.headers.get("X-Content-Type-Options") == "nosniff"
    policy = [d.strip() for d in inline.headers.get("Content-Security-Policy", "").split(";")]
    assert "sandbox" in policy and "default-src 'none'" in policy, policy
    in_s3 = client.http.get(f"/jobs/{job['id']}/artifacts/big.html", headers=auth()).json_body
    assert in_s3["location"] == "s3"
    query = parse_qs(urlsplit(in_s3["url"]).query)
    assert query.get("response-content-disposition") == ['attachment; filename="big.html"'], in_s3["url"]


def test_a_payload_validator_raising_a_non_value_error_is_a_422_invalid_payload(client, author_types):
    """pydantic turns only ValueError/AssertionError into a ValidationError; the author's
`value.strip()` on a number raises AttributeError, which is still the payload's fault: 422."""
    response = client.http.post("/jobs", headers=auth(),
                                body=json.dumps({"type": "author.named", "payload": {"name": 42}}))
    assert response.status_code == 422, (response.status_code, response.body)
    assert response.json_body["error"]["code"] == "invalid_payload"


def test_a_fan_out_in_a_loop_stays_within_the_tenants_unfinished_bound(client, app, aws, monkeypatch, author_types):
    """docs/operations.md: "A tenant's backlog is therefore bounded ... Jobs spawned by a
running job count too": ctx.spawn is admitted like a submission, its earlier children counted
though the stats stream has not seen them."""
    monkeypatch.setenv("JOBPIPE_TENANT_MAX_UNFINISHED_JOBS", "3")
    composition.use(None)
    parent = submit(client, {"type": "author.fan_out", "payload": {"children": 20}})
    _feed_stream(client._app, aws)
    (message,) = receive_all(aws)
    invoke_worker(app, sqs_event([message]))
    _feed_stream(client._app, aws)
    children = get(client, parent["id"])["children"]
    unfinished = [c for c in children if get(client, c)["status"] in ("queued", "running", "retrying")]
    assert len(unfinished) <= 3, f"{len(unfinished)} spawned jobs queued for a tenant bounded at 3"


def test_a_retried_fan_out_takes_on_the_children_its_first_attempt_spawned(client, app, aws, author_types):
    """docs/jobs.md: a retried parent does not run its children's work twice: its second
    attempt's spawns return the children the first made (the same request, none failed)."""
    parent = submit(client, {"type": "author.fan_out_once_lost", "payload": {"children": 3}})
    drain(app, aws)
    ended = get(client, parent["id"])
    assert (ended["status"], ended["attempts"]) == ("completed", 2), ended
    assert len(ended["children"]) == 3 and ended["result"] == ended["children"]
    assert {get(client, c)["status"] for c in ended["children"]} == {"completed"}
