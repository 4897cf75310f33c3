"""Every AWS request of a job's life, one at a time, the last its process sends: nothing stuck,
lost, run twice or counted twice when a function's process dies in the middle of its work
(killed, out of memory, its Lambda timeout).

The lives are the fault walk's (tests/faults/test_fault_walk.py), each function run through the
app's handler map on moto. Each case runs a life again with its process dying at one request
(counted as the walk counts them):

- `dies_before`: the process dies as it is about to send it (nothing of it applied);
- `dies_after`: it is applied, and the process dies before its answer is used (a read is left
  out: applied or not, it changed nothing).

A death is no error the function sees: no `except` or `finally` of it sends anything more (every
request after it, of that invocation, is refused unsent), and nothing of the process is left for
the next invocation, which a new process (a container built afresh) runs. The triggers see a
failed invocation: its SQS messages come back after their visibility timeout, its stream batch is
delivered again, the reconciler's schedule runs it again, and a user's call answered 502 is sent
again (the same idempotency key, the same cancel). Then the walk's checks, as they are."""
from __future__ import annotations

import json
from collections import Counter
from functools import partial
from types import SimpleNamespace
from typing import Any, Callable, Optional

import pytest

from chalicelib import composition
from tests.faults.test_fault_walk import LIVES, REQUESTS, Faults, Life, walk_cases
from tests.functional.conftest import auth

KINDS = ("dies_before", "dies_after")


class ProcessDeath(BaseException):
    """The process ended under the function: no handler of its code may take it for an error."""


class InvocationDied(Exception):
    """What a trigger sees of an invocation whose process died: it failed."""


class Deaths(Faults):
    """The walk's before-call hook, its call at `target` the process's last: the process dies
    before it is sent or once it is applied, and every later call of that invocation is refused
    unsent (a dead process sends nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.dead = False

    def _before(self, service: str, client: Any, model: Any, params: Any, context: Any, **_: Any) -> None:
        if self.armed and self.dead:
            raise ProcessDeath(f"{service}.{model.name} not sent: the process is dead")
        if not self._targeted(service, model):
            return None
        if self.kind == "dies_after":  # applied; the process dies before its answer is read
            self._applied(client, model, params, context)
        self.dead = True
        raise ProcessDeath(f"the process died at {service}.{model.name} ({self.kind})")


class CrashLife(Life):
    """A life whose functions' processes may die: each invocation through `_invocation`."""

    def __init__(self, app: Any, client: Any, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                 deaths: Optional[Deaths] = None) -> None:
        self.died = False
        self.cold_starts = 0
        self.posted_by_the_dead: list[str] = []  # event ids a process that then died POSTed to the ERP
        functions = {name: partial(self._function, function) for name, function in app.handler_map.items()}
        super().__init__(SimpleNamespace(handler_map=functions), SimpleNamespace(http=_Http(self, client.http)),
                         aws, monkeypatch, deaths or Deaths())
        post = self.erp.post

        def post_while_alive(*args: Any, **kwargs: Any) -> Any:
            if self.faults.dead:
                raise ProcessDeath("not POSTed: the process is dead")
            return post(*args, **kwargs)

        self.erp.post = post_while_alive  # type: ignore[method-assign]

    def _invocation(self, call: Callable[[], Any]) -> Any:
        """`call`, one invocation; in a new process (the container built again, made the life's)
        when the last one's died. Raises ProcessDeath when this one's dies."""
        if self.died:
            self.died = False
            self.cold_starts += 1
            composition.use(None)
            self._wire(composition.container())
        posts = len(self.erp.posts)
        try:
            return call()
        except ProcessDeath:
            self.faults.dead = False  # the next invocation's process is alive
            self.died = True
            self.posted_by_the_dead += [json.loads(body)["event_id"] for _, body, _ in self.erp.posts[posts:]]
            raise

    def _function(self, function: Callable[..., Any], event: Any, context: Any) -> Any:
        try:
            return self._invocation(lambda: function(event, context))
        except ProcessDeath as death:
            raise InvocationDied(str(death)) from None

    def api(self, call: Callable[[], Any]) -> Any:
        """The API's answer to a call, 502 (API Gateway's, the function having died) if its
        process died."""
        try:
            return self._invocation(call)
        except ProcessDeath:
            body = {"message": "Internal server error"}
            return SimpleNamespace(status_code=502, body=json.dumps(body).encode(), json_body=body, headers={})


class _Http:
    """The test client's requests, each an invocation of the API's function."""

    def __init__(self, life: CrashLife, http: Any) -> None:
        self._life, self._http = life, http

    def __getattr__(self, method: str) -> Callable[..., Any]:
        send = getattr(self._http, method)
        return lambda *args, **kwargs: self._life.api(lambda: send(*args, **kwargs))


def _worker_lost() -> set[tuple[str, int, str]]:
    """The cases of the failing life whose worker dies with attempt 1 claimed and its outcome not
    written: from its claim applied to its `failed` write unsent."""
    requests = REQUESTS["fails"]
    claim = requests.index("dynamodb.UpdateItem")
    failed = requests.index("dynamodb.TransactWriteItems", claim)
    return {(("fails", claim, "dies_after")), ("fails", failed, "dies_before"),
            *(("fails", index, kind) for index in range(claim + 1, failed) for kind in KINDS)}


# docs/reliability.md, "a worker process dies mid-job": "the attempt's lease ends (timeout +
# 30 s); the reconciler's next pass records `worker_lost` and retries or fails the job by the
# usual rules": the job fails for good at attempt 2, whose letter the DLQ holds.
WORKER_LOST = _worker_lost()
# docs/events.md, the ERP bridge: "The ERP gets an event more than once only where the bridge
# cannot know a POST arrived, one copy more each time: the bridge's process died [...] after the
# ERP took the POST and before the batch's records were closed". The bridge's one BatchWriteItem
# on a job's path closes them.
ERP_POSTED_TWICE = {(name, index, "dies_before") for name, requests in REQUESTS.items()
                    for index, request in enumerate(requests) if request == "dynamodb.BatchWriteItem"}


@pytest.fixture
def life(app, client, aws, monkeypatch) -> CrashLife:
    return CrashLife(app, client, aws, monkeypatch)


@pytest.mark.parametrize("name, index, kind", walk_cases(KINDS, not_for_reads="dies_after"))
def test_a_life_whose_process_dies_at_one_request_ends_as_it_should(life, name, index, kind):
    body, ends = LIVES[name]
    life.faults.target, life.faults.kind = index, kind
    life.live(body)
    assert len(life.faults.calls) > index + 1, "the process died at the case's request, and a new one went on"
    assert life.cold_starts, "the invocation after the death ran in a new process"
    if (name, index, kind) in ERP_POSTED_TWICE:
        posted = Counter(json.loads(body)["event_id"] for _, body, _ in life.erp.posts)
        assert life.posted_by_the_dead and all(posted[e] == 2 for e in life.posted_by_the_dead), posted
        for event_id in life.posted_by_the_dead:  # the documented copy; the rest as ever
            life.erp.posts.remove(next(p for p in life.erp.posts if json.loads(p[1])["event_id"] == event_id))
    if (name, index, kind) in WORKER_LOST:
        runs = life.client.http.get(f"/jobs/{life.job_id}/runs", headers=auth()).json_body["runs"]
        assert [(r["attempt"], r["status"], r["error"]["code"]) for r in runs][:1] == [(1, "failed", "worker_lost")], runs
        life.check(ends, failed_attempt=2)
        return
    life.check(ends)
