"""A handler that will not stop at its timeout: interrupted again and again, and at last its
attempt failed `timeout` and its process ended before the attempt's lease lapses, so the next
attempt (started once the lease lapses) never runs beside it."""
import re
import signal
import threading
import time
from typing import Any, Optional

import pytest
from pydantic import BaseModel

from chalicelib import composition
from chalicelib.adapters.clocks import ManualClock, SystemClock
from chalicelib.defaults import (
    HANDLER_ALARM_LATE_S,
    HANDLER_GIVE_UP_S,
    HANDLER_GIVE_UP_WRITE_S,
    HANDLER_REINTERRUPT_S,
    LEASE_GRACE_S,
)
from chalicelib.domain.errors import JobTimeoutError, StoreUnavailableError
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle import JobLifecycle
from chalicelib.observability import end_process
from chalicelib.worker import timeout
from chalicelib.worker.helpers import complete_job, fail_job
from chalicelib.worker.runner import JobRunner


class Empty(BaseModel):
    pass


class Stubborn(BaseModel):
    seconds: float = 3  # how long it goes on, swallowing interrupts, before it returns on its own


@pytest.fixture
def types():
    registry = JobTypeRegistry()

    @registry.register("t.stubborn", Stubborn, timeout_s=1, max_attempts=2)
    def stubborn(ctx, payload):
        """A retry loop around `except Exception`: it swallows every timeout."""
        stop = time.monotonic() + payload.seconds
        while time.monotonic() < stop:
            try:
                time.sleep(0.01)
            except Exception:  # noqa: BLE001 - what the test is about
                pass
        return "finished late"

    @registry.register("t.one_more_try", Empty, timeout_s=1, max_attempts=1)
    def one_more_try(ctx, payload):
        """Catches its timeout once, then sleeps as if nothing happened."""
        try:
            time.sleep(60)
        except Exception:  # noqa: BLE001
            time.sleep(60)
        return "finished late"

    return registry


class ProcessEnded(KeyboardInterrupt):
    """What the test's end of the process raises: like Ctrl-C, it leaves the runner at once."""


@pytest.fixture
def end_process_here():
    """`end_process` for a runner in a test: `make(on_end)` is a callable doing to the test's
    main thread what os._exit does to a worker's process. The give-up may run in the alarm, on
    the main thread, where raising ProcessEnded is enough, or in the watchdog's thread, when the
    alarm came late on a busy machine: raising there alone ended only that thread, and the
    handler went on swallowing interrupts on the main thread, the test's run hanging until its
    timeout. From another thread it signals the main thread, whose handler raises ProcessEnded
    where the handler runs."""
    def interrupted(signum, frame):
        raise ProcessEnded()

    previous = signal.signal(signal.SIGUSR1, interrupted)

    def make(on_end=lambda: None):
        def end():
            on_end()
            if threading.current_thread() is not threading.main_thread():
                signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
                return  # the watchdog's thread ends with its give-up
            raise ProcessEnded()
        return end

    yield make
    signal.signal(signal.SIGUSR1, previous)


def test_a_handler_interrupted_again_stops_soon_after_its_timeout(store, queue, clock, types, monkeypatch):
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.2)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.one_more_try", payload={})
    started = time.monotonic()
    job = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    assert time.monotonic() - started < 30, "the second interrupt ends the second sleep"
    assert job.status == JobStatus.FAILED and job.error.code == "timeout"


def test_a_handler_that_swallows_every_interrupt_is_failed_timeout_and_its_process_ended(
        store, queue, clock, monkeypatch, end_process_here):
    """The real alarm interrupts it; how long it went on past its timeout is read on the
    worker's clock, which moves HANDLER_REINTERRUPT_S between two interrupts here, as on Lambda:
    given up on at the interrupt HANDLER_GIVE_UP_S past the timeout, however late a busy machine
    delivers them."""
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)  # the real alarm's period: quicker
    worker_clock, interrupts = ManualClock(), []
    types = JobTypeRegistry()

    @types.register("t.swallows", Empty, timeout_s=1, max_attempts=2)
    def swallows(ctx, payload):
        """A retry loop around `except Exception`: it swallows every timeout."""
        while len(interrupts) < 10_000:  # a bound for the test only: the give-up comes long before
            try:
                time.sleep(1)
            except Exception as exc:  # noqa: BLE001 - what the test is about
                interrupts.append(str(exc))
                worker_clock.advance(HANDLER_REINTERRUPT_S)
        return "finished late"

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    submitted = lifecycle.submit(tenant="acme", user="ann", type="t.swallows", payload={})
    ended = []
    end = end_process_here(lambda: ended.append(worker_clock.monotonic()))
    seen = []
    runner = JobRunner(lifecycle, types, clock=worker_clock, progress_interval_s=0, end_process=end,
                       observe=lambda event, job, extra: seen.append((event, extra)))
    with pytest.raises(ProcessEnded):
        runner.run(queue.drain()[0])
    # operations.md: one `process_ended` line (the jobs_process_ended metric), saying how far past
    assert [(e, x) for e, x in seen if e.startswith("process")] == [
        ("process_ended", {"reason": "the handler went on past its timeout", "over_s": HANDLER_GIVE_UP_S})]
    # the first interrupt at the timeout, then one a period later each, until the one at the give-up
    went_on = [n * HANDLER_REINTERRUPT_S for n in range(1, int(HANDLER_GIVE_UP_S / HANDLER_REINTERRUPT_S))]
    assert interrupts == [JobTimeoutError.exceeded(1)] + [JobTimeoutError.exceeded(1, over_s=s) for s in went_on]
    assert ended == [HANDLER_GIVE_UP_S]
    job = store.get(submitted.id, mark_gone=False)
    assert job.status == JobStatus.RETRYING and job.error.code == "timeout", job.error
    assert job.error.message == (f"{JobTimeoutError.exceeded(1, over_s=HANDLER_GIVE_UP_S)} despite being "
                                 "interrupted: its worker process was ended")
    assert [m.attempt for m in queue.drain()] == [2], "the next attempt is on its way"


