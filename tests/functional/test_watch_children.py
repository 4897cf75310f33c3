"""`jobpipe watch` and `client.wait` on a `demo.fanout` parent, against the API on moto with its
workers: the parent completes as soon as it has spawned its children, and the watch follows
the children to their end, exits 1 for the one that failed and names it. Each pause of the
client's polls delivers what is queued to the workers once, so the parent runs in one pause and
its children in the next."""
from __future__ import annotations

import io

from rich.console import Console

from jobpipe_client import JobpipeClient
from jobpipe_client.cli import main
from tests.functional.conftest import drain, get_job, submit_job, token
from tests.functional.test_doc_examples import URL, _bridge
from tests.support.fake_http import FakeSession

FANOUT = {"type": "demo.fanout", "payload": {"children": 3, "steps": 1, "step_ms": 0, "fail_child": 2}}


def make_client(app, aws, client) -> JobpipeClient:
    session = FakeSession({})
    session.servers = {URL: _bridge(client, session)}
    return JobpipeClient(URL, token(), session=session, sleep=lambda seconds: drain(app, aws, rounds=1))


def test_watch_of_a_fan_out_ends_with_its_children_and_names_the_one_that_failed(app, aws, client):
    parent = submit_job(client, FANOUT)
    out, err = io.StringIO(), io.StringIO()
    code = main(["watch", parent["id"]], environ={}, out=Console(file=out, width=80), err=err,
                make_client=lambda args, env: make_client(app, aws, client))
    done = get_job(client, parent["id"])
    assert done["status"] == "completed" and len(done["children"]) == 3
    children = [get_job(client, c) for c in done["children"]]
    assert [c["status"] for c in children] == ["completed", "failed", "completed"]
    assert code == 1, out.getvalue() + err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[-3:] == [f"{parent['id']} completed", f"{parent['id']} children: 3 (2 completed, 1 failed)",
                          f"{children[1]['id']} failed demo_failure: failing at step 1 of 1 as asked "
                          f"(child of {parent['id']})"]


def test_wait_on_a_fan_out_returns_once_its_children_have_ended(app, aws, client):
    parent = submit_job(client, {**FANOUT, "payload": {"children": 2, "steps": 1, "step_ms": 0}})
    jobpipe = make_client(app, aws, client)
    done = jobpipe.wait(parent)
    assert done["status"] == "completed"
    assert [get_job(client, c)["status"] for c in done["children"]] == ["completed", "completed"]


def test_watch_no_children_returns_when_the_parent_ends_and_shows_no_child(app, aws, client):
    """The parent runs in one pause of the polls and its children only in the next: with
    --no-children there is no next, the watch ends with the parent, its exit code the parent's
    (a child set to fail never ran)."""
    parent = submit_job(client, FANOUT)
    out, err = io.StringIO(), io.StringIO()
    code = main(["watch", parent["id"], "--no-children"], environ={}, out=Console(file=out, width=80), err=err,
                make_client=lambda args, env: make_client(app, aws, client))
    assert code == 0, out.getvalue() + err.getvalue()
    done = get_job(client, parent["id"])
    assert done["status"] == "completed" and len(done["children"]) == 3
    assert [get_job(client, c)["status"] for c in done["children"]] == ["queued"] * 3
    lines = out.getvalue().splitlines()
    assert lines[-1] == f"{parent['id']} completed" and err.getvalue() == ""
    assert not any(c in out.getvalue() for c in done["children"]) and "children" not in out.getvalue()
