"""A parent lists its children's ids in its own answer (GET /jobs/{id}, a listing page holding
it): 41 bytes each, about 80 KB at MAX_CHILDREN. A spawn was measured against the children a job
may list and the room its record has, never against that answer, so a parent whose payload sat
within the ids' bytes of MAX_ANSWER_BYTES spawned past it, and no GET or listing could return it
again (Lambda's 6 MB). The attempt now counts each child it lists, and a spawn that would take
the answer past the bound is refused before anything is written."""
from __future__ import annotations

import pytest
from pydantic import BaseModel

from chalicelib.adapters.clocks import SystemClock
from chalicelib.adapters.memory import InMemoryJobStore
from chalicelib.adapters.memory_blobs import InMemoryBlobStore
from chalicelib.defaults import MAX_ANSWER_BYTES, SPAWN_ANSWER_ROOM_BYTES
from chalicelib.domain.errors import AnswerFullError
from chalicelib.domain.job import answer_bytes
from chalicelib.domain.registry import JobTypeRegistry
from chalicelib.domain.status import JobStatus
from chalicelib.lifecycle import JobLifecycle
from chalicelib.ports import JobMessage
from chalicelib.worker.runner import JobRunner


class Empty(BaseModel):
    pass


class Wide(BaseModel):
    pad: str = ""
    spawn: int = 0
    result: int = 0
    report: int = 0  # a progress message of this many characters reported before the spawns


@pytest.fixture
def store():
    return InMemoryJobStore(blobs=InMemoryBlobStore())  # a payload near 6 MB goes to S3


@pytest.fixture
def env(store, queue, clock):
    registry = JobTypeRegistry()

    @registry.register("t.leaf", Empty, max_attempts=1)
    def leaf(ctx, payload):
        return "ok"

    @registry.register("t.wide", Wide, max_attempts=3)
    def wide(ctx, payload):
        """Spawns `spawn` leaves, reporting nothing (no write reads the children back) but the
        `report` asked for, and returns a result of `result` characters."""
        if payload.report:
            ctx.progress(10, message="m" * payload.report)
        for _ in range(payload.spawn):
            ctx.spawn("t.leaf", {})
        return "r" * payload.result

    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    return lifecycle, JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0)


def submit_padded(lifecycle, below: int, **payload):
    """A t.wide job whose answer as submitted is `below` bytes under MAX_ANSWER_BYTES."""
    bare = lifecycle.submit(tenant="acme", user="ann", type="t.wide", payload={"pad": "", **payload})
    lifecycle.store._jobs.pop(bare.id)
    lifecycle.queue.drain()
    pad = "p" * (MAX_ANSWER_BYTES - answer_bytes(bare.public()) - below)
    return lifecycle.submit(tenant="acme", user="ann", type="t.wide", payload={"pad": pad, **payload})


def test_a_spawn_that_would_take_its_parents_answer_past_the_bound_is_refused(env, store, queue):
    """Room for about 20 children's ids, 100 spawned: the job fails `answer_full` at the first
    spawn past the room, not retried, its answer within the bound and its error whole (what to
    shrink); every child made is listed and sent, the refused one neither made nor sent."""
    lifecycle, runner = env
    parent = submit_padded(lifecycle, SPAWN_ANSWER_ROOM_BYTES + 20 * 41, spawn=100)
    (message,) = queue.drain()
    final = runner.run(message)
    assert final.status == JobStatus.FAILED and final.attempts == 1, final.error
    assert final.error.code == "answer_full"
    assert "payload" in final.error.message and not final.error.message.endswith("…")
    assert answer_bytes(final.public()) <= MAX_ANSWER_BYTES
    assert 10 < len(final.children) < 30
    made = {job.id for job in store._jobs.values() if job.parent_id == parent.id}
    assert made == set(final.children)
    assert {m.job_id for m, _, _ in queue.sent} == made