def test_without_a_process_to_end_the_interrupts_go_on(store, queue, clock, types, monkeypatch):
    """Tests and local runs give no end_process: the handler is only interrupted again."""
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.stubborn", payload={})
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0, give_up_after_s=0.2)
    job = runner.run(queue.drain()[0])
    assert job.status == JobStatus.RETRYING and job.error.code == "timeout"


def off_the_main_thread(run) -> None:
    """`run` in a thread of its own, as a handler runs outside Lambda's main thread (no signal
    reaches it), waited for 5 s at most."""
    worker = threading.Thread(target=run)
    worker.start()
    worker.join(5)


@pytest.mark.parametrize("timeout_s", [None, 30])
@pytest.mark.parametrize("in_thread", [False, True])
def test_a_timeout_says_the_handlers_timeout_in_one_wording_on_either_path(in_thread, timeout_s):
    """The alarm (Lambda's main thread) and a handler's thread (elsewhere) say it alike, naming
    the job type's timeout: the one given when a slow claim left the handler less of it (here
    0.25 s of 30 s), else the time it had."""
    def late():
        time.sleep(2)

    raised = []

    def run():
        try:
            timeout.run_with_timeout(late, 0.25, lambda: None, clock=SystemClock(), timeout_s=timeout_s)
        except JobTimeoutError as exc:
            raised.append(str(exc))

    if in_thread:
        off_the_main_thread(run)
    else:
        run()
    if timeout_s is None:
        assert raised == [JobTimeoutError.exceeded(0.25)] == ["handler exceeded its timeout of 0.25 s"]
    else:
        assert raised == [JobTimeoutError.exceeded(30)] == ["handler exceeded its timeout of 30 s"]


def test_the_process_ends_before_the_attempts_lease_lapses():
    """The lease is the timeout plus LEASE_GRACE_S: giving up, with its last write, fits inside
    the grace with time to spare for the interrupt's own period."""
    assert HANDLER_GIVE_UP_S + HANDLER_GIVE_UP_WRITE_S + 2 * HANDLER_REINTERRUPT_S < LEASE_GRACE_S
    # and when the handler stopped the alarm, the watchdog's, which begins that much later
    assert HANDLER_ALARM_LATE_S + HANDLER_GIVE_UP_S + HANDLER_GIVE_UP_WRITE_S + 2 * HANDLER_REINTERRUPT_S < LEASE_GRACE_S
    # and when it stopped the alarm just before the give-up: the watchdog sees no interrupt come
    # within two of its looks, then gives up at its next tick
    assert (HANDLER_GIVE_UP_S + 2 * (HANDLER_REINTERRUPT_S + HANDLER_ALARM_LATE_S) + HANDLER_REINTERRUPT_S
            + HANDLER_GIVE_UP_WRITE_S < LEASE_GRACE_S)
    # each with the second a slow claim's time left is rounded up by (JobRunner._handler_time_s)
    assert (1 + HANDLER_GIVE_UP_S + 2 * (HANDLER_REINTERRUPT_S + HANDLER_ALARM_LATE_S) + HANDLER_REINTERRUPT_S
            + HANDLER_GIVE_UP_WRITE_S < LEASE_GRACE_S)


def test_the_worker_functions_end_their_process(monkeypatch):
    """The composition root gives the runner the real end of the process."""
    runner = composition.Container.runner.func(type("C", (), {
        "lifecycle": None, "registry": None, "artifacts": None, "quota": None, "clock": None,
        "settings": type("S", (), {"progress_min_interval_s": 2.0})(),
    })())
    assert runner._end_process is end_process


def own_alarm_around(seconds: float, call) -> None:
    """The usual recipe for a timeout around one call: SIGALRM taken for it, then cleared."""
    import signal

    def expired(signum, frame):
        raise TimeoutError("the call took too long")

    before = signal.signal(signal.SIGALRM, expired)
    signal.alarm(5)
    try:
        call()
    finally:
        signal.alarm(0)  # clears the process's one real-time timer: the worker's too
        signal.signal(signal.SIGALRM, before)


def test_a_handler_that_uses_sigalrm_itself_still_fails_at_its_timeout(store, queue, clock):
    """A handler that times one call with SIGALRM clears the worker's timer: nothing interrupts it
    then, but its attempt's time still ends. It goes on past its 1 s and returns a result: the
    attempt fails `timeout`, and a progress report after the timeout is not written."""
    types, refused = JobTypeRegistry(), []

    @types.register("t.own_alarm", Empty, timeout_s=1, max_attempts=2)
    def own_alarm(ctx, payload):
        own_alarm_around(5, lambda: time.sleep(0.05))
        time.sleep(1 + HANDLER_ALARM_LATE_S + 1)
        try:
            ctx.progress(90, force=True)
        except JobTimeoutError as exc:
            refused.append(exc)
        return "finished late"

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.own_alarm", payload={})
    job = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    assert job.status == JobStatus.RETRYING and job.error.code == "timeout" and job.result is None, job
    assert refused and job.progress.percent < 90


