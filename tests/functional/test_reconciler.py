"""The reconciler and long schedules through the API and the scheduled function, on moto."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ReadTimeoutError

from chalicelib.api.auth import issue_token
from chalicelib.observability import logger
from tests.functional.conftest import SECRET, LambdaContext, auth, drain, receive_all

STEPS = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}}


@pytest.fixture
def quick_grace(monkeypatch):
    monkeypatch.setenv("JOBPIPE_DISPATCH_GRACE_S", "1")


def scheduled_event(detail: dict) -> dict:
    return {"version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-11-30T12:00:00Z", "region": "us-east-1",
            "resources": [], "detail": detail}


def reconcile(app) -> dict:
    return app.handler_map["reconciler"](scheduled_event({}), LambdaContext(120))


def fire(app, task: str, at: str = "2026-11-30T12:00:00Z") -> dict:
    """The scheduled function invoked by `task`'s maintenance rule firing `at`."""
    return app.handler_map["reconciler"]({**scheduled_event({"maintenance_task": task}), "time": at},
                                         LambdaContext(120))


def times_out(**_request) -> None:
    """An SQS call whose answer never came, its retries spent."""
    raise ReadTimeoutError(endpoint_url="https://sqs.us-east-1.amazonaws.com")


def operator_headers() -> dict:
    token = issue_token(SECRET, user="op", tenant="ops", roles=["admin", "operator"])
    return {"Authorization": f"Bearer {token}"}


def submit_and_lose(client, aws) -> dict:
    """A job whose message is then purged, past its grace (the quick_grace fixture's 1 s)."""
    job = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body
    aws["sqs"].purge_queue(QueueUrl=aws["jobs_url"])
    time.sleep(1.2)
    return job


def completes(app, client, aws, job) -> bool:
    drain(app, aws)
    return client.http.get(f"/jobs/{job['id']}", headers=auth()).json_body["status"] == "completed"


def test_a_purged_message_is_sent_again_and_the_job_completes(quick_grace, app, client, aws):
    job = submit_and_lose(client, aws)
    assert reconcile(app)["counts"] == {"redispatched": 1}
    assert completes(app, client, aws, job)
    stats = client.http.get("/api/system/stats", headers=operator_headers()).json_body
    assert stats["reconciler"]["totals"]["redispatched"] == 1
    assert stats["reconciler"]["last_pass"]["counts"] == {"redispatched": 1}


def test_a_message_moved_to_the_dlq_fails_its_job_as_dead_lettered(app, client, aws):
    job = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body
    (message,) = receive_all(aws)
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=message["Body"])
    aws["sqs"].delete_message(QueueUrl=aws["jobs_url"], ReceiptHandle=message["ReceiptHandle"])
    assert reconcile(app)["counts"] == {"dead_lettered": 1}
    failed = client.http.get(f"/jobs/{job['id']}", headers=auth()).json_body
    assert failed["status"] == "failed" and failed["error"]["code"] == "dead_lettered"
    assert reconcile(app)["counts"] == {}


def test_a_dead_letter_queue_that_does_not_answer_leaves_the_others_letters_counted(app, client, aws, monkeypatch):
    from chalicelib.composition import container

    job = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body
    (message,) = receive_all(aws)
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=message["Body"])
    aws["sqs"].delete_message(QueueUrl=aws["jobs_url"], ReceiptHandle=message["ReceiptHandle"])
    sqs = container().queue_operations._sqs
    receive = sqs.receive_message

    def high_times_out(**request):
        if request["QueueUrl"] == aws["dlq_high_url"]:
            times_out()
        return receive(**request)

    monkeypatch.setattr(sqs, "receive_message", high_times_out)
    result = reconcile(app)
    assert result["counts"] == {"dead_lettered": 1, "errors": 1}
    assert result["errors"] == ["dead letters (high): dlq_unavailable: could not read the high dead-letter queue"]
    assert client.http.get(f"/jobs/{job['id']}", headers=auth()).json_body["error"]["code"] == "dead_lettered"


