"""A fan-out's parent completes while its children still run (`demo.fanout`: it spawns them and
returns), so `jobpipe watch PARENT` and `client.wait(parent)` follow its children too: they end
once the parent and every child (theirs in turn) have ended, exit 1 when any child did not
complete, and the summary names those. The children are polled in batches (POST /jobs/status,
100 ids a request), never a GET each, and a child that has ended is not asked again.

Over the in-memory API (no sockets), its jobs scripted: each read takes the next state."""
import json

import pytest

from jobpipe_client import Backoff, JobpipeClient
from jobpipe_client.cli import build_parser, main
from tests.support.fake_api import FakeApi
from tests.support.fake_http import FakeSession, FakeTime, failing
from tests.unit.test_cli import URL, run_cli

DONE = {"status": "completed", "version": 9, "progress": {"percent": 100.0, "step": "completed", "message": None}}
FAILED = {"status": "failed", "version": 9, "error": {"code": "demo_failure", "message": "failing at step 1 of 1 as asked"}}


def fan_out(api, *finals, parent_status="completed", polls_before_end=2):
    """A parent in `parent_status` with a child per entry of `finals`, each running for
    `polls_before_end` reads and then ending as that entry says (None: it never ends)."""
    children = [api.add("running", parent_id="p", type="demo.steps", progress={"percent": 50.0}) for _ in finals]
    parent = api.add(parent_status, type="demo.fanout", children=[c["id"] for c in children], version=7)
    for child, final in zip(children, finals):
        child["parent_id"] = parent["id"]
        if final is not None:
            api.script(child["id"], *([{}] * polls_before_end), final)
    return parent, children


def asked_ids(api):
    """The ids each request asked about: a batch's ids, or the one id of a GET /jobs/{id}."""
    asked = []
    for method, path, sent in api.requests:
        if (method, path) == ("POST", "/jobs/status"):
            asked.append(list(sent["json"]["job_ids"]))
        elif method == "GET" and path.startswith("/jobs/"):
            asked.append([path.rsplit("/", 1)[1]])
    return asked


def make_client(api):
    time = FakeTime()
    return JobpipeClient(URL, "tok", session=FakeSession({URL: api}), sleep=time.sleep, clock=time.clock,
                         backoff=lambda: Backoff(initial_s=1, maximum_s=4))


# -- the CLI ----------------------------------------------------------------------------------------

def test_watch_of_a_completed_parent_follows_its_children_to_their_end():
    """`jobpipe watch PARENT` exited 0 at once, the parent being completed, while its
    children still ran: the user never saw the work finish."""
    api = FakeApi()
    parent, children = fan_out(api, DONE, DONE)
    result = run_cli(["watch", parent["id"]], api)
    assert result.code == 0, result.err
    assert all(api.jobs[c["id"]]["status"] == "completed" for c in children)
    lines = result.out.splitlines()
    for child in children:  # a line as each child changes status, into a pipe
        assert any(line.startswith(f"{child['id']} demo.steps running 50%") for line in lines)
        assert any(line.startswith(f"{child['id']} demo.steps completed 100%") for line in lines)
    assert lines[-2:] == [f"{parent['id']} completed", f"{parent['id']} children: 2 (2 completed)"]


@pytest.mark.parametrize("final, status", [(FAILED, "failed"), ({"status": "canceled", "version": 9}, "canceled")])
def test_a_child_that_fails_or_is_canceled_makes_the_watch_exit_1_and_is_named_last(final, status):
    api = FakeApi()
    parent, (good, bad) = fan_out(api, DONE, final)
    result = run_cli(["watch", parent["id"]], api)
    assert result.code == 1, result.out
    lines = result.out.splitlines()
    assert lines[-3] == f"{parent['id']} completed"
    assert lines[-2] == f"{parent['id']} children: 2 (1 completed, 1 {status})"
    assert lines[-1].startswith(f"{bad['id']} {status}") and lines[-1].endswith(f"(child of {parent['id']})")
    if status == "failed":
        assert "demo_failure: failing at step 1 of 1 as asked" in lines[-1]
    assert not any(line.startswith(f"{good['id']} completed") for line in lines[-3:])


