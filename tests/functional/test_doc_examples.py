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
from tests.support.fake_api import FakeSession, make_response

ROOT = Path(__file__).resolve().parents[2]
URL, OTHER_URL = "http://api.test", "http://api-2.test"


def _bridge(chalice_client, session: FakeSession):
    """A fake server (tests.support.fake_api) answering from the Chalice app, with the
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


def test_the_python_client_examples_of_docs_api_md_run_as_written(make_client, monkeypatch, capsys):
    monkeypatch.setattr(jobpipe_client, "JobpipeClient", make_client)
    blocks = _python_blocks("docs/api.md")
    assert blocks
    scope = {"url": URL, "other_url": OTHER_URL, "token": token()}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), scope)
    assert scope["done"]["status"] == "completed"
    assert scope["later"]["not_before"] > scope["job"]["not_before"]
    assert len(scope["data"]) == 4096 and scope["summary"].startswith(b"job ")  # from S3, and inline
    assert "100.0" in capsys.readouterr().out  # on_change saw the job complete


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