def assert_given_up_on(lifecycle: JobLifecycle, job_type: str, ended: list) -> int:
    """A job of `job_type` run once by a worker that records its process's end in `ended`: it
    was given up on half a second past its timeout (the alarm's, or the watchdog's once it saw the
    alarm stop), its attempt failed `timeout` saying how long it went on, counted from the
    timeout (within the lease's grace), its process ended (once). Returns those seconds."""
    submitted = lifecycle.submit(tenant="acme", user="ann", type=job_type, payload={})
    runner = JobRunner(lifecycle, lifecycle.registry, clock=SystemClock(), progress_interval_s=0,
                       end_process=lambda: ended.append(True), give_up_after_s=0.5)
    runner.run(lifecycle.queue.drain()[0])
    assert ended == [True], "given up on, its process ended"
    job = lifecycle.store.get(submitted.id, mark_gone=False)
    assert job.status == JobStatus.RETRYING and job.error.code == "timeout", job.error
    assert job.error.message.endswith("its worker process was ended")
    went_on = re.search(r"went on for (\d+) s", job.error.message)
    assert went_on and int(went_on.group(1)) < LEASE_GRACE_S, job.error.message  # ended before the lease lapsed
    return int(went_on.group(1))


def test_a_handler_that_stopped_the_alarm_and_goes_on_has_its_process_ended(store, queue, clock):
    """The watchdog gives up on it as the alarm would: its attempt failed `timeout` and its
    process ended before the attempt's lease lapses."""
    types, ended = JobTypeRegistry(), []

    @types.register("t.own_alarm_forever", Empty, timeout_s=1, max_attempts=2)
    def own_alarm_forever(ctx, payload):
        own_alarm_around(5, lambda: None)
        stop = time.monotonic() + 30
        while time.monotonic() < stop and not ended:  # the test's bound: on Lambda the process ends
            time.sleep(0.05)
        return "finished late"

    assert_given_up_on(JobLifecycle(store, queue, types, clock=clock), "t.own_alarm_forever", ended)


def test_a_handler_that_stops_the_alarm_after_its_timeout_still_has_its_process_ended(store, queue, clock):
    """The alarm interrupts it at its timeout; it catches that and goes on, timing each call with
    SIGALRM itself, which clears the worker's timer: no interrupt comes again, so the watchdog
    gives up on it as the alarm would have, before the attempt's lease lapses and its next
    attempt starts beside it."""
    types, ended = JobTypeRegistry(), []

    @types.register("t.own_alarm_after_timeout", Empty, timeout_s=1, max_attempts=2)
    def own_alarm_after_timeout(ctx, payload):
        try:
            time.sleep(60)  # interrupted at its timeout
        except Exception:  # noqa: BLE001 - what the test is about
            pass
        stop = time.monotonic() + 10
        while time.monotonic() < stop and not ended:  # the test's bound: on Lambda the process ends
            own_alarm_around(5, lambda: time.sleep(0.05))
        return "finished late"

    went_on = assert_given_up_on(JobLifecycle(store, queue, types, clock=clock), "t.own_alarm_after_timeout", ended)
    # counted from the timeout the alarm marked, not from the watchdog's finding that it stopped
    assert went_on >= HANDLER_ALARM_LATE_S + HANDLER_REINTERRUPT_S, went_on


def test_a_handler_that_stops_the_alarm_after_swallowing_a_few_interrupts_has_its_process_ended(
        store, queue, clock, monkeypatch):
    """The watchdog tells the alarm stopped from no interrupt coming since its last look, each
    look against the one before: a handler that swallows a few interrupts (the watchdog seeing
    them come) and then takes SIGALRM for its own calls is given up on all the same, before the
    attempt's lease lapses, not left running because the count moved once."""
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)
    monkeypatch.setattr(timeout, "HANDLER_ALARM_LATE_S", 0.1)
    types, ended = JobTypeRegistry(), []

    @types.register("t.swallows_then_own_alarm", Empty, timeout_s=1, max_attempts=2)
    def swallows_then_own_alarm(ctx, payload):
        swallowed = 0
        while swallowed < 4:  # the interrupts of 0.3 s past its timeout, short of the 0.5 s give-up
            try:
                time.sleep(60)
            except Exception:  # noqa: BLE001 - what the test is about
                swallowed += 1
        stop = time.monotonic() + 10
        while time.monotonic() < stop and not ended:  # the test's bound: on Lambda the process ends
            own_alarm_around(5, lambda: time.sleep(0.05))
        return "finished late"

    assert_given_up_on(JobLifecycle(store, queue, types, clock=clock), "t.swallows_then_own_alarm", ended)


def test_an_alarm_come_late_is_the_timeout_not_one_the_handler_went_on_past(store, queue, clock):
    """The alarm may come late: its signal waits while the handler is inside a call that holds
    it off (here SIGALRM blocked for a moment past the timeout). Within HANDLER_ALARM_LATE_S the
    watchdog takes it for late, not stopped: the late alarm is the attempt's timeout, failed as
    any interrupt at its timeout ("exceeded its timeout of 1 s"), not as a handler that went on
    past a timeout the watchdog had already called."""
    types = JobTypeRegistry()

    @types.register("t.holds_the_signal", Empty, timeout_s=1, max_attempts=2)
    def holds_the_signal(ctx, payload):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            while ctx.remaining_ms() > 0:
                time.sleep(0.01)
            time.sleep(0.2)  # the alarm held off past the timeout
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})  # it comes now
        time.sleep(60)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.holds_the_signal", payload={})
    final = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    assert (final.status, final.error.code, final.error.message) == (
        JobStatus.RETRYING, "timeout", JobTimeoutError.exceeded(1)), final.error