def spawning_on_submit(api: FakeApi, child_status: str, parent_steps, child_steps: tuple = ()) -> list[dict]:
    """The first job added to `api` (the one a submit makes) spawns one child, added with
    `child_status`: the parent's polls answer `parent_steps(child id)` in turn, the child's
    `child_steps` (none: as it was added). Returns [parent, child], filled by that submit."""
    original_add, made = api.add, []

    def add_scripted(status="queued", **fields):
        job = original_add(status, **fields)
        if not made:
            child = original_add(child_status, parent_id=job["id"])
            if child_steps:
                api.script(child["id"], *child_steps)
            api.script(job["id"], *parent_steps(child["id"]))
            made.extend([job, child])
        return job

    api.add = add_scripted
    return made


def test_submit_watch_of_a_fan_out_follows_the_children_it_spawns_while_running():
    """The parent lists its children as it spawns them: children that appear while it runs are
    followed as they appear."""
    api = FakeApi()
    made = spawning_on_submit(api, "queued", lambda child: (
        {"status": "running", "version": 2}, {"status": "running", "version": 3, "children": [child]},
        {"status": "completed", "version": 4}), ({}, {}, {"status": "running", "version": 2}, FAILED))
    result = run_cli(["submit", "demo.fanout", "--payload", '{"children": 1}', "--watch"], api)
    parent, child = made
    assert result.code == 1, result.out
    assert api.jobs[child["id"]]["status"] == "failed"
    assert result.out.splitlines()[-1].startswith(f"{child['id']} failed demo_failure")


def test_watch_json_lists_the_children_after_the_parent_and_exits_1_for_a_failed_one():
    api = FakeApi()
    parent, children = fan_out(api, DONE, FAILED)
    result = run_cli(["watch", parent["id"], "--json"], api)
    assert result.code == 1
    assert [(j["id"], j["status"]) for j in json.loads(result.out)] == [
        (parent["id"], "completed"), (children[0]["id"], "completed"), (children[1]["id"], "failed")]


def test_on_a_terminal_the_children_share_one_row_under_their_parent():
    """A fan-out may have 2,000 children: one row counts them, not a bar each."""
    api = FakeApi()
    parent, children = fan_out(api, *[DONE] * 12)
    result = run_cli(["watch", parent["id"]], api, terminal=True)
    assert result.code == 0, result.err
    assert f"{parent['id'][:8]} children (12)" in result.out and "12 completed" in result.out
    assert not any(c["id"][:8] in result.out for c in children)  # no bar of their own


def test_a_timeout_while_children_run_names_them_and_exits_4():
    api = FakeApi()
    parent, (child,) = fan_out(api, None)
    result = run_cli(["watch", parent["id"], "--timeout", "5"], api)
    assert result.code == 4 and child["id"] in result.err
    assert result.out.splitlines()[-1] == f"{child['id']} running (child of {parent['id']})"


def test_the_children_of_a_parent_with_more_than_a_batch_are_paged_and_never_read_one_by_one():
    """Cost: one POST /jobs/status per 100 children a poll, no GET per child; an ended child is
    not asked again, so the polls shrink as the children end."""
    api = FakeApi()
    parent, children = fan_out(api, *[DONE] * 150, polls_before_end=1)
    result = run_cli(["watch", parent["id"]], api)
    assert result.code == 0, result.err
    asked = asked_ids(api)
    assert all((method, path) == ("POST", "/jobs/status") for method, path, _ in api.requests)
    assert max(map(len, asked)) == 100
    ids = [c["id"] for c in children]
    assert asked[0] == [parent["id"]]  # watch's first read
    assert asked[1:3] == [ids[:100], ids[100:]]  # the children read, in two batches
    assert asked[3:5] == [ids[:100], ids[100:]]  # they end
    assert len(asked) == 5  # ended, none is asked again


# -- the client -------------------------------------------------------------------------------------

def test_wait_on_a_parent_returns_once_its_children_have_ended_and_wait_many_returns_them():
    api = FakeApi()
    parent, children = fan_out(api, DONE, FAILED)
    client = make_client(api)
    seen = []
    done = client.wait(parent["id"], on_change=lambda job: seen.append((job["id"], job["status"])))
    assert done["id"] == parent["id"] and done["status"] == "completed"
    assert all(api.jobs[c["id"]]["status"] in ("completed", "failed") and not api.scripts[c["id"]] for c in children)
    assert (children[1]["id"], "failed") in seen
    api2 = FakeApi()
    parent2, children2 = fan_out(api2, DONE, FAILED)
    final = make_client(api2).wait_many([parent2["id"]])
    assert [(i, j["status"]) for i, j in final.items()] == [
        (parent2["id"], "completed"), (children2[0]["id"], "completed"), (children2[1]["id"], "failed")]


