"""The worker and scheduled functions' reading of their Lambda context (what is left of the
invocation, in seconds: what each claim weighs a job's timeout against, and what the
reconciler's pass keeps its requests within), and the workers' event sources."""
from __future__ import annotations

from contextlib import contextmanager

from chalicelib.reconciler import ReconcilePass
from chalicelib.worker import handlers, scheduled
from tests.support.lambda_context import TimeLeft
from tests.unit.test_worker_batch_refusals import warnings  # noqa: F401  (a fixture)


def test_the_time_left_is_the_contexts_in_seconds():
    """Read in the wrong unit (or off by a part in a thousand) a claim would start a job that
    Lambda kills part way, or defer one that fits."""
    assert handlers._seconds_left(TimeLeft(1500)) == 1.5
    assert handlers._seconds_left(TimeLeft(900_000)) == 900


def test_a_context_that_does_not_say_leaves_the_time_left_unknown():
    """No context (a direct call) or one without the remaining-time method: None, which a
    claim takes as no limit, not as no time at all."""
    assert handlers._seconds_left(None) is None
    assert handlers._seconds_left(object()) is None


def test_each_priority_has_its_worker_on_its_own_queue_taking_full_batches():
    """One function per priority, each on its own queue (a flood of low-priority jobs waits
    behind its own concurrency limit), taking up to WORKER_BATCH_SIZE messages an invocation:
    at Chalice's default of one, a backlog would take ten times the invocations."""
    import app
    from chalicelib.defaults import WORKER_BATCH_SIZE

    sources = {s.name: (s.queue, s.batch_size) for s in app.app.event_sources if s.name.startswith("job_worker")}
    assert sources == {"job_worker": (handlers.JOBS_QUEUE, WORKER_BATCH_SIZE),
                       "job_worker_high": (handlers.JOBS_QUEUE_HIGH, WORKER_BATCH_SIZE),
                       "job_worker_low": (handlers.JOBS_QUEUE_LOW, WORKER_BATCH_SIZE)}


class PassServices:
    """The services a reconciler pass runs on, keeping what it was given: the time left its
    requests are kept within (`sending`, called when read) and its pass's (`passed`)."""

    def __init__(self) -> None:
        self.sending: list = []
        self.passed: list = []
        self.reconciler = self
        self.reconciler_log = self

    @contextmanager
    def sending_while(self, time_left_s, keep_s):
        self.sending.append(time_left_s)
        yield

    def run_pass(self, *, time_left_s):
        self.passed.append(time_left_s)
        return ReconcilePass(started_at="2026-11-30T12:00:00Z")

    def record(self, started_at, counts) -> None:
        pass


def test_a_reconciler_pass_keeps_to_the_contexts_time_left_in_seconds():
    """The pass stops sending requests RECONCILE_PASS_MARGIN_S before its invocation ends: read
    in the wrong unit it would be cut off by Lambda mid-pass, or stop minutes early."""
    services = PassServices()
    scheduled.run_reconciler_pass(services, TimeLeft(1500))
    assert [left() for left in services.sending + services.passed] == [1.5, 1.5]


def test_a_reconciler_pass_without_a_context_has_no_time_left_to_keep_to():
    """Run by hand, with no Lambda context: no limit (None) to its requests, not a reading
    of a remaining time there is none of."""
    services = PassServices()
    scheduled.run_reconciler_pass(services)
    assert services.sending == services.passed == [None]


def test_a_pass_with_many_errors_logs_a_warning_naming_its_first_ten(warnings):
    """A pass that met an outage fails item after item: its line is a warning an alarm can
    match, and it names the first ten errors, not every one (a line per pass, of a size the
    log takes), as the pass's own answer does."""
    class FailingPass(PassServices):
        def run_pass(self, *, time_left_s):
            result = super().run_pass(time_left_s=time_left_s)
            result.errors.extend(f"job-{n}: the table did not answer" for n in range(12))
            return result

    answer = scheduled.run_reconciler_pass(FailingPass())
    first_ten = [f"job-{n}: the table did not answer" for n in range(10)]
    assert warnings == [("reconciler pass", {"counts": {}, "errors": first_ten})]
    assert answer["errors"] == first_ten