def test_a_result_is_measured_with_the_children_spawned_since_the_last_write(env, queue):
    """No progress write read the attempt's 100 children back: the result was measured beside
    the job as claimed, without their 4 KB of ids, and the job completed past the bound."""
    lifecycle, runner = env
    submit_padded(lifecycle, 12_000, spawn=100, result=10_000)
    (message,) = queue.drain()
    final = runner.run(message)
    assert final.status == JobStatus.FAILED and final.error.code == "result_too_large", final.error
    assert "its 100 children's ids" in final.error.message
    assert len(final.children) == 100 and answer_bytes(final.public()) <= MAX_ANSWER_BYTES


def test_a_spawn_is_measured_with_the_parent_as_given_by_default(env, store, queue):
    """JobLifecycle.spawn called without the attempt's measure measures the parent whole."""
    lifecycle, _ = env
    parent = submit_padded(lifecycle, SPAWN_ANSWER_ROOM_BYTES)
    queue.drain()
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    with pytest.raises(AnswerFullError, match="pass large input by reference") as refused:
        lifecycle.spawn(running, 1, type="t.leaf", payload={})
    assert refused.value.details["limit"] == MAX_ANSWER_BYTES - SPAWN_ANSWER_ROOM_BYTES
    assert store.get(parent.id, mark_gone=False).children == []
    assert [job.id for job in store._jobs.values()] == [parent.id] and queue.sent == []


def test_a_refused_spawn_names_the_bytes_its_parents_children_would_take_with_it(env, store, queue):
    """The refusal says what the parent's answer holds, so its author knows what to shrink: the
    children's ids counted with the refused child's, the one that would take it past the bound."""
    from chalicelib.domain.job import child_job_id, listed_bytes
    from chalicelib.domain.numbers import shown_number

    lifecycle, _ = env
    probe = submit_padded(lifecycle, SPAWN_ANSWER_ROOM_BYTES)
    queue.drain()
    grows = answer_bytes(lifecycle.claim(JobMessage(probe.id, 1)).job.public()) - answer_bytes(probe.public())
    parent = submit_padded(lifecycle, SPAWN_ANSWER_ROOM_BYTES + grows + listed_bytes(child_job_id(probe.id, 1, 1), 0))
    queue.drain()
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    first = lifecycle.spawn(running, 1, type="t.leaf", payload={})  # the answer at the bound with it
    running = store.get(parent.id, mark_gone=False)
    refused_id = child_job_id(parent.id, 1, 2)
    with pytest.raises(AnswerFullError) as refused:
        lifecycle.spawn(running, 2, type="t.leaf", payload={})
    ids = [first.id, refused_id]
    assert f"its 2 children's ids {shown_number(answer_bytes(ids))}" in refused.value.message
    assert store.get(refused_id, mark_gone=False) is None


def test_a_listed_childs_share_is_what_it_adds_to_its_parents_answer():
    """Each child an attempt lists is counted by its share alone (`listed_bytes`), never the
    answer measured again whole: the share must be the bytes the answer grows by, its quotes and
    the comma before it (none before the first), so the spawns above are measured exactly."""
    from chalicelib.domain.job import Job, child_job_id, listed_bytes

    parent = Job(id="p", type="t", tenant="acme", user="ann", created_at="2026-01-01T00:00:00.000Z")
    for place in range(1, 4):
        child = child_job_id(parent.id, 1, place)
        grown = parent.model_copy(update={"children": [*parent.children, child]})
        assert answer_bytes(grown.public()) - answer_bytes(parent.public()) == \
            listed_bytes(child, len(parent.children)), place
        parent = grown


@pytest.mark.parametrize("over", [0, 1])
def test_a_spawn_that_takes_its_parents_answer_to_the_bound_exactly_is_made_and_one_byte_more_refused(
        env, store, queue, over):
    from chalicelib.domain.job import child_job_id, listed_bytes

    lifecycle, _ = env
    bound = MAX_ANSWER_BYTES - SPAWN_ANSWER_ROOM_BYTES
    probe = submit_padded(lifecycle, SPAWN_ANSWER_ROOM_BYTES)
    queue.drain()
    claimed = lifecycle.claim(JobMessage(probe.id, 1)).job
    grows = answer_bytes(claimed.public()) - (MAX_ANSWER_BYTES - SPAWN_ANSWER_ROOM_BYTES)  # by its claim
    extra = listed_bytes(child_job_id(claimed.id, 1, 1), 0)
    parent = submit_padded(lifecycle, SPAWN_ANSWER_ROOM_BYTES + grows + extra - over)
    queue.drain()
    running = lifecycle.claim(JobMessage(parent.id, 1)).job
    assert answer_bytes(running.public()) + extra == bound + over
    if over:
        with pytest.raises(AnswerFullError):
            lifecycle.spawn(running, 1, type="t.leaf", payload={})
        assert store.get(parent.id, mark_gone=False).children == []
    else:
        child = lifecycle.spawn(running, 1, type="t.leaf", payload={})
        assert store.get(parent.id, mark_gone=False).children == [child.id]


