"""A process that dies again while recovering from a death: the crash walk's lives
(tests/faults/test_crash_walk.py), each with its process dying once, then dying a second time at
one request of the recovery that death sets off. Nothing stuck, lost, run or counted twice: the
walk's checks, but for the exceptions named below.

Walking every pair of deaths (three hundred first deaths, each followed by every later request)
is some tens of thousands of lives. Most first deaths lead into the same few recoveries, though:
what takes a dead invocation's work over is its trigger's retry of the same function (the
message delivered again, the stream batch delivered again, the API call sent again), or the
reconciler's pass. So the walk takes one first death into each distinct recovery path, and kills
every request of that recovery in turn: `dies_before` each, `dies_after` each but a read (it
changed nothing), a read after a read only once (dying before the second is dying before the
first: the one between changed nothing). The recoveries:

- the worker dying with attempt 1 claimed (`fails-4`, in WORKER_LOST): the attempt's message,
  back after the queue's visibility timeout, finds the lease ended and records `worker_lost`
  itself, writing the job `retrying` and sending attempt 2's message (attempt 2 itself is
  walked in the next life);
- the same death with each reconciler pass a lease (timeout and LEASE_GRACE_S) after its round's
  workers (`-pass_late`), as on AWS, where a pass runs every minute and the message comes back
  after 90: the pass records `worker_lost` and sends attempt 2's message, and the next batch
  holds that message and the first one, come back. Walked: the pass from its read of the job (its
  letters' and due index's reads are the `fails-23` recovery's), and that batch: attempt 2 runs,
  fails for good and parks its letter;
- the worker dying after the `failed` write, its letter owed (`fails-5`): the message delivered
  again parks it and clears the mark;
- the worker dying after the `retrying` write, attempt 2's message unsent (`retried-6`): the
  message delivered again starts attempt 2;
- the worker dying after the completion write (`completes-6`): the message delivered again finds
  the job ended and is acknowledged;
- the stream function dying after PutEvents, its batch not counted (`completes-7`): the batch
  delivered again publishes the events again (the same ids) and counts them;
- the ERP bridge dying after its POSTs, the records open (`completes-10`, in ERP_POSTED_TWICE):
  the message back after its visibility timeout finds the records' lease lapsed and POSTs again;
- the cache invalidation dying after its write (`completes-11`): the event delivered again;
- the reconciler dying mid-pass, its letters hidden and not given back (`fails-23`): the next
  pass, whole;
- the API dying after the submission's write (`completes-1`): the call sent again under its
  Idempotency-Key, and the pass that sends the message the dead call never sent (from its read
  of the job, as above);
- the API dying after the cancel request's write (`canceled-6`): the cancel sent again.

Left out: first deaths whose recovery is one of these over again (a death one request earlier
or later in the same invocation, the other lives' copies of the same invocation) and deaths
whose recovery is a function's ordinary next invocation, with nothing left to take over.

Each recovery's requests are listed (RECOVERIES) and checked against the life with its first
death alone, as the walk's REQUESTS are: a change that adds, drops or moves one shows there
first, and its new request is walked too."""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable, NamedTuple, Optional

import pytest

from chalicelib.defaults import LEASE_GRACE_S
from tests.faults.test_crash_walk import KINDS, WORKER_LOST, CrashLife, Deaths, ProcessDeath
from tests.faults.test_fault_walk import LIVES, READS
from tests.functional.conftest import auth


class SecondDeaths(Deaths):
    """The crash walk's deaths, the process dying again at `then` (a call counted as the walk
    counts them) once it died at `target`; each call noted with the invocation that sent it."""

    def __init__(self) -> None:
        super().__init__()
        self.then: Optional[tuple[int, str]] = None
        self.died_at: list[tuple[int, str]] = []  # each death's call and kind, in order
        self.invocation: tuple[int, str] = (0, "")  # the invocation sending calls now: its number, its function
        self.senders: list[tuple[int, str]] = []  # each counted call's invocation

    def _targeted(self, service: str, model: Any) -> bool:
        targeted = super()._targeted(service, model)
        if self.armed:
            self.senders.append(self.invocation)
        return targeted

    def _before(self, *args: Any, **kwargs: Any) -> None:
        alive = not self.dead
        try:
            return super()._before(*args, **kwargs)
        except ProcessDeath:
            if alive:  # a death, not a call the dead process was refused
                self.died_at.append((len(self.calls) - 1, self.kind))
                if self.then:
                    (self.target, self.kind), self.then = self.then, None
            raise


