"""The installed `jobpipe` command, run as a user runs it, against the deployed stack."""
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.emulator import free_port

JOBPIPE = Path(sys.executable).parent / "jobpipe"


def jobpipe(stack, *args, env=None, timeout=120):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("JOBPIPE_", "AWS_"))}
    environ.update({"JOBPIPE_API_URL": stack.api_url, "JOBPIPE_TOKEN": stack.token()})
    environ.update(env or {})
    return subprocess.run([str(JOBPIPE), *args], env=environ, capture_output=True, text=True, timeout=timeout)


def test_the_command_is_installed_in_the_project_virtualenv():
    assert JOBPIPE.exists(), "run `make venv`: it installs the jobpipe command"


def test_submit_watch_follows_the_job_to_completed_and_exits_0(stack):
    result = jobpipe(stack, "submit", "demo.steps", "--payload", '{"steps": 4, "step_ms": 100}', "--watch")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    job_id = lines[0]
    assert lines[-1] == f"{job_id} completed"
    assert any(line.startswith(f"{job_id} demo.steps completed 100%") for line in lines)
    assert result.stderr == ""
    assert stack.job(job_id)["status"] == "completed"


def test_a_failing_job_exits_non_zero_with_its_error(stack):
    payload = json.dumps({"steps": 2, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"})
    result = jobpipe(stack, "submit", "demo.steps", "--payload", payload, "--watch")
    assert result.returncode == 1
    job_id = result.stdout.splitlines()[0]
    assert result.stdout.splitlines()[-1] == f"{job_id} failed demo_failure: failing at step 1 of 2 as asked"


def test_watch_of_a_fan_out_follows_its_children_and_exits_1_naming_the_one_that_failed(stack):
    """demo.fanout completes once it has spawned its children: the watch goes on until they
    have ended, and a failed child is exit 1, named on the last line."""
    payload = json.dumps({"children": 3, "steps": 2, "step_ms": 200, "fail_child": 2})
    submitted = jobpipe(stack, "submit", "demo.fanout", "--payload", payload)
    parent = submitted.stdout.strip()
    result = jobpipe(stack, "watch", parent)
    assert result.returncode == 1, result.stdout + result.stderr
    children = stack.job(parent)["children"]
    assert [stack.job(c)["status"] for c in children] == ["completed", "failed", "completed"]
    lines = result.stdout.splitlines()
    assert lines[-3:-1] == [f"{parent} completed", f"{parent} children: 3 (2 completed, 1 failed)"]
    assert lines[-1] == f"{children[1]} failed demo_failure: failing at step 1 of 2 as asked (child of {parent})"
    assert result.stderr == ""


def test_watch_no_children_of_a_fan_out_ends_with_the_parent_and_shows_no_child(stack):
    """With --no-children the watch follows the parent alone: it ends once the parent has
    completed, exit 0 though a child fails, and no line names a child."""
    payload = json.dumps({"children": 3, "steps": 2, "step_ms": 200, "fail_child": 2})
    parent = jobpipe(stack, "submit", "demo.fanout", "--payload", payload).stdout.strip()
    result = jobpipe(stack, "watch", parent, "--no-children")
    assert result.returncode == 0, result.stdout + result.stderr
    assert stack.job(parent)["status"] == "completed"
    assert result.stdout.splitlines()[-1] == f"{parent} completed" and result.stderr == ""
    assert "children" not in result.stdout
    assert not any(child in result.stdout for child in stack.job(parent)["children"])


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["submit", "demo.steps", "--payload", "{steps: 3"], "--payload is not valid JSON"),
        (["submit", "demo.steps", "--payload", '{"steps": -1, "step_ms": 0}'], "(invalid_payload)"),
        (["submit", "no.such.type"], "(unknown_job_type)"),
        (["status", "00000000-0000-0000-0000-000000000000"], "not found"),
        (["cancel", "00000000-0000-0000-0000-000000000000"], "(job_not_found)"),
        (["watch", "nope"], "job nope not found"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(stack, args, fragment):
    result = jobpipe(stack, *args)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_token_is_one_line_and_exit_2(stack):
    result = jobpipe(stack, "list", env={"JOBPIPE_TOKEN": ""})
    assert result.returncode == 2 and result.stderr.startswith("jobpipe: no token")
    assert len(result.stderr.splitlines()) == 1


def test_status_list_and_cancel(stack):
    submitted = jobpipe(stack, "submit", "demo.steps", "--payload", '{"steps": 1, "step_ms": 0}', "--delay", "600",
                        "--scope", "cli-test")
    job_id = submitted.stdout.strip()
    status = jobpipe(stack, "status", job_id, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)[0]["scope"] == "cli-test"
    canceled = jobpipe(stack, "cancel", job_id)
    assert canceled.returncode == 0 and canceled.stdout.strip() == f"{job_id} canceled"
    listed = jobpipe(stack, "list", "--status", "canceled", "--limit", "100", "--json")
    assert job_id in [j["id"] for j in json.loads(listed.stdout)]
    table = jobpipe(stack, "status", job_id)
    assert job_id in table.stdout and "canceled" in table.stdout


def test_rerun_runs_a_finished_job_again_and_refuses_one_not_finished(stack):
    """`jobpipe rerun` on the deployed stack: a scheduled job is refused while queued (exit 2, the
    API's code), then, once canceled, runs again as a new job linked to it, which the workers run
    to completed; the canceled one stays canceled."""
    queued = jobpipe(stack, "submit", "demo.steps", "--payload", '{"steps": 2, "step_ms": 0}', "--delay", "600")
    job_id = queued.stdout.strip()
    refused = jobpipe(stack, "rerun", job_id)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert "(job_not_finished)" in refused.stderr
    assert jobpipe(stack, "cancel", job_id).returncode == 0
    again = jobpipe(stack, "rerun", job_id, "--watch")
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    new_id = lines[0]
    assert new_id != job_id and lines[-1] == f"{new_id} completed"
    assert stack.job(new_id)["rerun_of"] == job_id
    original = stack.job(job_id)
    assert original["status"] == "canceled" and original["rerun_of"] is None


def test_the_cli_uses_a_fallback_url_when_the_primary_is_down(stack):
    closed = f"http://127.0.0.1:{free_port()}"
    down = jobpipe(stack, "list", "--limit", "1", env={"JOBPIPE_API_URL": closed})
    assert down.returncode == 3 and "could not be reached" in down.stderr
    result = jobpipe(stack, "list", "--limit", "1", "--json",
                     env={"JOBPIPE_API_URL": closed, "JOBPIPE_FALLBACK_URLS": stack.api_url})
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)


def test_in_a_pipe_list_and_status_print_whole_values_and_refusals_name_the_field(stack):
    done = jobpipe(stack, "submit", "demo.model", "--payload", '{"step_ms": 0}', "--watch", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "completed" and job["result"] == {"model": "output.stl", "size": 1024}
    for args in (["status", job["id"]], ["list", "--type", "demo.model", "--limit", "100"]):
        result = jobpipe(stack, *args)  # stdout is a pipe here
        assert result.returncode == 0, result.stderr
        header, *rows = result.stdout.splitlines()
        assert header.split() == ["id", "type", "status", "progress", "attempts", "created", "detail"]
        (row,) = [r for r in rows if r.startswith(job["id"])]
        assert row.split()[:6] == [job["id"], "demo.model", "completed", "100%", "1/2", job["created_at"]]
        assert row.endswith("Model processing complete") and "…" not in result.stdout
    refused = jobpipe(stack, "submit", "demo.steps", "--payload", '{"steps": 0, "step_ms": 0}')
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    assert "(invalid_payload): steps: Input should be greater than or equal to 1" in refused.stderr


def test_types_lists_the_deployed_types_and_one_types_example_submit_runs_as_pasted(stack):
    listed = jobpipe(stack, "types")
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert "demo.steps" in names and not any(name.startswith("maintenance.") for name in names)
    shown = jobpipe(stack, "types", "demo.steps")
    (example,) = [line for line in shown.stdout.splitlines() if line.startswith("example: ")]
    argv = shlex.split(example.removeprefix("example: "))
    made = jobpipe(stack, *argv[1:], "--watch")
    assert made.returncode == 0, made.stdout + made.stderr
    assert stack.job(made.stdout.splitlines()[0])["status"] == "completed"