def test_a_claim_that_took_long_leaves_the_handler_only_the_time_its_lease_holds(store, queue, clock, monkeypatch):
    """The lease counts from the claim (its timeout plus LEASE_GRACE_S): a claim whose write took
    long (botocore's retries, every answer lost) leaves the handler only what is left of that
    timeout, so its attempt ends before its lease lapses and the next attempt never runs beside
    it."""
    types, remaining = JobTypeRegistry(), []

    @types.register("t.sleeps", Empty, timeout_s=31, max_attempts=2)
    def sleeps(ctx, payload):
        remaining.append(ctx.remaining_ms())
        time.sleep(60)

    claim_write = store.apply_expected

    def slow_claim(*args, **kwargs):
        written = claim_write(*args, **kwargs)
        clock.advance(30)  # the claim's answer came 30 s after its time was read
        return written

    monkeypatch.setattr(store, "apply_expected", slow_claim)
    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.sleeps", payload={})
    started = time.monotonic()
    job = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    assert time.monotonic() - started < 15, "interrupted once the claim's 31 s were over, not 31 s after it"
    assert remaining and remaining[0] <= 1000, remaining
    assert job.status == JobStatus.RETRYING and job.error.code == "timeout", job.error


def test_a_handler_given_up_on_by_the_watchdog_is_not_given_up_on_again_by_a_late_alarm(monkeypatch):
    """The main thread is held where no signal handler runs (here: SIGALRM blocked in it, as a
    long C call would hold it): the watchdog sees no interrupt and gives up on the handler; when
    the thread moves again, the alarm's pending interrupt must not give up a second time (two
    `process_ended` lines, a second failed write)."""
    import signal

    monkeypatch.setattr(timeout, "HANDLER_ALARM_LATE_S", 0.1)
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)
    given_up: list[float] = []
    watchdog_gave_up = threading.Event()

    def give_up(over_s: float) -> None:
        given_up.append(over_s)
        watchdog_gave_up.set()

    def held():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            # One wait in C, where no signal handler runs, until the watchdog gave up: at about
            # 0.6 s on an idle machine, later on a loaded one (which a fixed sleep would outlast).
            watchdog_gave_up.wait(60)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        return "finished late"

    with pytest.raises(JobTimeoutError):
        timeout.run_with_timeout(held, 0.3, lambda: None, clock=SystemClock(), give_up=give_up,
                                 give_up_after_s=0.2)
    assert len(given_up) == 1, given_up


def swallow_every_interrupt(worker_clock: ManualClock, for_s: Optional[float] = None) -> None:
    """Sleep for good (or `for_s` seconds), swallowing every interrupt the timeout sends (a
    retry loop around `except Exception`), each moving the worker's clock on to the next one."""
    stop = None if for_s is None else time.monotonic() + for_s
    while stop is None or time.monotonic() < stop:
        try:
            time.sleep(1)
        except Exception:  # noqa: BLE001 - swallows every timeout
            worker_clock.advance(HANDLER_REINTERRUPT_S)


def run_until_its_process_ends(lifecycle, worker_clock, end_process, seen, field):
    """Submit a `t.swallows` job and run it until the runner ends its process, `seen` getting
    each observed event with its `field`; the job as stored then."""
    submitted = lifecycle.submit(tenant="acme", user="ann", type="t.swallows", payload={})
    runner = JobRunner(lifecycle, lifecycle.registry, clock=worker_clock, progress_interval_s=0,
                       end_process=end_process, observe=lambda event, job, extra: seen.append((event, extra.get(field))))
    with pytest.raises(ProcessEnded):
        runner.run(lifecycle.queue.drain()[0])
    return lifecycle.store.get(submitted.id, mark_gone=False)


@pytest.mark.parametrize(("max_attempts", "status", "logged", "said"), [
    (2, JobStatus.RETRYING, "retried", ("next_attempt", "unsent")),
    (1, JobStatus.FAILED, "failed", ("dead_letter", "owed"))])
def test_a_give_up_whose_next_message_was_not_sent_is_logged_as_such_not_unrecorded(
        store, queue, clock, monkeypatch, end_process_here, max_attempts, status, logged, said):
    """The attempt is written retrying (failed, its last); only its next message (its dead
    letter) did not go, and the message coming back starts that attempt (parks the letter). That
    is recorded, and logged as such: not `process_ended_unrecorded`, which tells an operator the
    attempt was left to its lease."""
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)
    worker_clock, types, seen = ManualClock(), JobTypeRegistry(), []

    @types.register("t.swallows", Empty, timeout_s=1, max_attempts=max_attempts)
    def swallows(ctx, payload):
        queue.fail_sends = True  # the queues stop answering while the handler runs
        swallow_every_interrupt(worker_clock)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    after = run_until_its_process_ends(lifecycle, worker_clock, end_process_here(), seen, said[0])
    assert after.status == status
    events = [event for event, _ in seen]
    assert (logged, said[1]) in seen and "process_ended_unrecorded" not in events, seen