def test_a_wait_reads_its_ended_parent_once_while_the_children_run_on():
    """An ended job will not change: the wait's own job, ended, is not asked again at each
    poll of its children (a GET a poll for as long as a fan-out runs)."""
    api = FakeApi()
    parent, (child,) = fan_out(api, DONE, polls_before_end=4)
    assert make_client(api).wait(parent["id"])["status"] == "completed"
    asked = asked_ids(api)
    assert asked[0] == [parent["id"]] and [child["id"]] in asked and [parent["id"]] not in asked[1:]


def test_a_childrens_list_is_read_as_the_api_keys_ids_and_what_is_no_id_is_left_out():
    """A child listed with spaces at its ends is the job the batch answers trimmed; an empty
    entry or one holding a comma is no job to follow (not a refusal that ends the wait)."""
    api = FakeApi()
    parent, (child,) = fan_out(api, DONE)
    parent["children"] = [f" {child['id']} ", "", "a,b"]
    final = make_client(api).wait_many([parent["id"]])
    assert [(i, j["status"]) for i, j in final.items()] == [(parent["id"], "completed"), (child["id"], "completed")]


def test_wait_with_children_false_returns_the_parent_alone_as_it_did():
    api = FakeApi()
    parent, (child,) = fan_out(api, None)
    client = make_client(api)
    assert client.wait(parent["id"], children=False)["status"] == "completed"
    assert list(client.wait_many([parent["id"]], children=False)) == [parent["id"]]
    assert all(child["id"] not in ids for ids in asked_ids(api))
    with pytest.raises(TypeError, match="children"):
        client.wait(parent["id"], children="no")


def test_children_of_children_are_followed():
    api = FakeApi()
    grandchild = api.add("running")
    api.script(grandchild["id"], {}, FAILED)
    child = api.add("completed", children=[grandchild["id"]], version=5)
    parent = api.add("completed", children=[child["id"]], version=5)
    child["parent_id"], grandchild["parent_id"] = parent["id"], child["id"]
    final = make_client(api).wait_many([parent["id"]])
    assert list(final) == [parent["id"], child["id"], grandchild["id"]]
    result = run_cli(["watch", parent["id"]], api)
    assert result.code == 1
    assert result.out.splitlines()[-2:] == [f"{parent['id']} children: 2 (1 completed, 1 failed)",
                                            f"{grandchild['id']} failed demo_failure: failing at step 1 of 1 as asked "
                                            f"(child of {child['id']})"]


def test_a_child_that_a_lagging_read_does_not_show_yet_is_asked_again_before_it_counts_as_not_found():
    """Batch reads are eventually consistent and the child is made in the write that lists it:
    a first `not_found` for a child never read is asked again; a second one is believed."""
    api = FakeApi()
    parent, (child,) = fan_out(api, DONE)
    hidden = api.jobs.pop(child["id"])
    original_read = api._read
    reads = {"n": 0}

    def lagging(job_id):
        if job_id == child["id"]:
            reads["n"] += 1
            if reads["n"] == 1:
                return None  # the replica read has not seen the child yet
            api.jobs[job_id] = hidden
        return original_read(job_id)

    api._read = lagging
    final = make_client(api).wait_many([parent["id"]])
    assert final[child["id"]]["status"] == "completed"
    gone = FakeApi()
    parent, (child,) = fan_out(gone, DONE)
    del gone.jobs[child["id"]]  # removed (retention): not_found twice
    final = make_client(gone).wait_many([parent["id"]])
    assert final[child["id"]]["status"] == "not_found"


# -- --no-children -----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, children", [
    (["watch", "p"], True),
    (["watch", "p", "q", "--no-children"], False),
    (["submit", "demo.fanout", "--watch"], True),
    (["submit", "demo.fanout", "--watch", "--no-children"], False),
    (["rerun", "p", "--watch", "--no-children"], False),
])
def test_no_children_is_parsed_as_children_false_on_every_command_that_watches(argv, children):
    assert build_parser().parse_args(argv).children is children