class RecoveryLife(CrashLife):
    """A crash life whose calls say which invocation sent them, and each reconciler pass
    `pass_late_s` after its round's other functions."""

    def __init__(self, app: Any, client: Any, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
        self._names = {id(function): name for name, function in app.handler_map.items()}
        self._invocations = 0
        self._next = ""
        self.pass_late_s = 0.0
        self.posted_at_death: list[list[str]] = []  # the events each dead process POSTed, death by death
        super().__init__(app, client, aws, monkeypatch, SecondDeaths())

    def reconcile(self) -> dict[str, Any]:
        self.time.advance(self.pass_late_s)
        return super().reconcile()

    def _invocation(self, call: Callable[[], Any]) -> Any:
        outer = self.faults.invocation  # the canceled life's handler calls the API: an invocation of its own
        self._invocations += 1
        self.faults.invocation = (self._invocations, self._next)
        posts = len(self.erp.posts)
        try:
            return super()._invocation(call)
        except ProcessDeath:
            self.posted_at_death.append([json.loads(body)["event_id"] for _, body, _ in self.erp.posts[posts:]])
            raise
        finally:
            self.faults.invocation = outer

    def _function(self, function: Callable[..., Any], event: Any, context: Any) -> Any:
        self._next = self._names[id(function)]
        return super()._function(function, event, context)

    def api(self, call: Callable[[], Any]) -> Any:
        self._next = "api"
        return super().api(call)

    def recovery(self, invocations: tuple[tuple[str, int, Optional[str]], ...]) -> dict[int, tuple[str, ...]]:
        """The requests, after the first death, of the `invocations` (function, n, start): the
        n-th invocation of the function after the death that sent a request, from its first
        request `start` on (all of it for None); by the index each one's run starts at."""
        death = self.faults.died_at[0][0]
        after: dict[str, list[int]] = {}
        for number, function in self.faults.senders[death + 1:]:
            if number not in after.setdefault(function, []):
                after[function].append(number)
        runs: dict[int, tuple[str, ...]] = {}
        for function, n, start in invocations:
            number = after[function][n - 1]
            sent = [i for i in range(death + 1, len(self.faults.calls)) if self.faults.senders[i][0] == number]
            if start is not None:
                sent = sent[[self.faults.calls[i] for i in sent].index(start):]
            runs[sent[0]] = tuple(self.faults.calls[i] for i in sent)
        return runs


class First(NamedTuple):
    """A first death: the life, its request (the index in the life's calls) and how the process
    dies there; `pass_late_s`: each reconciler pass that long after its round's other functions."""

    life: str
    index: int
    kind: str
    pass_late_s: float = 0.0

    def __str__(self) -> str:
        return f"{self.life}-{self.index}-{self.kind}" + ("-pass_late" if self.pass_late_s else "")


LEASE_S = 600 + LEASE_GRACE_S  # demo.steps' timeout and the grace: a lease
RECEIVES, QUERIES = ("sqs.ReceiveMessage",), ("dynamodb.Query",)
ATTEMPT = ("dynamodb.UpdateItem",) * 2 + ("dynamodb.TransactWriteItems",)  # claimed, a progress report, ended
LETTER = ("sqs.SendMessage", "dynamodb.UpdateItem")  # a dead letter parked, its owed mark cleared

# Each first death's recovery: the invocations that take its work over, (function, n, start) the
# n-th invocation of that function after the death that sent a request, walked from its first
# request `start` (all of it for None); and their requests, by the index each run starts at.
RECOVERIES: dict[First, tuple[tuple[tuple[str, int, Optional[str]], ...], dict[int, tuple[str, ...]]]] = {
    First("fails", 4, "dies_before"): ((("job_worker", 1, None),), {
        27: ("dynamodb.UpdateItem", "dynamodb.TransactWriteItems", "sqs.SendMessage")}),
    First("fails", 4, "dies_before", LEASE_S): ((("reconciler", 1, "dynamodb.BatchGetItem"), ("job_worker", 1, None)), {
        26: ("dynamodb.BatchGetItem", "dynamodb.TransactWriteItems", "sqs.SendMessage", "dynamodb.UpdateItem"),
        30: ("sqs.ChangeMessageVisibilityBatch", "dynamodb.UpdateItem", *ATTEMPT, *LETTER, "dynamodb.UpdateItem")}),
    First("fails", 5, "dies_after"): ((("job_worker", 1, None),), {28: ("dynamodb.UpdateItem", *LETTER)}),
    First("retried", 6, "dies_before"): ((("job_worker", 1, None),), {
        29: (*["dynamodb.UpdateItem"] * 3, "dynamodb.TransactWriteItems")}),
    First("completes", 6, "dies_after"): ((("job_worker", 1, None),), {31: ("dynamodb.UpdateItem",)}),
    First("completes", 7, "dies_after"): ((("event_publisher", 1, None),), {
        30: ("events.PutEvents", "dynamodb.TransactWriteItems")}),
    First("completes", 10, "dies_before"): ((("erp_bridge", 1, None),), {
        31: ("dynamodb.TransactWriteItems", "dynamodb.BatchWriteItem")}),
    First("completes", 11, "dies_after"): ((("cache_invalidation", 1, None),), {
        30: ("dynamodb.UpdateItem", "events.PutEvents")}),
    First("fails", 23, "dies_before"): ((("reconciler", 1, None),), {
        24: (*RECEIVES * 10, "dynamodb.BatchGetItem", "sqs.ChangeMessageVisibilityBatch", *QUERIES * 8,
             "dynamodb.UpdateItem")}),
    First("completes", 1, "dies_after"): ((("api", 1, None), ("reconciler", 2, "dynamodb.BatchGetItem")), {
        2: ("dynamodb.GetItem", "dynamodb.TransactWriteItems", "dynamodb.GetItem"),
        44: ("dynamodb.BatchGetItem", "sqs.GetQueueAttributes", "dynamodb.UpdateItem", "sqs.SendMessage",
             "dynamodb.UpdateItem")}),
    First("canceled", 6, "dies_after"): ((("api", 1, None),), {7: ("dynamodb.GetItem",)}),
}


def _cases() -> list[Any]:
    """A case per request of each recovery and kind: `dies_after` not for a read (applied, it
    changed nothing), nor `dies_before` for a read after a read (the one between changed
    nothing: it is the death before the first of them)."""
    params = []
    for first, (_, runs) in RECOVERIES.items():
        for start, requests in runs.items():
            for index, request in enumerate(requests, start):
                for kind in KINDS:
                    after_a_read = index > start and requests[index - start - 1] in READS
                    if request in READS and (kind == "dies_after" or after_a_read):
                        continue
                    params.append(pytest.param(first, index, kind, id=f"{first}--{index}-{request}-{kind}"))
    return params


def _claimed_again(first: First, claim: int) -> set[tuple[First, int, str]]:
    """The cases of `first` whose process dies again with attempt 2 claimed and its outcome not
    written: from its claim applied (at `claim`) to its `failed` write unsent."""
    failed = claim + ATTEMPT.index("dynamodb.TransactWriteItems")
    return {(first, claim, "dies_after"), (first, failed, "dies_before"),
            *((first, index, kind) for index in range(claim + 1, failed) for kind in KINDS)}


# docs/reliability.md, "a worker process dies mid-job": "the attempt's lease ends (timeout +
# 30 s); the reconciler's next pass records `worker_lost` and retries or fails the job by the
# usual rules": attempt 2 lost as attempt 1 was, demo.steps' third attempt runs and fails for
# good, and the letter the DLQ holds is attempt 3's.
WORKER_LOST_TWICE = _claimed_again(First("fails", 4, "dies_before", LEASE_S), 32)


def _erp_copies(life: RecoveryLife) -> Counter[str]:
    """The ERP's copies of an event more than one, as docs/events.md has them: "The ERP gets an
    event more than once only where the bridge cannot know a POST arrived, one copy more each
    time: the bridge's process died [...] after the ERP took the POST and before the batch's
    records were closed". The bridge's one BatchWriteItem on a job's path closes them."""
    return Counter(event_id for (index, kind), posted in zip(life.faults.died_at, life.posted_at_death)
                   if life.faults.calls[index] == "dynamodb.BatchWriteItem" and kind == "dies_before"
                   for event_id in posted)


def _live(life: RecoveryLife, first: First, then: Optional[tuple[int, str]] = None) -> str:
    """The life, its process dying at `first` and then at `then`; how it should end."""
    life.faults.target, life.faults.kind, life.faults.then = first.index, first.kind, then
    life.pass_late_s = first.pass_late_s
    body, ends = LIVES[first.life]
    life.live(body)
    return ends


def _check(life: RecoveryLife, ends: str, *, lost: int) -> None:
    """The walk's checks, the ERP's documented copies taken out first; the job's first `lost`
    attempts ended `worker_lost`, its letter the next one's."""
    copies = _erp_copies(life)
    posted = Counter(json.loads(body)["event_id"] for _, body, _ in life.erp.posts)
    assert all(posted[e] == 1 + n for e, n in copies.items()), (copies, posted)
    for event_id, n in copies.items():
        for _ in range(n):
            life.erp.posts.remove(next(p for p in life.erp.posts if json.loads(p[1])["event_id"] == event_id))
    runs = life.client.http.get(f"/jobs/{life.job_id}/runs", headers=auth()).json_body["runs"]
    lost_runs = [(r["attempt"], r["error"]["code"]) for r in runs[:lost]]
    assert lost_runs == [(attempt, "worker_lost") for attempt in range(1, lost + 1)], runs
    life.check(ends, failed_attempt=lost + 1)


@pytest.fixture
def life(app, client, aws, monkeypatch) -> RecoveryLife:
    return RecoveryLife(app, client, aws, monkeypatch)


@pytest.mark.parametrize("first", RECOVERIES, ids=str)
def test_each_first_death_is_recovered_by_the_requests_the_walk_kills(life, first):
    """The walk's recoveries are the lives': with the first death alone, the invocations each
    names send the requests listed."""
    ends = _live(life, first)
    _check(life, ends, lost=int(first[:3] in WORKER_LOST))
    invocations, runs = RECOVERIES[first]
    assert life.recovery(invocations) == runs


@pytest.mark.parametrize("first, index, kind", _cases())
def test_a_life_whose_process_dies_again_while_recovering_ends_as_it_should(life, first, index, kind):
    ends = _live(life, first, (index, kind))
    assert [call for call, _ in life.faults.died_at] == [first.index, index], "it died at both; new processes went on"
    _check(life, ends, lost=int(first[:3] in WORKER_LOST) + int((first, index, kind) in WORKER_LOST_TWICE))