@pytest.mark.parametrize("foreign", [{"job_id": "other#system", "attempt": 1}, {"job_id": "", "attempt": 1}])
def test_a_dead_letter_naming_no_possible_job_leaves_the_pass_whole(quick_grace, app, client, aws, foreign):
    """A hand-moved or foreign message on a jobs DLQ (an id no job can have) is passed by; the
    pass still resends what was lost."""
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=json.dumps(foreign))
    job = submit_and_lose(client, aws)
    assert reconcile(app)["counts"] == {"redispatched": 1}
    assert completes(app, client, aws, job)


def test_a_dead_letter_queue_that_cannot_be_read_leaves_the_due_step_running(quick_grace, app, client, aws,
                                                                          monkeypatch):
    from chalicelib.composition import container

    job = submit_and_lose(client, aws)
    sqs = container().queue_operations._sqs

    with monkeypatch.context() as patched:
        patched.setattr(sqs, "receive_message", times_out)
        result = reconcile(app)
    assert result["counts"] == {"errors": 3, "redispatched": 1}, "each priority's DLQ is an error of its own"
    assert result["errors"][0].startswith("dead letters (high): dlq_unavailable: could not read the high")
    assert completes(app, client, aws, job)


def test_a_pass_whose_record_cannot_be_kept_still_ends_and_says_so(quick_grace, app, client, aws, monkeypatch,
                                                                   caplog):
    from chalicelib.composition import container
    from chalicelib.domain.errors import StoreUnavailableError

    job = submit_and_lose(client, aws)
    log = type(container().reconciler_log)

    def unavailable(self, started_at, counts):
        raise StoreUnavailableError("could not record the reconciler's pass")

    monkeypatch.setattr(log, "record", unavailable)
    # the pass did its work: it is not failed (and run again by the schedule's retries) for its record
    result = reconcile(app)
    assert result["counts"] == {"redispatched": 1}
    assert result["errors"] == ["reconciler log: store_unavailable: could not record the reconciler's pass"]
    (line,) = [r for r in caplog.records if r.getMessage() == "reconciler pass"]
    assert line.levelname == "WARNING" and line.counts == {"redispatched": 1}
    assert completes(app, client, aws, job)


def test_a_pass_without_errors_says_so_at_info(app, aws, caplog):
    """Warning is for a pass some step of which failed (what an operator looks into); a pass
    that went through says its counts at info, or every minute's line would be a warning."""
    assert reconcile(app)["errors"] == []
    (line,) = [r for r in caplog.records if r.getMessage() == "reconciler pass"]
    assert line.levelname == "INFO"


def test_a_job_an_hour_ahead_is_held_shows_not_before_and_can_be_canceled(app, client, aws):
    before = datetime.now(timezone.utc)
    job = client.http.post("/jobs", headers=auth(), body=json.dumps({**STEPS, "delay_seconds": 3600})).json_body
    assert job["status"] == "queued"
    not_before = datetime.fromisoformat(job["not_before"].replace("Z", "+00:00"))
    assert timedelta(seconds=3599) <= not_before - before <= timedelta(seconds=3610)
    assert receive_all(aws) == [], "held in the store, not on the queue"
    assert reconcile(app)["counts"] == {}
    canceled = client.http.delete(f"/jobs/{job['id']}", headers=auth())
    assert canceled.status_code == 202 and canceled.json_body["status"] == "canceled"


def test_run_at_is_validated(app, client, aws):
    soon = (datetime.now(timezone.utc) + timedelta(seconds=30)).isoformat()
    ok = client.http.post("/jobs", headers=auth(), body=json.dumps({**STEPS, "run_at": soon}))
    assert ok.status_code == 202 and ok.json_body["not_before"][:19] == soon[:19]
    for body, code in [
        ({**STEPS, "run_at": "2027-01-01T00:00:00"}, "invalid_request"),  # no zone
        ({**STEPS, "run_at": "tomorrow"}, "invalid_request"),
        ({**STEPS, "run_at": soon, "delay_seconds": 5}, "invalid_request"),
        ({**STEPS, "delay_seconds": 366 * 86400}, "invalid_request"),
        ({**STEPS, "run_at": (datetime.now(timezone.utc) + timedelta(days=400)).isoformat()}, "invalid_request"),
    ]:
        response = client.http.post("/jobs", headers=auth(), body=json.dumps(body))
        assert response.status_code == 400, (body, response.json_body)
        assert response.json_body["error"]["code"] == code