def test_a_give_up_whose_write_the_store_did_not_take_is_logged_unrecorded(
        store, queue, clock, monkeypatch, end_process_here):
    """operations.md: jobs_process_ended_unrecorded, a handler that would not stop whose timeout
    was not written: the give-up's write failed, so the process ends all the same, the attempt
    left to its lease (the reconciler ends it `worker_lost`), and the line says why."""
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)
    worker_clock, types, seen = ManualClock(), JobTypeRegistry(), []

    @types.register("t.swallows", Empty, timeout_s=1, max_attempts=2)
    def swallows(ctx, payload):
        swallow_every_interrupt(worker_clock)

    def not_answered(*args, **kwargs):
        raise StoreUnavailableError("the jobs table did not answer")

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    monkeypatch.setattr(lifecycle, "fail_attempt", not_answered)
    after = run_until_its_process_ends(lifecycle, worker_clock, end_process_here(), seen, "reason")
    assert after.status == JobStatus.RUNNING
    unrecorded = [reason for event, reason in seen if event == "process_ended_unrecorded"]
    assert len(unrecorded) == 1 and "the jobs table did not answer" in unrecorded[0], seen


def test_a_handler_that_finishes_in_time_is_never_timed_out_or_given_up_on_afterwards(monkeypatch):
    """The watchdog learns the handler returned: past the timeout it neither fails the attempt's
    later writes (`on_timeout`) nor ends the process of a worker gone on to other jobs."""
    monkeypatch.setattr(timeout, "HANDLER_ALARM_LATE_S", 0.1)
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)
    timed_out: list[bool] = []
    given_up: list[float] = []
    assert timeout.run_with_timeout(lambda: "done", 0.2, lambda: timed_out.append(True), clock=SystemClock(),
                                    give_up=given_up.append, give_up_after_s=0.1) == "done"
    time.sleep(0.8)
    assert timed_out == [] and given_up == []


def test_a_run_leaves_the_alarm_handler_it_found():
    """The handler's alarm is the run's alone: after it, SIGALRM goes where it went before, not
    to a finished run's interrupt (which would time out whatever runs when one comes)."""
    import signal

    before = signal.getsignal(signal.SIGALRM)
    assert timeout.run_with_timeout(lambda: "done", 5, lambda: None, clock=SystemClock()) == "done"
    assert signal.getsignal(signal.SIGALRM) is before


def test_an_alarm_that_comes_as_the_handler_returns_leaves_no_alarm_behind(monkeypatch):
    """The handler returned in time, and its alarm comes while the run stops it (due between the
    return and the timer's stop): the run answers what the handler returned, and leaves no
    timer running and SIGALRM where it went before. Raised there, the interrupt cut the run's
    clean-up short: the attempt failed `timeout` though its handler had returned, and the
    timer went on interrupting whatever the worker ran next (the outcome's write, the
    batch-mates' handlers) into the run's interrupt, left in place, until it gave up on a
    handler long returned and ended the process."""
    before = signal.getsignal(signal.SIGALRM)
    returned: list[bool] = []

    class AlarmAsTheRunEnds(threading.Event):
        def set(self) -> None:
            if returned and threading.current_thread() is threading.main_thread() and len(returned) == 1:
                returned.append(True)
                signal.raise_signal(signal.SIGALRM)  # the alarm's moment: as the run marks the handler done
            super().set()

    monkeypatch.setattr(timeout.threading, "Event", AlarmAsTheRunEnds)
    try:
        outcome: Any = timeout.run_with_timeout(lambda: returned.append(True) or "done", 5, lambda: None,
                                                clock=SystemClock())
    except JobTimeoutError as exc:
        outcome = exc
    finally:
        left = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
    assert len(returned) == 2, "the alarm came as the run ended"
    assert outcome == "done"
    assert left == (before, (0.0, 0.0))


def test_an_alarm_that_comes_inside_on_timeout_lets_it_finish():
    """The next alarm may come while `on_timeout` runs (the first one came late, after a long C
    call): it interrupts nothing there. Raised inside the hook, it cut the hook short, and no
    later alarm called it again (the attempt's time was already out)."""
    hooked: list[str] = []

    def on_timeout() -> None:
        hooked.append("started")
        signal.raise_signal(signal.SIGALRM)  # the next alarm, as the hook runs
        hooked.append("finished")

    with pytest.raises(JobTimeoutError):
        timeout.run_with_timeout(lambda: time.sleep(5), 0.2, on_timeout, clock=SystemClock())
    assert hooked == ["started", "finished"]


def test_a_handler_whose_next_alarm_came_as_its_attempt_expired_still_has_its_writes_refused(
        store, queue, clock, monkeypatch):
    """The attempt's expiry (`ctx.expire`, the runner's `on_timeout`) is not cut short by an alarm
    that comes inside it: a handler that catches its timeout and goes on reporting is refused
    (JobTimeoutError), instead of writing progress on an attempt that has timed out."""
    from chalicelib.domain.errors import JobTimeoutError as Timeout
    from chalicelib.worker.context import JobContext

    expire = JobContext.expire

    def expire_meeting_the_next_alarm(ctx: JobContext) -> None:
        signal.raise_signal(signal.SIGALRM)
        expire(ctx)

    monkeypatch.setattr(JobContext, "expire", expire_meeting_the_next_alarm)
    types, refused = JobTypeRegistry(), []

    @types.register("t.reports_past_its_timeout", Empty, timeout_s=1, max_attempts=1)
    def reports_past_its_timeout(ctx, payload):
        try:
            time.sleep(5)
        except Timeout:
            pass
        try:
            ctx.progress(50, message="after the timeout", force=True)
        except Timeout:
            refused.append(True)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.reports_past_its_timeout", payload={})
    job = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    assert refused == [True]
    assert (job.status, job.error.code, job.progress.percent) == (JobStatus.FAILED, "timeout", 0)


