"""GET /jobs/{id}/artifacts answers a page: a job that wrote tens of thousands of artifacts (one
per row of its input) is listed a page at a time, by name, never in one answer past what
Lambda returns; a bad limit or a cursor not of this job's listing is a 400."""
from __future__ import annotations

from chalicelib.composition import container
from chalicelib.defaults import ARTIFACT_PAGE, MAX_ARTIFACT_PAGE
from tests.functional.conftest import auth, submit_job

STEPS = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}


def listing(client, job_id: str, query: str = "", tenant: str = "acme"):
    return client.http.get(f"/jobs/{job_id}/artifacts{query}", headers=auth(tenant))


def test_a_job_with_more_artifacts_than_a_page_is_listed_page_by_page(client, aws):
    job_id = submit_job(client, STEPS)["id"]
    names = [f"row-{n:04d}.json" for n in range(ARTIFACT_PAGE + 30)]
    for name in reversed(names):
        container().artifacts.put(job_id, name, b"{}", "application/json")
    first = listing(client, job_id)  # a caller that does not page gets the first page
    assert first.status_code == 200
    assert set(first.json_body) == {"job_id", "artifacts", "next_cursor"} and first.json_body["job_id"] == job_id
    assert [a["name"] for a in first.json_body["artifacts"]] == names[:ARTIFACT_PAGE]
    assert first.json_body["next_cursor"]
    rest = listing(client, job_id, f"?cursor={first.json_body['next_cursor']}&limit={MAX_ARTIFACT_PAGE}").json_body
    assert [a["name"] for a in rest["artifacts"]] == names[ARTIFACT_PAGE:] and rest["next_cursor"] is None
    small = listing(client, job_id, "?limit=2").json_body
    assert [a["name"] for a in small["artifacts"]] == names[:2]
    after = listing(client, job_id, f"?limit=2&cursor={small['next_cursor']}").json_body
    assert [a["name"] for a in after["artifacts"]] == names[2:4]


def test_a_bad_limit_or_cursor_is_a_400(client, aws):
    job_id = submit_job(client, STEPS)["id"]
    other_id = submit_job(client, STEPS)["id"]
    for n in range(3):
        container().artifacts.put(job_id, f"out-{n}.txt", b"1", "text/plain")
        container().artifacts.put(other_id, f"out-{n}.txt", b"1", "text/plain")
    others = listing(client, other_id, "?limit=1").json_body["next_cursor"]
    for query in ("?limit=0", f"?limit={MAX_ARTIFACT_PAGE + 1}", "?limit=ten", "?limit=", "?limit=-1",
                  "?limit=1&limit=2", f"?cursor={others}", "?cursor=not-a-cursor", "?cursor=", "?cursor=" + "A" * 3000,
                  "?page=2"):
        answer = listing(client, job_id, query)
        assert answer.status_code == 400, query
        assert answer.json_body["error"]["code"] == "invalid_request", query
    # another tenant's job is not found, with or without a cursor of its own listing
    for query in ("?limit=1", f"?cursor={listing(client, job_id, '?limit=1').json_body['next_cursor']}"):
        foreign = listing(client, job_id, query, tenant="globex")
        assert foreign.status_code == 404 and foreign.json_body["error"]["code"] == "job_not_found", query


def test_the_openapi_document_declares_the_pages_query_and_its_400(client, aws):
    declared = client.http.get("/openapi.json").json_body["paths"]["/jobs/{job_id}/artifacts"]["get"]
    params = {p["name"]: p for p in declared["parameters"] if p["in"] == "query"}
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": MAX_ARTIFACT_PAGE,
                                         "default": ARTIFACT_PAGE}
    assert params["cursor"]["schema"]["type"] == "string"
    assert "400" in declared["responses"]
    assert "next_cursor" in declared["responses"]["200"]["content"]["application/json"]["schema"]["required"]