def test_a_run_at_in_the_past_starts_the_job_now(app, client, aws):
    """docs/api.md: a run_at that has passed (a scheduler a little late, a retried scheduled
    submission, or the year 1) is no error: the job starts now, its not_before the submit time."""
    for run_at in ("2020-06-01T09:00:00Z", "1970-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
                   "0001-01-01T00:00:00-01:00"):
        response = client.http.post("/jobs", headers=auth(), body=json.dumps({**STEPS, "run_at": run_at}))
        assert response.status_code == 202, (run_at, response.json_body)
        job = response.json_body
        assert job["not_before"] == job["created_at"], job
    assert len(receive_all(aws)) == 4, "sent at once, none held"


def test_a_scheduled_maintenance_task_is_enqueued_once_per_firing(app, client, aws):
    first = fire(app, "health_check")
    again = fire(app, "health_check")  # a retried invocation
    assert first["status"] == "queued"
    assert again == {**first, "status": "already_enqueued"}
    drain(app, aws)
    task = client.http.get(f"/api/system/maintenance/tasks/{first['task_id']}", headers=operator_headers()).json_body
    assert task["status"] == "completed" and task["requested_by"] == "schedule"


def test_each_firing_of_a_schedule_enqueues_its_own_task(app, aws):
    """Firings a minute apart (the finest a schedule fires) are two runs of the task: the
    second must not be taken for a retry of the first and dropped."""
    first, second = fire(app, "health_check"), fire(app, "health_check", at="2026-11-30T12:01:00Z")
    assert (first["status"], second["status"]) == ("queued", "queued") and first["task_id"] != second["task_id"]


def test_a_firing_retried_minutes_later_is_enqueued_once(app, client, aws, monkeypatch):
    """Lambda retries a failed scheduled invocation minutes after the firing: the task's id
    comes from when the schedule fired (the event's time), not from when the invocation runs,
    so the retry finds the task enqueued instead of starting it a second time."""
    from chalicelib.worker import scheduled

    runs_at = iter([datetime(2026, 11, 30, 12, 0, 30, tzinfo=timezone.utc),
                    datetime(2026, 11, 30, 12, 3, 30, tzinfo=timezone.utc)])
    monkeypatch.setattr(scheduled, "utcnow", lambda: next(runs_at))
    first, again = fire(app, "health_check"), fire(app, "health_check")
    assert first["status"] == "queued" and again == {**first, "status": "already_enqueued"}


def test_a_scheduled_clean_up_keeps_finished_jobs_for_their_retention(app, aws, monkeypatch):
    """The scheduled clean-up removes a finished job's records and objects once its retention
    (JOBPIPE_RETENTION_DAYS) is over, not at the task's shorter default, which would remove
    jobs callers may still read; the other tasks take their own defaults."""
    from chalicelib.composition import container

    monkeypatch.setenv("JOBPIPE_RETENTION_DAYS", "3")
    payloads = {}
    for task in ("cleanup_runs", "health_check"):
        payloads[task] = container().store.get(fire(app, task)["task_id"], mark_gone=False).payload
    assert payloads["cleanup_runs"]["max_age_hours"] == 72 and payloads["health_check"] == {}


def test_a_schedule_naming_no_maintenance_task_fails_naming_those_there_are(app, aws):
    """A rule whose task this code does not know (a template ahead of its code, a typo) fails
    its invocation with the tasks there are, where the failure alarm sees it, and enqueues
    nothing: no job of a type no worker runs."""
    with pytest.raises(ValueError, match=r"unknown maintenance task 'defrag'; one of .*health_check"):
        fire(app, "defrag")
    assert receive_all(aws) == []