def test_a_submit_whose_answer_is_the_bound_exactly_is_taken_and_one_byte_more_refused(env, store):
    from chalicelib.domain.errors import PayloadTooLargeError

    lifecycle, _ = env
    taken = submit_padded(lifecycle, 0)
    assert answer_bytes(taken.public()) == MAX_ANSWER_BYTES and store.get(taken.id, mark_gone=False) is not None
    with pytest.raises(PayloadTooLargeError):
        submit_padded(lifecycle, -1)


def test_a_spawn_is_measured_with_the_report_the_window_has_not_written_yet(env, store, queue):
    """A report taken inside the progress window is part of the job's answer as soon as it is
    taken (the outcome's write carries it): a spawn right after it is measured with it, not with
    the progress last written, so a long message not yet written cannot let a child take the
    answer past the bound."""
    lifecycle, _ = env
    # The report inside the window: held, not written.
    runner = JobRunner(lifecycle, lifecycle.registry, clock=SystemClock(), progress_interval_s=3600)
    # Room for 20 ids, not for the 2,000 bytes of the report.
    parent = submit_padded(lifecycle, SPAWN_ANSWER_ROOM_BYTES + 20 * 41, spawn=1, report=2_000)
    (message,) = queue.drain()
    final = runner.run(message)
    assert final.status == JobStatus.FAILED and final.error.code == "answer_full", final.error
    assert final.children == [] and final.progress.message == "m" * 2_000
    assert [job.id for job in store._jobs.values()] == [parent.id] and queue.sent == []


@pytest.mark.parametrize("over", [0, 1])
def test_a_worker_spawn_that_takes_its_parents_answer_to_the_bound_exactly_is_made_and_one_byte_more_refused(
        store, queue, clock, over):
    """As a spawn measured whole, so one a handler makes (measured in parts by its attempt): a
    child whose id takes the answer to MAX_ANSWER_BYTES less SPAWN_ANSWER_ROOM_BYTES is made, one
    byte more is refused."""
    from chalicelib.domain.job import child_job_id, listed_bytes

    registry = JobTypeRegistry()
    seen = []

    @registry.register("t.leaf", Empty, max_attempts=1)
    def leaf(ctx, payload):
        return "ok"

    @registry.register("t.wide", Wide, max_attempts=1)
    def edge(ctx, payload):
        ctx.progress(0, force=True)  # written: the answer as any reader now has it
        seen.append(answer_bytes(ctx.job.public()) + listed_bytes(child_job_id(ctx.job_id, 1, 1), 0))
        ctx.spawn("t.leaf", {})
        return ""

    lifecycle = JobLifecycle(store, queue, registry, clock=clock)
    runner = JobRunner(lifecycle, registry, clock=SystemClock(), progress_interval_s=0)
    bound = MAX_ANSWER_BYTES - SPAWN_ANSWER_ROOM_BYTES
    room = SPAWN_ANSWER_ROOM_BYTES + 1_000
    submit_padded(lifecycle, room)
    assert runner.run(queue.drain()[0]).status == JobStatus.COMPLETED
    parent = submit_padded(lifecycle, room - (bound + over - seen[0]))
    (message,) = queue.drain()
    final = runner.run(message)
    assert seen[1] == bound + over
    if over:
        assert final.status == JobStatus.FAILED and final.error.code == "answer_full", final.error
        assert final.children == []
    else:
        assert final.status == JobStatus.COMPLETED, final.error
        assert final.children == [child_job_id(parent.id, 1, 1)]