def test_a_handler_run_off_the_main_thread_has_its_later_writes_stopped_at_its_timeout():
    """Off the main thread no signal can interrupt it: it is abandoned at its timeout, and
    `on_timeout` is what keeps its later writes off the finished attempt."""
    timed_out: list[bool] = []
    raised: list[BaseException] = []

    def run() -> None:
        try:
            timeout.run_with_timeout(lambda: time.sleep(1), 0.1, lambda: timed_out.append(True), clock=SystemClock())
        except JobTimeoutError as exc:
            raised.append(exc)

    off_the_main_thread(run)
    assert timed_out == [True] and len(raised) == 1


@pytest.mark.parametrize("error", [ValueError("the handler broke"), SystemExit("the handler broke")],
                         ids=["exception", "base_exception"])
def test_a_handler_run_off_the_main_thread_that_fails_in_time_raises_its_error(error):
    """Its error is the caller's, as on the main thread: not a run that returned nothing (which
    would complete the job with None), a BaseException too (a library's sys.exit)."""
    outcome: list[object] = []

    def broken():
        raise error

    def run() -> None:
        try:
            outcome.append(timeout.run_with_timeout(broken, 5, lambda: None, clock=SystemClock()))
        except BaseException as exc:  # noqa: BLE001 - what the test is about
            outcome.append(exc)

    off_the_main_thread(run)
    assert outcome == [error]


def test_a_handler_abandoned_off_the_main_thread_keeps_no_process_from_ending():
    """Off the main thread the handler runs in a thread of its own, abandoned at its timeout: a
    daemon thread, so that one that never returns does not keep the worker's process (a local
    worker told to stop, a test run) from ending."""
    release, daemon, timed_out = threading.Event(), [], []

    def hangs():
        daemon.append(threading.current_thread().daemon)
        release.wait(5)

    def run() -> None:
        try:
            timeout.run_with_timeout(hangs, 0.1, lambda: None, clock=SystemClock())
        except JobTimeoutError:
            timed_out.append(True)

    try:
        off_the_main_thread(run)
    finally:
        release.set()
    assert (daemon, timed_out) == ([True], [True])


def run_given_up_on(lifecycle: JobLifecycle, job_type: str, worker_clock: ManualClock, interval_s: float,
                    end_process) -> Any:
    """A job of `job_type` run once by a worker on `worker_clock` whose progress window is
    `interval_s`, until its process is ended (the give-up, `end_process`): the job as its
    record then reads."""
    submitted = lifecycle.submit(tenant="acme", user="ann", type=job_type, payload={})
    runner = JobRunner(lifecycle, lifecycle.registry, clock=worker_clock, progress_interval_s=interval_s,
                       end_process=end_process)
    with pytest.raises(ProcessEnded):
        runner.run(lifecycle.queue.drain()[0])
    return lifecycle.store.get(submitted.id, mark_gone=False)


def test_a_handler_given_up_on_keeps_the_report_its_progress_window_held(
        store, queue, clock, monkeypatch, end_process_here):
    """docs/jobs.md: a report held in the window is written when it ends, and always before the
    attempt finishes. A deployment's window (ProgressMinIntervalSeconds, up to 300 s) may end
    after the give-up, HANDLER_GIVE_UP_S past the timeout; the process then ends, its timer
    with it: the give-up's `timeout` write carries the report, as any outcome's does."""
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)
    worker_clock, types = ManualClock(), JobTypeRegistry()

    @types.register("t.swallows", Empty, timeout_s=1, max_attempts=2)
    def swallows(ctx, payload):
        ctx.progress(40, step="rows", message="row 400 of 1000", details={"row": 400})  # held: in the window
        swallow_every_interrupt(worker_clock)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    job = run_given_up_on(lifecycle, "t.swallows", worker_clock, interval_s=30, end_process=end_process_here())
    assert job.status == JobStatus.RETRYING and job.error.code == "timeout", job.error
    assert (job.progress.percent, job.progress.step, job.progress.message, job.progress.details) == \
        (40, "rows", "row 400 of 1000", {"row": 400}), job.progress
    assert worker_clock.armed == 0, "the window's timer is stopped: the report is written once"


def test_a_handler_given_up_on_inside_a_progress_write_keeps_that_report(
        store, queue, clock, monkeypatch, end_process_here):
    """The alarm gives up on the handler where it is: here inside a forced progress write that
    never returns (a store call that swallows the interrupts), which holds the reporter's lock.
    The give-up's write neither waits for that lock (the process would end with nothing written,
    the attempt left to its lease) nor loses the report the cut write carried."""
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)
    worker_clock, types = ManualClock(), JobTypeRegistry()

    def never_returns(*args, **kwargs):
        swallow_every_interrupt(worker_clock)

    @types.register("t.stuck_write", Empty, timeout_s=1, max_attempts=2)
    def stuck_write(ctx, payload):
        monkeypatch.setattr(store, "record_progress", never_returns)
        ctx.progress(70, step="upload", message="sending the report", force=True)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    job = run_given_up_on(lifecycle, "t.stuck_write", worker_clock, interval_s=2, end_process=end_process_here())
    # a give-up's write that waited for the lock would have been abandoned, the job left running
    assert job.status == JobStatus.RETRYING and job.error.code == "timeout", (job.status, job.error)
    assert (job.progress.percent, job.progress.step, job.progress.message) == \
        (70, "upload", "sending the report"), job.progress


