"""Concurrent submitters against the deployed API: every accepted job completes, and the
tenant's listing holds exactly the accepted jobs. JOBPIPE_SOAK=<n> multiplies the jobs."""
from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

THREADS = 8
SOAK = int(os.environ.get("JOBPIPE_SOAK", "1"))
PER_THREAD = 25 * SOAK
TERMINAL = {"completed", "failed", "canceled"}


def test_concurrent_submitters_every_accepted_job_completes(stack):
    tenant = f"load-{uuid.uuid4().hex[:8]}"
    headers = stack.headers(tenant)

    def submitter(index):
        accepted, refused = [], []
        for n in range(PER_THREAD):
            body = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 20}, "scope": f"t{index}"}
            extra = {"Idempotency-Key": f"{tenant}-{index}-{n}"} if n % 5 == 0 else {}
            response = stack.http.post(f"{stack.api_url}/jobs", json=body, headers={**headers, **extra}, timeout=60)
            (accepted if response.status_code == 202 else refused).append(response)
        return accepted, refused

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(submitter, range(THREADS)))
    refused = [r for _, rs in results for r in rs]
    assert not any(r.status_code >= 500 for r in refused), [r.text[:200] for r in refused[:3]]
    ids = [r.json()["id"] for accepted, _ in results for r in accepted]
    assert len(ids) == len(set(ids)) and len(ids) + len(refused) == THREADS * PER_THREAD

    deadline = time.monotonic() + 300 * SOAK
    final = {}
    while len(final) < len(ids) and time.monotonic() < deadline:
        pending = [i for i in ids if i not in final][:100]
        answer = stack.call("POST", "/jobs/status", tenant, json={"job_ids": pending}).json()["jobs"]
        final.update({i: j for i, j in answer.items() if j["status"] in TERMINAL})
        time.sleep(1)
    assert len(final) == len(ids), f"{len(ids) - len(final)} accepted jobs never finished"
    assert {j["status"] for j in final.values()} == {"completed"}

    listed, cursor = [], None
    while True:
        page = stack.call("GET", "/jobs?limit=100" + (f"&cursor={cursor}" if cursor else ""), tenant).json()
        listed += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(listed) == sorted(ids)
    completed = stack.call("GET", "/jobs?status=completed&limit=100", tenant).json()
    assert len(completed["jobs"]) == min(100, len(ids))
