"""`jobpipe types` and `JobpipeClient.job_types()`: what a user submitting from a shell learns of
the job types the API takes (their names, run policy and payload schema), over the in-memory API."""
import json
import shlex

import pytest

from chalicelib.api.job_types import listed_job_types
from jobpipe_client.errors import JobpipeAnswerError
from tests.support.fake_api import FakeApi
from tests.unit.bad_servers import answering
from tests.unit.test_cli import run_cli
from tests.unit.test_client import PRIMARY, make_client


def test_types_lists_every_type_the_api_takes_one_line_each_into_a_pipe():
    api = FakeApi()
    result = run_cli(["types"], api)
    assert result.code == 0 and result.err == ""
    header, *rows = result.out.splitlines()
    assert header.split() == ["type", "priority", "max_attempts", "timeout_s", "description"]
    listed = listed_job_types(api.registry)["job_types"]
    assert [row.split()[:4] for row in rows] == [
        [t["type"], t["priority"], str(t["max_attempts"]), str(t["timeout_s"])] for t in listed]
    steps = next(row for row in rows if row.startswith("demo.steps "))
    assert steps.endswith(api.registry.get("demo.steps").description)  # the description whole, last


def test_types_on_a_terminal_is_a_table_and_with_json_the_apis_list():
    api = FakeApi()
    shown = run_cli(["types"], api, terminal=True).out
    assert all(name in shown for name in api.registry.names(public=True))
    as_json = run_cli(["types", "--json"], api)
    assert as_json.code == 0 and json.loads(as_json.out) == listed_job_types(api.registry)["job_types"]


def test_types_names_only_the_public_types():
    shown = run_cli(["types"], FakeApi()).out
    assert "maintenance." not in shown  # the built-in maintenance tasks are the operator's, not submittable


def test_one_type_shows_its_policy_its_payload_schema_and_a_submit_of_its_example_that_the_api_takes():
    api = FakeApi()
    result = run_cli(["types", "demo.steps"], api)
    assert result.code == 0 and result.err == ""
    lines = result.out.splitlines()
    assert lines[:4] == ["type: demo.steps", "priority: normal", "max_attempts: 3", "timeout_s: 600"]
    start = lines.index("payload_schema:") + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("example: "))
    assert json.loads("\n".join(lines[start:end])) == api.registry.get("demo.steps").payload_model.model_json_schema()
    (example,) = [line for line in lines if line.startswith("example: ")]
    argv = shlex.split(example.removeprefix("example: "))
    assert argv[:3] == ["jobpipe", "submit", "demo.steps"]
    submitted = run_cli(argv[1:], api)  # the line as a user pastes it
    assert submitted.code == 0 and api.jobs[submitted.out.strip()]["payload"]["steps"] == 10


def test_one_type_with_json_is_that_type_as_listed():
    api = FakeApi()
    result = run_cli(["types", "demo.sleep", "--json"], api)
    (listed,) = [t for t in listed_job_types(api.registry)["job_types"] if t["type"] == "demo.sleep"]
    assert result.code == 0 and json.loads(result.out) == listed


@pytest.mark.parametrize("name", ["no.such.type", "maintenance.purge_finished_jobs"])
def test_a_type_the_api_does_not_take_is_exit_2_in_one_line_naming_those_it_does(name):
    result = run_cli(["types", name], FakeApi())
    assert result.code == 2 and result.out == ""
    (line,) = result.err_lines
    assert line.startswith(f"jobpipe: unknown job type {name!r}; known types: demo.chaos, ") and "demo.steps" in line


TYPE = {"type": "acme.x", "description": "d", "priority": "normal", "max_attempts": 3, "timeout_s": 60,
        "payload_schema": {"type": "object"}}


def test_server_text_is_shown_as_characters_never_as_terminal_commands_or_markup():
    hostile = {**TYPE, "type": "acme.\x1b[2J", "description": "[bold red]boom[/] \x1b]0;title\x07 \u202e"}
    server = answering(200, {"job_types": [hostile]})
    for argv in (["types"], ["types", "acme.\x1b[2J"]):
        for terminal in (False, True):
            result = run_cli(argv, server=server, terminal=terminal)
            raw = ("\x1b[2J", "\x1b]0;", "\x07", "\u202e")  # rich's own styling on a terminal aside
            assert result.code == 0 and not any(code in result.out for code in raw), result.out
            assert "[bold red]boom[/]" in result.out and "acme.\\x1b[2J" in result.out


@pytest.mark.parametrize("body", [
    {"unexpected": True}, {"job_types": [{"type": "acme.x"}]}, {"job_types": [{**TYPE, "max_attempts": "3"}]},
    {"job_types": [{**TYPE, "timeout_s": True}]}, {"job_types": [{**TYPE, "payload_schema": []}]},
    {"job_types": [{**TYPE, "type": ""}]}, {"job_types": {"acme.x": TYPE}}])
def test_an_answer_that_is_no_list_of_job_types_is_an_answer_error(body):
    client, _ = make_client({PRIMARY: answering(200, body)})
    with pytest.raises(JobpipeAnswerError, match="not a list of job types"):
        client.job_types()
    result = run_cli(["types"], server=answering(200, body))
    assert result.code == 3 and len(result.err_lines) == 1
