"""The worker helpers through the API and the worker function, on moto: what a job written with
`start_job`, `progress`, `complete_job` and `fail_job` ends as, seen by GET /jobs/{id}."""
import json

import pytest
from pydantic import BaseModel

from chalicelib.domain.errors import ProgressRejectedError
from chalicelib.job_types import registry
from chalicelib.worker.helpers import complete_job, fail_job, progress, start_job
from tests.functional.conftest import auth, drain
from tests.functional.conftest import get_job as get
from tests.functional.conftest import submit_job as submit


class Empty(BaseModel):
    pass


def run_once(client, app, aws, name: str, handler, *, max_attempts: int) -> dict:
    """`handler` registered as job type `name` (for this test only), one job of it submitted and
    run by the worker: the job as GET /jobs/{id} then shows it."""
    registry.register(name, Empty, max_attempts=max_attempts, timeout_s=30)(handler)
    try:
        job = submit(client, {"type": name, "payload": {}})
        drain(app, aws)
    finally:
        registry._types.pop(name)
    return get(client, job["id"])


@pytest.fixture
def late_failure_type():
    """A job type (for this test only) failing below the percent it reached."""
    name = "test.fail_below_reached"

    @registry.register(name, Empty, max_attempts=3, timeout_s=30)
    def fail_below(ctx, payload):
        start_job(ctx, "Beginning processing")
        progress(ctx, 80, "processing", "Processing", force=True)
        fail_job(ctx, "ERR_001", "Something went wrong", progress_percent=75)

    yield name
    registry._types.pop(name)


def test_demo_model_completes_with_the_result_complete_job_recorded(client, app, aws):
    job = submit(client, {"type": "demo.model", "payload": {"step_ms": 0}})
    drain(app, aws)
    done = get(client, job["id"])
    assert done["status"] == "completed", done
    assert done["result"] == {"model": "output.stl", "size": 1024}
    assert done["progress"]["percent"] == 100
    assert done["progress"]["message"] == "Model processing complete"
    runs = client.http.get(f"/jobs/{job['id']}/runs", headers=auth()).json_body["runs"]
    assert [r["status"] for r in runs] == ["completed"]


def test_demo_model_failure_is_the_callers_code_without_retry(client, app, aws):
    job = submit(client, {"type": "demo.model", "payload": {"step_ms": 0, "fail_at": 40}})
    drain(app, aws)
    done = get(client, job["id"])
    assert done["status"] == "failed" and done["attempts"] == 1
    assert done["error"]["code"] == "MODEL_ERROR"
    assert done["error"]["message"] == "model processing failed at step 40% as asked"
    assert done["progress"]["percent"] == 40


def test_fail_job_below_the_percent_reached_fails_once_with_the_callers_code(client, app, aws, late_failure_type):
    job = submit(client, {"type": late_failure_type, "payload": {}})
    drain(app, aws)
    done = get(client, job["id"])
    assert done["status"] == "failed" and done["attempts"] == 1, done
    assert (done["error"]["code"], done["error"]["message"]) == ("ERR_001", "Something went wrong")
    assert done["progress"]["percent"] == 80 and done["progress"]["step"] == "failed"


def test_demo_model_payload_is_validated(client):
    response = client.http.post("/jobs", headers=auth(),
                                body=json.dumps({"type": "demo.model", "payload": {"fail_at": 45}}))
    assert response.status_code == 422
    assert response.json_body["error"]["code"] == "invalid_payload"


@pytest.mark.parametrize("message, why", [
    (123, "progress message must be text, not int"),
    ("done \udcff", "progress message holds a lone surrogate"),
    ("y" * 300_001, "progress message is 300001 characters; at most 300000"),
])
def test_a_completion_message_no_report_could_carry_is_refused_at_the_call(client, app, aws, message, why):
    """complete_job's message becomes the job's progress message, as start_job's and progress's
    do: refused at the call as theirs are, the attempt fails saying why, instead of the
    completion's write failing after the work was done and the job staying `running`."""
    name = "test.complete_with_bad_message"
    refused = []

    def complete_badly(ctx, payload):
        try:
            complete_job(ctx, {"ok": True}, message)
        except Exception as exc:
            refused.append(type(exc).__name__)
            raise

    done = run_once(client, app, aws, name, complete_badly, max_attempts=1)
    assert refused == ["ProgressRejectedError"]
    assert done["status"] == "failed" and done["error"]["code"] == "progress_rejected", done
    assert done["error"]["message"].startswith(why) and done["result"] is None


@pytest.mark.parametrize("code", [None, "", "  "])
def test_fail_job_without_a_code_fails_with_the_default_one(client, app, aws, code):
    """fail_job(ctx, err.code, ...) with an error that has no code (None): the job's code is
    `handler_failed`, as for an empty one, not the text "None" a consumer would branch on."""
    name = "test.fail_without_code"

    def fail_without_code(ctx, payload):
        fail_job(ctx, code, "no code given")

    done = run_once(client, app, aws, name, fail_without_code, max_attempts=3)
    assert done["status"] == "failed" and done["attempts"] == 1, done
    assert (done["error"]["code"], done["error"]["message"]) == ("handler_failed", "no code given")


def test_a_percent_read_from_dynamodb_as_a_decimal_is_a_number_like_any_other(client, app, aws):
    """boto3 reads a DynamoDB number as a Decimal: a handler computing its percent from a count
    it read reports a Decimal, which is a finite number, clamped as any (docs/jobs.md); text
    stays refused."""
    from decimal import Decimal
    from fractions import Fraction

    name = "test.decimal_percent"
    seen = []

    def decimal_percent(ctx, payload):
        progress(ctx, Decimal("41.5"), "counting", force=True)
        seen.append(ctx.progress_percent)
        progress(ctx, Fraction(2, 3) * 100, "counting", force=True)
        seen.append(ctx.progress_percent)
        for refused in ("70", Decimal("NaN"), Decimal("sNaN")):
            try:
                progress(ctx, refused)
            except ProgressRejectedError as exc:
                seen.append(str(exc))
        fail_job(ctx, "STOP", "stopped to show the percent", progress_percent=Decimal("80.004"))

    done = run_once(client, app, aws, name, decimal_percent, max_attempts=1)
    assert seen == [41.5, 66.67, "progress percent must be a number, not '70'",
                    "progress percent must be a finite number, not Decimal('NaN')",
                    "progress percent must be a finite number, not Decimal('sNaN')"]
    assert (done["status"], done["progress"]["percent"]) == ("failed", 80), done
