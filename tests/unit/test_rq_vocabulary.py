from datetime import datetime, timezone

import pytest

from chalicelib.api.rq_vocabulary import RQ_STATUS, job_info, job_status
from chalicelib.domain.job import Job, JobErrorInfo, Progress
from chalicelib.domain.status import JobStatus

NOW = datetime(2026, 1, 1, 12, 0, 10, 500_000, tzinfo=timezone.utc)


def make_job(**fields) -> Job:
    base = dict(id="j1", type="demo.steps", tenant="acme", user="ann", created_at="2026-01-01T11:59:00.000Z")
    return Job(**{**base, **fields})


@pytest.mark.parametrize(
    "status, rq",
    [
        (JobStatus.QUEUED, "queued"),
        (JobStatus.RUNNING, "started"),
        (JobStatus.RETRYING, "queued"),
        (JobStatus.COMPLETED, "finished"),
        (JobStatus.FAILED, "failed"),
        (JobStatus.CANCELED, "canceled"),
    ],
)
def test_every_status_maps_into_rq_vocabulary(status, rq):
    assert RQ_STATUS[status] == rq
    assert job_status(make_job(status=status), NOW)["status"] == rq


def test_the_mapping_covers_every_status():
    assert set(RQ_STATUS) == set(JobStatus)


def test_running_job_elapsed_counts_to_now():
    job = make_job(status=JobStatus.RUNNING, started_at="2026-01-01T12:00:00.000Z")
    assert job_status(job, NOW) == {
        "id": "j1", "runid": None, "status": "started", "started_at": "2026-01-01T12:00:00.000Z",
        "ended_at": None, "elapsed_s": 10.5,
    }


def test_finished_job_elapsed_counts_to_its_end():
    job = make_job(
        status=JobStatus.COMPLETED, started_at="2026-01-01T12:00:00.000Z",
        finished_at="2026-01-01T12:00:02.250Z", result={"rows": 3},
        progress=Progress(percent=100, step="done", message="all rows"),
    )
    info = job_info(job, NOW)
    assert info["elapsed_s"] == 2.25 and info["ended_at"] == "2026-01-01T12:00:02.250Z"
    assert info["result"] == {"rows": 3} and info["exc_info"] is None
    assert info["progress"] == {"percent": 100.0, "step": "done", "message": "all rows", "details": None, "updated_at": None}


@pytest.mark.parametrize("now, elapsed", [(datetime(2026, 1, 1, 12, 0, 0, 123_456, tzinfo=timezone.utc), 0.123),
                                          (datetime(2026, 1, 1, 12, 0, 0, 987_654, tzinfo=timezone.utc), 0.988),
                                          (datetime(2026, 1, 1, 11, 59, 58, tzinfo=timezone.utc), 0)])
def test_elapsed_is_read_to_the_millisecond_and_never_below_zero(now, elapsed):
    """A job running less than a second reads its fraction, rounded to the millisecond as the
    stored times are kept; a clock behind the job's start (the poller's, or a worker's that
    stamped its end) reads 0, never a negative time."""
    job = make_job(status=JobStatus.RUNNING, started_at="2026-01-01T12:00:00.000Z")
    assert job_status(job, now)["elapsed_s"] == elapsed


def test_jobinfo_names_the_jobs_type_and_its_attempts_beside_rq_engines_fields():
    """rq-engine's clients read `description`; jobpipe's own type and attempt count stand beside
    it, so a poller can tell a retried job from one that ran once."""
    job = make_job(status=JobStatus.RETRYING, attempts=2, scope="proj")
    info = job_info(job, NOW)
    assert (info["type"], info["attempts"], info["description"]) == ("demo.steps", 2, "demo.steps(proj)")


def test_job_never_started_has_no_elapsed_time():
    assert job_status(make_job(), NOW)["elapsed_s"] is None


def test_error_becomes_exc_info_and_scope_the_description_argument():
    job = make_job(
        status=JobStatus.FAILED, scope="project-7",
        error=JobErrorInfo(code="timeout", message="attempt 2 ran past 3 s"),
    )
    info = job_info(job, NOW)
    assert info["exc_info"] == "timeout: attempt 2 ran past 3 s"
    assert info["description"] == "demo.steps(project-7)" and info["runid"] == "project-7"
    assert job_info(make_job(), NOW)["description"] == "demo.steps"


def test_children_is_an_empty_mapping_while_jobs_have_none():
    assert job_info(make_job(), NOW)["children"] == {}


@pytest.mark.parametrize(
    "statuses, expected",
    [
        (["finished", "finished"], "finished"),
        (["finished", "failed", "started"], "failed"),
        (["finished", "started", "queued"], "started"),
        (["finished", "queued"], "queued"),
        (["finished", "canceled"], "canceled"),
        (["started", "canceled", "queued"], "canceled"),  # rq-engine: canceled before started
        (["failed", "canceled"], "failed"),
    ],
)
def test_tree_status_follows_rq_engine(statuses, expected):
    from chalicelib.api.rq_vocabulary import tree_status

    assert tree_status(statuses) == expected


