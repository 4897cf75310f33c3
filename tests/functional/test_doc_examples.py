"""The client and CLI examples of README.md and docs/api.md, run as written against the API on
moto: a reader who copies one gets what the page says, not a 422 for a payload the example
left out. The Python client talks to the Chalice test client through a requests-compatible
session; waits deliver the queued messages to the workers instead of sleeping."""
from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path
from typing import Optional
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from rich.console import Console

import jobpipe_client
from jobpipe_client.cli import main
from tests.functional.conftest import drain, token
from tests.support.fake_http import FakeSession, make_response

ROOT = Path(__file__).resolve().parents[2]
URL, OTHER_URL = "http://api.test", "http://api-2.test"


def _bridge(chalice_client, session: FakeSession):
    """A fake server (as tests.support.fake_http routes them) answering from the Chalice app, with the
    session's headers (the token) under the request's."""

    def server(method, url, *, params=None, json=None, headers=None, **_):
        headers = {"Content-Type": "application/json", **session.headers, **(headers or {})}
        path = urlsplit(url).path
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if query:
            path += "?" + urlencode(query)
        body = b"" if json is None else _dumps(json)
        answer = chalice_client.http.request(method, path, headers=headers, body=body)
        return make_response(method, url, answer.status_code, answer.body, dict(answer.headers))

    return server


def _s3_over_moto(seen: Optional[list] = None):
    """moto's S3 answering a presigned GET (an artifact's link) as requests sends it."""

    def server(method, url, *, headers=None, **_):
        if seen is not None:
            seen.append(dict(headers or {}))
        answer = requests.request(method, url, headers={k: v for k, v in (headers or {}).items() if v is not None})
        return make_response(method, url, answer.status_code, answer.content, dict(answer.headers))

    return server


def _dumps(value) -> bytes:
    return json.dumps(value).encode()


@pytest.fixture
def make_client(app, aws, client):
    """JobpipeClient(url, token, ...) as the examples call it, every URL served by the app."""

    class DocClient(jobpipe_client.JobpipeClient):
        def __init__(self, base_url, token, fallback_urls=(), timeout=10.0, **kwargs):
            session = FakeSession({})
            session.servers = {**dict.fromkeys((URL, OTHER_URL), _bridge(client, session)),
                               "https:/": _s3_over_moto()}  # an artifact's presigned URL
            super().__init__(base_url, token, fallback_urls, timeout, session=session,
                             sleep=lambda seconds: drain(app, aws, rounds=1), **kwargs)

    return DocClient


def _python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)


def _submit_commands() -> list[str]:
    """Every `jobpipe submit ...` the README and docs/api.md show, comments dropped."""
    commands = []
    for page in ("README.md", "docs/api.md"):
        text = (ROOT / page).read_text()
        commands += re.findall(r"`(jobpipe submit [^`]+)`", text)
        for block in re.findall(r"```sh\n(.*?)```", text, re.S):
            commands += [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("jobpipe submit")]
    return commands


def test_the_python_client_examples_of_docs_api_md_run_as_written(make_client, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(jobpipe_client, "JobpipeClient", make_client)
    monkeypatch.chdir(tmp_path)  # where an example downloads to
    blocks = _python_blocks("docs/api.md")
    assert blocks
    scope = {"url": URL, "other_url": OTHER_URL, "token": token()}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), scope)
    assert scope["done"]["status"] == "completed"
    assert scope["later"]["not_before"] > scope["job"]["not_before"]
    assert len(scope["data"]) == 4096 and scope["summary"].startswith(b"job ")  # from S3, and inline
    assert (tmp_path / "data.bin").read_bytes() == scope["data"]  # streamed to a file
    assert "\n100\n" in capsys.readouterr().out  # on_change saw the job complete (a whole percent: 100)


def test_every_cli_submit_the_docs_show_is_accepted(make_client, tmp_path, monkeypatch):
    (tmp_path / "payload.json").write_text('{"steps": 1, "step_ms": 0}')
    monkeypatch.chdir(tmp_path)
    commands = _submit_commands()
    assert len(commands) >= 4
    for command in commands:
        out, err = io.StringIO(), io.StringIO()
        code = main(shlex.split(command)[1:], environ={}, out=Console(file=out), err=err,
                    make_client=lambda args, env: make_client(URL, token()))
        assert code == 0, (command, err.getvalue())


