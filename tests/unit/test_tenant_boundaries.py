"""What holds tenants apart below the routes (in-memory adapters): a token's roles, where only
`operator` opens the system routes; the lifecycle, which answers another tenant's job as a
missing one and writes nothing of it; and a spawn, whose child is its parent's tenant's
whatever the handler asks."""
from __future__ import annotations

import inspect
import time

import jwt
import pytest

from chalicelib.api.auth import OPERATOR, TokenPolicy, authenticate
from chalicelib.api.errors import ForbiddenError
from chalicelib.domain.errors import JobNotFoundError
from chalicelib.domain.job import new_job_id
from chalicelib.domain.status import JobStatus
from chalicelib.job_reads import JobReads
from chalicelib.ports import JobMessage, JobQuery
from chalicelib.worker.context import JobContext

SECRET = "unit-test-secret-0123456789abcdef0123"
POLICY = TokenPolicy(SECRET, max_lifetime_s=3600)
STEPS = {"steps": 1, "step_ms": 0}


def principal(roles):
    now = int(time.time())
    claims = {"sub": "bob", "tenant": "globex", "iat": now, "exp": now + 600, "roles": roles}
    return authenticate({"Authorization": "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")}, POLICY)


@pytest.mark.parametrize("roles", [[], ["admin"], ["Operator"], ["OPERATOR"], ["operator "], ["operators"],
                                   ["admin", "reader"], ["role:operator"]])
def test_no_role_but_operator_opens_an_operator_route(roles):
    """docs/api.md: any role but `operator` (an identity service's `admin`, say) grants nothing;
    a role is its exact name, never read case-insensitively or trimmed."""
    with pytest.raises(ForbiddenError, match="needs the 'operator' role"):
        principal(roles).require_role(OPERATOR)


def test_the_operator_role_opens_it_beside_any_other():
    principal(["admin", OPERATOR]).require_role(OPERATOR)
    principal([OPERATOR]).require_role(OPERATOR)


def _submit(lifecycle, tenant="acme", **extra):
    return lifecycle.submit(tenant=tenant, user="ann", type="demo.steps", payload=STEPS, **extra)


def _refusal(call) -> str:
    with pytest.raises(JobNotFoundError) as caught:
        call()
    return caught.value.message


@pytest.mark.parametrize("running", [False, True])
def test_another_tenants_cancel_is_a_missing_jobs_and_writes_nothing(lifecycle, store, queue, running):
    """A queued job is canceled at once and a running one asked to stop: by another tenant,
    neither, and the refusal is the one a missing id gets (the id swapped)."""
    job = _submit(lifecycle)
    if running:
        job = lifecycle.claim(queue.drain()[0]).job
    before, sent = store.get(job.id, mark_gone=False), list(queue.sent)
    missing = new_job_id()
    assert _refusal(lambda: lifecycle.cancel("globex", job.id)).replace(job.id, missing) \
        == _refusal(lambda: lifecycle.cancel("globex", missing))
    assert _refusal(lambda: lifecycle.get("globex", job.id)).replace(job.id, missing) \
        == _refusal(lambda: lifecycle.get("globex", missing))
    assert store.get(job.id, mark_gone=False) == before and queue.sent == sent
    assert not before.cancel_requested and before.status != JobStatus.CANCELED


def test_another_tenants_rerun_of_a_finished_job_is_a_missing_jobs_and_makes_nothing(lifecycle, store, queue):
    job = _submit(lifecycle)
    lifecycle.cancel("acme", job.id)  # canceled: finished, so its owner could run it again
    jobs, sent = dict(store._jobs), list(queue.sent)
    missing = new_job_id()
    assert _refusal(lambda: lifecycle.rerun(tenant="globex", user="gil", job_id=job.id)).replace(job.id, missing) \
        == _refusal(lambda: lifecycle.rerun(tenant="globex", user="gil", job_id=missing))
    assert store._jobs == jobs and queue.sent == sent


@pytest.mark.parametrize("tenant", ["acme", "globex"])
def test_a_spawned_child_is_its_parents_tenants_and_no_one_elses(lifecycle, store, queue, tenant):
    """ctx.spawn takes no tenant or user: a child is made in its parent's tenant, by its parent's
    user, in its parent's scope (or one named in that tenant); it is listed and read there only."""
    other = "globex" if tenant == "acme" else "acme"
    parent = lifecycle.submit(tenant=tenant, user="ann", type="demo.fanout", scope="proj",
                              payload={"children": 2, "steps": 1, "step_ms": 0})
    running = lifecycle.claim(queue.drain()[0]).job
    first = lifecycle.spawn(running, 1, type="demo.steps", payload=STEPS)
    second = lifecycle.spawn(running, 2, type="demo.steps", payload=STEPS, scope="elsewhere")
    assert [(c.tenant, c.user, c.scope, c.parent_id) for c in (first, second)] \
        == [(tenant, "ann", "proj", parent.id), (tenant, "ann", "elsewhere", parent.id)]
    assert not {"tenant", "user"} & set(inspect.signature(JobContext.spawn).parameters)
    reads = JobReads(store)
    assert [job_id for job_id, job in reads.visible_jobs(tenant, [first.id, second.id]) if job] == [first.id, second.id]
    assert reads.visible_jobs(other, [first.id, second.id]) == [(first.id, None), (second.id, None)]
    assert reads.tree(other, [running]) == ({}, True)
    assert store.list_jobs(JobQuery(other)).jobs == []
    assert {j.id for j in store.list_jobs(JobQuery(tenant)).jobs} == {parent.id, first.id, second.id}
    for child in (first, second):
        with pytest.raises(JobNotFoundError):
            lifecycle.cancel(other, child.id)
    # their first messages' claim hint names the parent's tenant: a worker claims them as its
    sent = [m for m, _, _ in queue.sent if m.job_id in (first.id, second.id)]
    assert [(m, m.tenant) for m in sent] == [(JobMessage(first.id, 1), tenant), (JobMessage(second.id, 1), tenant)]