def test_parent_status_and_end_follow_its_children():
    from datetime import datetime, timezone

    from chalicelib.api.rq_vocabulary import job_info, job_status
    from chalicelib.domain.job import Job
    from chalicelib.domain.status import JobStatus

    def make(job_id, status, started, finished, children=()):
        return Job(id=job_id, type="demo.steps", tenant="t", user="u", created_at="2026-01-01T00:00:00.000Z",
                   status=status, started_at=started, finished_at=finished, children=list(children))

    parent = make("p", JobStatus.COMPLETED, "2026-01-01T00:00:01.000Z", "2026-01-01T00:00:02.000Z", ["a", "b"])
    done = make("a", JobStatus.COMPLETED, "2026-01-01T00:00:02.000Z", "2026-01-01T00:00:05.000Z")
    running = make("b", JobStatus.RUNNING, "2026-01-01T00:00:02.000Z", None)
    now = datetime(2026, 1, 1, 0, 0, 10, tzinfo=timezone.utc)
    tree = {"a": done, "b": running}
    status = job_status(parent, now, tree)
    assert status["status"] == "started" and status["ended_at"] is None and status["elapsed_s"] == 9
    finished = {"a": done, "b": make("b", JobStatus.COMPLETED, "2026-01-01T00:00:02.000Z", "2026-01-01T00:00:07.000Z")}
    status = job_status(parent, now, finished)
    assert status["status"] == "finished" and status["ended_at"] == "2026-01-01T00:00:07.000Z"
    info = job_info(parent, now, tree)
    assert info["status"] == "finished" and list(info["children"]) == ["0", "1"]
    assert [[c["id"] for c in group] for group in info["children"].values()] == [["a"], ["b"]]
    assert info["children"]["1"][0]["status"] == "started"
    assert job_info(parent, now, {"a": done})["children"]["1"] == [None]  # not held: None, as rq-engine
    assert status["started_at"] == parent.started_at  # the tree's start is the root's, as rq-engine
    # A tree larger than is read: what was read is all finished, the rest may still run.
    cut = job_status(parent, now, {"a": done}, whole=False)
    assert cut["status"] == "started" and cut["ended_at"] is None
    assert job_status(parent, now, {"a": done, "b": make("b", JobStatus.FAILED, None, "2026-01-01T00:00:03.000Z")},
                      whole=False)["status"] == "failed"


def test_a_parent_read_without_its_tree_shows_each_child_as_not_held():
    parent = make_job(id="p", children=["a", "b"])
    assert job_info(parent, NOW)["children"] == {"0": [None], "1": [None]}
    assert job_status(parent, NOW)["status"] == "queued"


@pytest.mark.timeout(10)
def test_a_tree_whose_members_name_each_other_is_read_once_each():
    """A tree is read from stored records: ids that come round again (a record naming its own
    ancestor) end the walk, never loop it."""
    parent = make_job(id="p", status=JobStatus.COMPLETED, children=["a"], finished_at="2026-01-01T12:00:01.000Z")
    child = make_job(id="a", status=JobStatus.RUNNING, children=["p", "a"])
    assert job_status(parent, NOW, {"a": child, "p": parent})["status"] == "started"


@pytest.mark.parametrize("status, rq", [(JobStatus.FAILED, "failed"), (JobStatus.RUNNING, "started")])
def test_a_grandchild_counts_in_its_grandparents_status_and_end(status, rq):
    """A tree is every descendant, not the children alone: a fan-out whose child spawned jobs of
    its own is failed while a grandchild failed, started while one runs, and ends with the last."""
    root = make_job(id="p", status=JobStatus.COMPLETED, children=["a"], started_at="2026-01-01T12:00:00.000Z",
                    finished_at="2026-01-01T12:00:01.000Z")
    child = root.model_copy(update={"id": "a", "children": ["g"], "finished_at": "2026-01-01T12:00:02.000Z"})
    grandchild = make_job(id="g", status=status, started_at="2026-01-01T12:00:00.000Z",
                          finished_at="2026-01-01T12:00:04.000Z" if status == JobStatus.FAILED else None)
    answer = job_status(root, NOW, {"a": child, "g": grandchild})
    assert answer["status"] == rq
    assert answer["ended_at"] == grandchild.finished_at


def test_a_tree_not_read_whole_has_no_end_whatever_its_status():
    """`ended_at` is the tree's end once every job of it has ended: a tree read in part (past
    MAX_TREE_JOBS, or out of reads) whose part read has all ended, with a failure or a cancel
    among it, may still have jobs running past it, so it has no end yet."""
    parent = make_job(id="p", status=JobStatus.COMPLETED, children=["a", "b"], started_at="2026-01-01T12:00:00.000Z",
                      finished_at="2026-01-01T12:00:01.000Z")
    for status in (JobStatus.FAILED, JobStatus.CANCELED):
        ended = make_job(id="a", status=status, started_at="2026-01-01T12:00:00.000Z",
                         finished_at="2026-01-01T12:00:02.000Z")
        whole = job_status(parent, NOW, {"a": ended, "b": ended.model_copy(update={"id": "b"})})
        assert whole["ended_at"] == "2026-01-01T12:00:02.000Z" and whole["elapsed_s"] == 2
        cut = job_status(parent, NOW, {"a": ended}, whole=False)
        assert cut["status"] == RQ_STATUS[status] and cut["ended_at"] is None and cut["elapsed_s"] == 10.5
