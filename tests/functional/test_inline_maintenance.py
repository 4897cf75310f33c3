"""USE_TASK_QUEUE=false: maintenance tasks run inside the API function, bounded by its time."""
import re

import pytest

from chalicelib import composition
from chalicelib.api import maintenance as maintenance_api
from tests.functional.conftest import receive_all, token


def operator():
    return {"Authorization": f"Bearer {token(roles=['operator'])}", "Content-Type": "application/json"}


@pytest.fixture
def inline(aws, monkeypatch):
    monkeypatch.setenv("USE_TASK_QUEUE", "false")
    composition.use(None)
    yield
    composition.use(None)


def test_a_task_that_cannot_fit_is_refused_with_a_clear_error(client, aws, inline, monkeypatch):
    monkeypatch.setattr(maintenance_api, "API_GATEWAY_TIMEOUT_MS", 2_500)  # 1.5 s once the answer's margin is kept
    response = client.http.post("/api/system/maintenance/health-check", headers=operator())
    assert response.status_code == 503, response.body
    error = response.json_body["error"]
    assert error["code"] == "task_out_of_time"
    assert re.fullmatch(r"health_check needs at least 3 s and has [01](\.\d+)? s left", error["message"])
    assert error["details"]["task"] == "health_check"
    assert receive_all(aws, "jobs_url") == []


def test_a_task_stops_at_the_deadline_and_says_it_is_incomplete(client, aws, inline, monkeypatch):
    calls = []

    def scripted(lambda_context):
        assert lambda_context.get_remaining_time_in_millis() > 25_000  # the API function's real context
        countdown = iter([10_000, 10_000])  # the start and the first probe; then the time is gone

        def time_left():
            calls.append(1)
            return next(countdown, 500)

        return time_left

    monkeypatch.setattr(maintenance_api, "inline_time_left", scripted)
    response = client.http.post("/api/system/maintenance/health-check", headers=operator())
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["task_id"] is None and body["result"]["complete"] is False
    assert body["result"]["healthy"] is False
    assert "not checked: the task ran out of time" in str(body["result"]["checks"])
    assert "incomplete" in body["message"] and "USE_TASK_QUEUE=true" in body["message"]
    assert len(calls) >= 3


def test_with_time_enough_an_inline_task_completes(client, aws, inline):
    response = client.http.post("/api/system/maintenance/health-check", headers=operator())
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["result"]["complete"] is True and body["message"] == "health_check ran inline (USE_TASK_QUEUE=false)"