def _curl_commands(page: str) -> list[str]:
    """Every `curl` of the page's shell blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", (ROOT / page).read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("curl "):
                commands.append(line)
    return commands


def _curl(client, command: str, **values: str):
    """The Chalice test client's answer to `command` (curl's -X, -H, -d; the URL after
    $JOBPIPE_API_URL), with `<name>` and `$NAME` replaced from `values`."""
    for name, value in values.items():
        command = command.replace(f"<{name}>", value).replace(f"${name}", value)
    words = shlex.split(command)[1:]
    method, headers, body, path = "GET", {}, b"", None
    while words:
        word = words.pop(0)
        if word == "-X":
            method = words.pop(0)
        elif word == "-H":
            name, value = words.pop(0).split(":", 1)
            headers[name.strip()] = value.strip()
        elif word == "-d":
            body = words.pop(0).encode()
            method = "POST" if method == "GET" else method
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")  # as curl sends -d
        elif not word.startswith("-"):
            path = word
    return client.http.request(method, path, headers=headers, body=body)


def test_every_curl_the_readme_and_migrating_md_show_is_answered_as_they_say(client):
    """README's submit and read; migrating.md's cache miss, the PUT for the generation it
    reported (the page's `If-Match: 3` is that of its example miss), the maintenance task
    started and read. `make run`'s token is tenant `dev`'s with `admin` and `operator`."""
    dev = token(tenant="dev", user="dev", roles=["admin", "operator"])
    values = {"JOBPIPE_API_URL": "", "JOBPIPE_TOKEN": dev, "OPERATOR_TOKEN": dev}
    submit, read = _curl_commands("README.md")
    job = _curl(client, submit, **values)
    assert job.status_code == 202, job.body
    assert _curl(client, read, id=job.json_body["id"], **values).json_body["status"] == "queued"

    miss_read, put, start, task = _curl_commands("docs/migrating.md")
    miss = _curl(client, miss_read, **values)
    assert (miss.status_code, miss.json_body["status"]) == (404, "miss"), miss.body
    assert (miss.json_body["generation"], miss.json_body["invalidated_at"], miss.json_body["invalidated_by"]) == (0, None, None)
    stored = _curl(client, put.replace("If-Match: 3", f"If-Match: {miss.json_body['generation']}"), **values)
    assert stored.status_code == 200, stored.body
    hit = _curl(client, miss_read, **values).json_body
    assert (hit["status"], hit["value"]) == ("hit", {"stations": 12})
    started = _curl(client, start, **values)
    assert started.status_code == 202, started.body
    assert _curl(client, task, task_id=started.json_body["task_id"], **values).json_body["task_type"] == "cleanup_runs"


def test_the_job_types_and_the_client_of_docs_migrating_md_run_as_written(make_client, monkeypatch, capsys):
    """Section 002's handler and 003's type register as the page writes them (a `timeout_s`
    past what a worker allows, a helper renamed, would refuse them here) and run: 003's client
    submits and waits as shown, under the token the comment gives; 003's type refuses a payload
    without `package_id` (422), and 002's ends with the result its `complete_job` gave."""
    monkeypatch.setattr(jobpipe_client, "JobpipeClient", make_client)
    blocks = _python_blocks("docs/migrating.md")
    assert len(blocks) == 3
    scope = {"api_url": URL, "token": token(tenant="company-xyz", user="user-123")}
    try:
        for block in blocks:
            exec(compile(block, "docs/migrating.md", "exec"), scope)
        done = scope["done"]
        assert (done["status"], done["result"]) == ("completed", {"package_id": "proj-12345", "score": 0.87})
        assert (done["tenant"], done["user"]) == ("company-xyz", "user-123")
        assert done["progress"]["details"] == {"currentContractor": "Contractor Name"}
        assert "completed 100\n" in capsys.readouterr().out  # on_change saw it end
        client = scope["client"]
        with pytest.raises(jobpipe_client.JobpipeClientError) as refused:
            client.submit("tech_rfp_analysis", {"user_name": "John Doe"})
        assert (refused.value.status, refused.value.code) == (422, "invalid_payload")
        model = client.wait(client.submit("cad.process_model", {"model_id": "m-1"}), timeout=600)
        assert (model["status"], model["result"]) == ("completed", {"model": "output.stl", "size": 1024})
        assert model["progress"]["message"] == "Model processing complete"
    finally:
        from chalicelib.job_types.catalog import registry

        for name in ("cad.process_model", "tech_rfp_analysis"):
            registry._types.pop(name, None)