def test_a_job_failed_by_its_handler_before_its_timeout_fails_as_it_said_not_timeout(store, queue, clock):
    """docs/jobs.md: fail_job fails the job once (no retry) with its code and message, even if the
    handler catches the error or raises another. A clean-up that then ran past the timeout made
    it a `timeout`, retried: the attempts the handler had ruled out ran on input it had refused."""
    types = JobTypeRegistry()

    @types.register("t.fails_then_hangs", Empty, timeout_s=1, max_attempts=3)
    def fails_then_hangs(ctx, payload):
        try:
            fail_job(ctx, "E_NOT_CSV", "the file is not a CSV", progress_percent=40)
        finally:
            time.sleep(3)  # a clean-up that hangs past the timeout

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.fails_then_hangs", payload={})
    job = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    assert (job.status, job.error.code, job.error.message) == \
        (JobStatus.FAILED, "E_NOT_CSV", "the file is not a CSV"), (job.status, job.error)
    assert (job.progress.percent, job.progress.message) == (40, "the file is not a CSV")
    assert queue.drain() == [], "no attempt after it"


def failed_then_given_up_on(store, queue, clock, end_process):
    """The job of a handler that calls fail_job, then swallows every interrupt in its clean-up
    until the give-up ends its process: the job as the give-up wrote it."""
    worker_clock, types = ManualClock(), JobTypeRegistry()

    @types.register("t.fails_then_swallows", Empty, timeout_s=1, max_attempts=3)
    def fails_then_swallows(ctx, payload):
        try:
            fail_job(ctx, "E_NOT_CSV", "the file is not a CSV")
        finally:
            swallow_every_interrupt(worker_clock)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    return run_given_up_on(lifecycle, "t.fails_then_swallows", worker_clock, interval_s=2, end_process=end_process)


def test_a_job_failed_by_its_handler_then_given_up_on_fails_as_it_said(
        store, queue, clock, monkeypatch, end_process_here):
    """The same when the clean-up swallows every interrupt until the give-up ends its process."""
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)
    job = failed_then_given_up_on(store, queue, clock, end_process_here())
    assert (job.status, job.error.code, job.error.message) == \
        (JobStatus.FAILED, "E_NOT_CSV", "the file is not a CSV"), (job.status, job.error)
    assert [m.attempt for m in queue.drain() if m.job_id == job.id] == [], "no attempt after it"


def test_a_give_up_the_watchdog_makes_when_the_alarm_comes_late_fails_as_the_handler_said(
        store, queue, clock, monkeypatch, end_process_here):
    """On a busy machine the alarm may come more than HANDLER_ALARM_LATE_S late: the watchdog
    then gives up on the handler from its own thread, which ends the process as the alarm's
    give-up does, with the failure the handler recorded."""
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)
    monkeypatch.setattr(timeout, "HANDLER_ALARM_LATE_S", -0.1)  # every look finds the alarm late
    job = failed_then_given_up_on(store, queue, clock, end_process_here())
    assert (job.status, job.error.code) == (JobStatus.FAILED, "E_NOT_CSV"), (job.status, job.error)
    assert queue.drain() == [], "no attempt after it"


@pytest.mark.timeout(60)
def test_an_interrupt_that_comes_while_the_give_up_writes_does_not_stop_the_process_ending(
        store, queue, clock, monkeypatch, end_process_here):
    """The alarm's give-up waits, on the main thread, for its `timeout` write (up to
    HANDLER_GIVE_UP_WRITE_S); the alarm goes on meanwhile, and a write taking longer than one of
    its periods (a slow or throttled table) met the next interrupt there. Raised out of the
    give-up, that interrupt never let the process end: the handler swallowed it like the others,
    the give-up, made once, was spent, and the worker ran on past its lease beside the next
    attempt."""
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)
    worker_clock, types = ManualClock(), JobTypeRegistry()

    @types.register("t.swallows", Empty, timeout_s=1, max_attempts=2)
    def swallows(ctx, payload):
        swallow_every_interrupt(worker_clock, for_s=20)  # the test's bound: on Lambda the process ends
        return "finished late"

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    fail_attempt = lifecycle.fail_attempt

    def slow_fail_attempt(*args, **kwargs):
        if threading.current_thread().name == "give-up":
            # the next interrupt comes while the give-up's write is on its way
            signal.pthread_kill(threading.main_thread().ident, signal.SIGALRM)
            time.sleep(0.5)
        return fail_attempt(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "fail_attempt", slow_fail_attempt)
    job = run_given_up_on(lifecycle, "t.swallows", worker_clock, interval_s=2, end_process=end_process_here())
    assert job.status == JobStatus.RETRYING and job.error.code == "timeout", (job.status, job.error)


@pytest.mark.parametrize("learns", ["poll", "report"])
def test_a_handler_that_saw_the_cancel_then_ran_past_its_timeout_ends_canceled_on_request(
        store, queue, clock, learns):
    """docs/jobs.md: once the handler has seen the cancel request the job ends `canceled` however
    it stops. Its clean-up then running past the timeout is no `timeout` of a canceled job: the
    status and the error (job, run record, event) say one thing, canceled on request."""
    types = JobTypeRegistry()

    @types.register("t.cancel_seen_then_hangs", Empty, timeout_s=1, max_attempts=3)
    def cancel_seen_then_hangs(ctx, payload):
        ctx.progress(30, step="rows", force=True)
        lifecycle.cancel("acme", ctx.job_id)
        try:
            if learns == "poll":
                ctx.check_cancelled(fresh=True)
            else:
                ctx.progress(40, step="rows", force=True)
        finally:
            time.sleep(3)  # a clean-up that hangs past the timeout

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.cancel_seen_then_hangs", payload={})
    job = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0).run(queue.drain()[0])
    assert (job.status, job.error.code, job.error.message) == \
        (JobStatus.CANCELED, "canceled", "canceled on request"), (job.status, job.error)
    (run,) = store.runs(job.id)
    assert (run.status, run.error.code) == (JobStatus.CANCELED, "canceled")
    assert queue.drain() == [], "no attempt after it"


