"""A due job whose reconcile action fails on every pass does not hold back the jobs due after it."""
from __future__ import annotations

from chalicelib.defaults import RECONCILE_RETRY_S
from chalicelib.domain.errors import StoreUnavailableError
from chalicelib.reconciler import DUE_PER_PASS, Reconciler

STEPS = {"steps": 2, "step_ms": 0}


def submit(lifecycle, **extra):
    return lifecycle.submit(tenant="acme", user="ann", type="demo.steps", payload=STEPS, **extra)


def test_due_jobs_whose_action_keeps_failing_do_not_starve_the_rest_of_the_index(lifecycle, queue, clock, store,
                                                                                  monkeypatch):
    """A pass reads the DUE_PER_PASS earliest entries of the due index. Jobs whose action raises
    on every pass (a bug, a record that refuses the action's write) are put back
    RECONCILE_RETRY_S, so a job whose message was lost, due after all of them, is still sent
    again within the same pass's successor — and the failing ones keep being tried."""
    stuck = {submit(lifecycle).id for _ in range(DUE_PER_PASS)}
    clock.advance(1)
    lost = submit(lifecycle)
    queue.drain()  # every message is lost (a purge): the reconciler must resend them

    reconcile = lifecycle.reconcile
    tried: list[str] = []

    def fails_for_the_stuck(job):
        if job.id in stuck:
            tried.append(job.id)
            raise StoreUnavailableError(f"could not update job {job.id}")
        return reconcile(job)

    monkeypatch.setattr(lifecycle, "reconcile", fails_for_the_stuck)
    reconciler = Reconciler(lifecycle, None)
    clock.advance(3600)
    first = reconciler.run_pass()
    assert first.counts["errors"] == DUE_PER_PASS and store.get(lost.id).dispatches == 1
    second = reconciler.run_pass()  # the stuck ones were put back: the lost job's turn
    assert second.counts["redispatched"] == 1 and store.get(lost.id).dispatches == 2
    assert all(store.get(i).due_at > store.get(lost.id).created_at for i in stuck)
    clock.advance(RECONCILE_RETRY_S + 1)
    tried.clear()
    reconciler.run_pass()
    reconciler.run_pass()  # the lost job, due again, may take a place in the first
    assert set(tried) == stuck, "the failing jobs are tried again once their wait is over"


def test_a_job_whose_action_fails_is_left_where_it_is_when_the_failed_action_moved_it(lifecycle, queue, clock, store,
                                                                                      monkeypatch):
    """A resend writes the job's next due time before its message: when the send fails, that
    due time stands (put back would find the job changed and leaves it)."""
    job = submit(lifecycle)
    queue.drain()
    clock.advance(3600)

    def send_fails(*_, **__):
        raise StoreUnavailableError("queue down")

    monkeypatch.setattr(lifecycle.queue, "send", send_fails)
    result = Reconciler(lifecycle, None).run_pass()
    assert result.counts == {"errors": 1}
    after = store.get(job.id)
    assert after.dispatches == 2 and after.version == job.version + 1  # the resend's own write, nothing more