def test_no_children_is_in_the_help_of_the_commands_that_watch(capsys):
    for command in ("watch", "submit", "rerun"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--no-children" in text and "alone, not the children spawned" in text, command


@pytest.mark.parametrize("argv", [["submit", "demo.fanout", "--no-children"], ["rerun", "j-1", "--no-children"]])
def test_no_children_without_watch_is_one_line_exit_2_and_nothing_sent(argv):
    api = FakeApi()
    result = run_cli(argv, api)
    assert result.code == 2 and result.out == "" and api.requests == []
    assert result.err_lines == ["jobpipe: --no-children needs --watch: it makes the watch follow the job alone, "
                                "not the children it spawns"]


@pytest.mark.parametrize("command", [["status", "j-1"], ["list"], ["cancel", "j-1"], ["result", "j-1"],
                                     ["artifacts", "j-1"]])
def test_no_children_on_a_command_that_does_not_watch_is_one_line_exit_2(command, capsys):
    with pytest.raises(SystemExit) as refused:
        main([*command, "--no-children"], environ={}, make_client=lambda *_: pytest.fail("nothing is sent"))
    err = capsys.readouterr().err
    assert refused.value.code == 2 and err.splitlines() == [
        "jobpipe: error: unrecognized arguments: --no-children (see 'jobpipe --help')"]


def test_watch_no_children_returns_when_the_parent_ends_and_shows_no_child():
    """The child never ends: a watch following it would run to its timeout (exit 4)."""
    api = FakeApi()
    parent, (child,) = fan_out(api, None)
    result = run_cli(["watch", parent["id"], "--no-children", "--timeout", "60"], api)
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1] == f"{parent['id']} completed"
    assert child["id"] not in result.out and "children" not in result.out and result.err == ""
    assert all(child["id"] not in ids for ids in asked_ids(api))


def test_watch_no_children_exit_code_is_the_parents_alone():
    api = FakeApi()
    parent, (child,) = fan_out(api, FAILED)
    assert run_cli(["watch", parent["id"]], api).code == 1
    api = FakeApi()
    parent, (child,) = fan_out(api, FAILED)
    assert run_cli(["watch", parent["id"], "--no-children"], api).code == 0


def test_watch_no_children_on_a_terminal_has_no_children_row():
    api = FakeApi()
    parent, children = fan_out(api, *[None] * 3)
    result = run_cli(["watch", parent["id"], "--no-children", "--timeout", "60"], api, terminal=True)
    assert result.code == 0, result.err
    assert parent["id"][:8] in result.out and "children" not in result.out
    assert not any(c["id"][:8] in result.out for c in children)


def test_watch_json_no_children_lists_the_jobs_named_alone():
    api = FakeApi()
    parent, (child,) = fan_out(api, None)
    result = run_cli(["watch", parent["id"], "--json", "--no-children", "--timeout", "60"], api)
    assert result.code == 0, result.err
    assert [(j["id"], j["status"]) for j in json.loads(result.out)] == [(parent["id"], "completed")]


def test_submit_watch_no_children_ends_with_the_parent_though_it_spawned_a_child():
    api = FakeApi()
    made = spawning_on_submit(api, "running", lambda child: (  # a child that never ends
        {"status": "running", "version": 2, "children": [child]}, {"status": "completed", "version": 3}))
    result = run_cli(["submit", "demo.fanout", "--payload", '{"children": 1}', "--watch", "--no-children",
                      "--timeout", "60"], api)
    assert len(made) == 2, result.err
    parent, child = made
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == parent["id"] and result.out.splitlines()[-1] == f"{parent['id']} completed"
    assert child["id"] not in result.out


def test_a_watch_of_a_wide_fan_out_that_runs_out_of_time_ends_with_a_line_of_its_size():
    """The timeout's line named every child not ended: 2,000 ids, one line of 76 KB."""
    api = FakeApi()
    parent, children = fan_out(api, *([None] * 2000))
    result = run_cli(["watch", parent["id"], "--timeout", "30"], api)
    first = ", ".join(c["id"] for c in children[:3])
    assert (result.code, result.err_lines) == (4, [f"jobpipe: gave up after 30 s waiting for {first} and 1997 more"])


def test_a_watch_of_a_wide_fan_out_whose_polls_go_unanswered_ends_with_a_line_of_its_size():
    api = FakeApi()
    parent, children = fan_out(api, *([None] * 2000))

    def down_after_the_first_reads(method, url, **kwargs):
        if len(api.requests) < 25:  # the first read and the children's first poll
            return api(method, url, **kwargs)
        return failing("503")(method, url, **kwargs)

    result = run_cli(["watch", parent["id"], "--give-up-after", "0"], server=down_after_the_first_reads)
    first = ", ".join(c["id"] for c in children[:3])
    assert result.code == 3 and len(result.err) < 600, result.err[:300]
    assert result.err_lines[-1].endswith(f"so the wait for {first} and 1997 more gave up")