def test_a_handler_that_saw_the_cancel_then_was_given_up_on_ends_canceled_on_request(
        store, queue, clock, monkeypatch, end_process_here):
    """The same when its clean-up swallows every interrupt until the give-up ends its process."""
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)
    worker_clock, types = ManualClock(), JobTypeRegistry()

    @types.register("t.cancel_seen_then_swallows", Empty, timeout_s=1, max_attempts=3)
    def cancel_seen_then_swallows(ctx, payload):
        lifecycle.cancel("acme", ctx.job_id)
        assert ctx.cancelled(fresh=True)
        swallow_every_interrupt(worker_clock)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    job = run_given_up_on(lifecycle, "t.cancel_seen_then_swallows", worker_clock, interval_s=2,
                          end_process=end_process_here())
    assert (job.status, job.error.code) == (JobStatus.CANCELED, "canceled"), (job.status, job.error)
    assert [m.attempt for m in queue.drain() if m.job_id == job.id] == [], "no attempt after it"


def test_a_job_completed_by_its_handler_then_past_its_timeout_completes_with_that_result(store, queue, clock):
    """docs/jobs.md: complete_job's result stands whatever the handler does next. A clean-up that
    then hung past the timeout made it a `timeout`, retried: the work the handler had finished,
    its side effects done, ran again. The job, its run record and its log line say completed,
    the line warning of the timeout."""
    types, observed = JobTypeRegistry(), []

    @types.register("t.completes_then_hangs", Empty, timeout_s=1, max_attempts=3)
    def completes_then_hangs(ctx, payload):
        try:
            complete_job(ctx, {"rows": 3}, "three rows")
        finally:
            time.sleep(3)  # a clean-up that hangs past the timeout

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    lifecycle.submit(tenant="acme", user="ann", type="t.completes_then_hangs", payload={})
    runner = JobRunner(lifecycle, types, clock=SystemClock(), progress_interval_s=0,
                       observe=lambda event, job, extra: observed.append((event, extra)))
    job = runner.run(queue.drain()[0])
    assert (job.status, job.result, job.progress.message, job.error) == \
        (JobStatus.COMPLETED, {"rows": 3}, "three rows", None), job.error
    (run,) = store.runs(job.id)
    assert (run.status, run.error) == (JobStatus.COMPLETED, None)
    assert queue.drain() == [], "no attempt after it"
    (extra,) = [extra for event, extra in observed if event == "completed"]
    assert extra["warning"] == (f"the handler ran past its timeout ({JobTimeoutError.exceeded(1)}) after "
                                "complete_job: the job completed with the result it recorded")


def completed_then_given_up_on(store, queue, clock, end_process, result: Any = None):
    """The job of a handler that calls complete_job (with `result`, else {"rows": 3}), then
    swallows every interrupt in its clean-up until the give-up ends its process: the job as the
    give-up wrote it."""
    worker_clock, types = ManualClock(), JobTypeRegistry()

    @types.register("t.completes_then_swallows", Empty, timeout_s=1, max_attempts=3)
    def completes_then_swallows(ctx, payload):
        try:
            complete_job(ctx, {"rows": 3} if result is None else result, "three rows")
        finally:
            swallow_every_interrupt(worker_clock)

    lifecycle = JobLifecycle(store, queue, types, clock=clock)
    return run_given_up_on(lifecycle, "t.completes_then_swallows", worker_clock, interval_s=2,
                           end_process=end_process)


@pytest.mark.parametrize("alarm_late", [False, True], ids=["alarm", "watchdog"])
def test_a_job_completed_by_its_handler_then_given_up_on_completes_with_that_result(
        store, queue, clock, monkeypatch, end_process_here, alarm_late):
    """The same when the clean-up swallows every interrupt until the give-up ends its process
    (from the alarm, or from the watchdog when the alarm comes late)."""
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)
    if alarm_late:
        monkeypatch.setattr(timeout, "HANDLER_ALARM_LATE_S", -0.1)  # every look finds the alarm late
    job = completed_then_given_up_on(store, queue, clock, end_process_here())
    assert (job.status, job.result, job.progress.message, job.error) == \
        (JobStatus.COMPLETED, {"rows": 3}, "three rows", None), (job.status, job.error)
    (run,) = store.runs(job.id)
    assert (run.status, run.error) == (JobStatus.COMPLETED, None)
    assert [m.attempt for m in queue.drain() if m.job_id == job.id] == [], "no attempt after it"


def test_a_completed_result_no_job_can_hold_given_up_on_fails_for_good_as_on_return(
        store, queue, clock, monkeypatch, end_process_here):
    """A result complete_job recorded that no store could write fails the job
    `result_not_serializable`, not retried, as it does when the handler returns."""
    monkeypatch.setattr(timeout, "HANDLER_REINTERRUPT_S", 0.1)
    job = completed_then_given_up_on(store, queue, clock, end_process_here(), result={"at": {1, 2}})
    assert (job.status, job.error.code) == (JobStatus.FAILED, "result_not_serializable"), (job.status, job.error)
    assert [m.attempt for m in queue.drain() if m.job_id == job.id] == []