def test_a_job_record_this_code_cannot_read_leaves_the_others_listed_and_repaired(quick_grace, app, client, aws,
                                                                                  monkeypatch):
    """A job item written in a form this code cannot read (a status a later version added,
    met during a rollback; a record edited by hand) is left out of the reconciler's due page
    and of listings and batch polls, said in an error log line naming it; the jobs beside it
    are still listed, polled and repaired, where before every pass failed on it."""
    unreadable = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body
    lost = submit_and_lose(client, aws)  # both messages purged
    aws["ddb"].update_item(TableName="jobs", Key={"pk": {"S": f"JOB#{unreadable['id']}"}, "sk": {"S": "JOB"}},
                           UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
                           ExpressionAttributeValues={":s": {"S": "paused"}})
    said = []
    monkeypatch.setattr(logger, "error", lambda message, *args, extra=None, **kwargs: said.append((message, extra)))
    assert reconcile(app)["counts"] == {"redispatched": 1}
    assert said and said[0][0] == "job record unreadable: left out"
    assert said[0][1]["job_id"] == unreadable["id"] and "'paused'" in said[0][1]["error"]
    assert completes(app, client, aws, lost)
    listed = client.http.get("/jobs", headers=auth()).json_body["jobs"]
    assert [job["id"] for job in listed] == [lost["id"]]
    polled = client.http.post("/jobs/status", headers=auth(),
                              body=json.dumps({"job_ids": [unreadable["id"], lost["id"]]})).json_body
    assert polled["jobs"][lost["id"]]["status"] == "completed"


def test_a_dead_letter_of_a_job_whose_record_this_code_cannot_read_is_kept(app, client, aws):
    """A letter is deleted as a removed job's only when its job's record is gone: a record this
    code cannot read (a status a later version added, met during a rollback; an item edited by
    hand) still holds the job, and its letter stays for operators and for the code that reads it."""
    job = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body
    (message,) = receive_all(aws)
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=message["Body"])
    aws["sqs"].delete_message(QueueUrl=aws["jobs_url"], ReceiptHandle=message["ReceiptHandle"])
    aws["ddb"].update_item(TableName="jobs", Key={"pk": {"S": f"JOB#{job['id']}"}, "sk": {"S": "JOB"}},
                           UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
                           ExpressionAttributeValues={":s": {"S": "paused"}})
    assert "orphaned_letter_deleted" not in reconcile(app)["counts"]
    kept = aws["sqs"].receive_message(QueueUrl=aws["dlq_url"], MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["job_id"] for m in kept] == [job["id"]]


def test_a_pass_that_ends_with_errors_writes_the_metric_its_alarm_watches(app, aws, monkeypatch, capsys):
    """ReconcilerErrorsAlarm watches `reconciler_errors` as the scheduled function writes it for
    the stack it runs in: a pass that fails a step on every run (a permission, an outage) while
    its invocations succeed is seen by it, and only its own stack's passes count."""
    from chalicelib.composition import container
    from tests.support.infra import packaged_template

    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "jobpipe-production")  # the template's ${AWS::StackName}
    sqs = container().queue_operations._sqs

    monkeypatch.setattr(sqs, "receive_message", times_out)
    capsys.readouterr()
    assert reconcile(app)["counts"] == {"errors": 3}
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    alarm = packaged_template()["Resources"]["ReconcilerErrorsAlarm"]["Properties"]
    stack_name = {"Ref": "AWS::StackName"}
    wanted = {d["Name"]: ("jobpipe-production" if d["Value"] == stack_name else d["Value"]) for d in alarm["Dimensions"]}
    (document,) = [d for d in documents if alarm["MetricName"] in d]
    (definition,) = document["_aws"]["CloudWatchMetrics"]
    assert definition["Namespace"] == alarm["Namespace"]
    assert sorted(definition["Dimensions"][0]) == sorted(wanted)
    assert {name: document[name] for name in wanted} == wanted
    assert document[alarm["MetricName"]] in (3, [3], 3.0, [3.0])
